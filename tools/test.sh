#!/usr/bin/env bash
# test.sh - build (if needed) and run the whole test suite (unit + integration).
#   tools/test.sh [BUILD_DIR] [extra `meson test` arguments]
# BUILD_DIR defaults to build/; e.g. tools/test.sh build-asan for a sanitizer build
# made with: meson setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debug
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir"
fi
ninja -C "$dir"
set +e
meson test -C "$dir" --print-errorlogs "$@"
rc=$?
set -e
# One closing line over every Criterion test case (meson counts executables).
log="$dir/meson-logs/testlog.txt"
if [ -f "$log" ]; then
  passed=$(grep -cE '^ok ' "$log" || true)
  failed=$(grep -cE '^not ok ' "$log" || true)
  echo "$passed passed, $failed failed"
fi
exit "$rc"
