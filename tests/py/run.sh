#!/bin/sh
# run.sh - the unit tests of the Python package tools/py/lshlab (unittest), on the
# interpreter tools/summary would use.  Exit 77 (skipped, for meson) when no
# Python has h5py and numpy; the plot tests skip themselves without matplotlib, the
# capture and .pt tests without torch (test_capture.py, test_convert.py).
set -eu
src=${LSHLAB_SOURCE_ROOT:?run through meson test}
if ! py=$("$src/tools/summary" --which-python 2>/dev/null); then
    echo "SKIP: no Python 3 with h5py and numpy (apt-get install python3-h5py python3-numpy)"
    exit 77
fi
echo "# python: $py"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lshlab-test-py-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The package from the source tree, no bytecode written into it, figures in files.
# The end-to-end rule tests must not skip for want of the built-in strategies here.
export LSHLAB_REQUIRE_RULES=1
export PYTHONPATH="$src/tools/py" PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg MPLCONFIGDIR="$tmp"
"$py" -m unittest discover -s "$src/tests/py" -p 'test_*.py' -v 2>&1
