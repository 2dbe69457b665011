#!/usr/bin/env bash
# setup.sh - one command on a fresh Debian 12: install what is missing (apt-get,
# as root; otherwise print the exact apt-get line), build, run the quickstart.
#
#   tools/setup.sh              install + build + quickstart
#   tools/setup.sh --deps-only  install what is missing, nothing else (used by CI)
#   tools/setup.sh --no-run     install + build
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential pkg-config meson ninja-build git
  libgsl-dev libopenblas-dev libhdf5-dev libyaml-dev libcriterion-dev
  valgrind
  openmpi-bin libopenmpi-dev
  python3 python3-h5py python3-numpy python3-matplotlib python3-pandas
)

deps_only=0 run=1
for arg in "$@"; do
  case "$arg" in
    --deps-only) deps_only=1 ;;
    --no-run) run=0 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages; run as root:" >&2
    echo "  sudo apt-get update && sudo $line" >&2
    exit 1
  fi
else
  echo "setup: all Debian packages present"
fi
[ "$deps_only" -eq 1 ] && exit 0

if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build

if [ "$run" -eq 1 ]; then
  echo "setup: running the quickstart (replaces results/quickstart.h5)"
  build/core/lshlab run experiments/configs/quickstart.yaml --force
  echo
  echo "setup: done. The CLI is build/core/lshlab (or: meson devenv -C build, then lshlab)."
fi
