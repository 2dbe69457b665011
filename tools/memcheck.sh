#!/usr/bin/env bash
# memcheck.sh - the test suite under the sanitizers and under valgrind (CI).
#
#   tools/memcheck.sh asan       build build-asan (-Db_sanitize=address,undefined,
#                                debug) and run the whole suite there
#   tools/memcheck.sh valgrind [BUILD_DIR]
#                                run the whole suite once under valgrind memcheck
#                                (default BUILD_DIR: build, as tools/test.sh made it)
#
# Any sanitizer report fails its test.  Under valgrind, Criterion forks its
# workers and does not look at valgrind's exit code inside them, so every
# process writes its own log (--trace-children, %p) and the run fails when any
# log has a non-zero ERROR SUMMARY or definitely lost bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
case "$what" in
asan)
  dir=build-asan
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Db_sanitize=address,undefined -Dbuildtype=debug
  fi
  # UBSan only prints by default: make every report an error.  A report
  # exits 86, which no lshlab exit code means, so the tests that run lshlab
  # notice it too.  LSan leaks fail as well; libhdf5's own leaks on malformed
  # input are not ours, nor Open MPI's under mpirun: its frames have no frame
  # pointers, so only the slow unwinder (fast_unwind_on_malloc=0) puts the
  # MPI_Init/MPI_Finalize frames that lsan.supp names into a leak's stack.
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86
  export ASAN_OPTIONS=detect_leaks=1:exitcode=86:fast_unwind_on_malloc=0
  export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp
  # suite sdk: builds and installs a plain copy of lshlab (tools/sdk_check.sh)
  tools/test.sh "$dir" --timeout-multiplier 3 --no-suite sdk
  ;;
valgrind)
  dir=${2:-build}
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir"
  fi
  ninja -C "$dir"
  logs=$(mktemp -d /tmp/lshlab-valgrind-XXXXXX)
  # valgrind 3.19 knows no AVX-512: keep OpenBLAS on AVX2 kernels.
  export OPENBLAS_CORETYPE=Haswell
  # Everything runs ~50x slower: the integration tests use smaller sweeps.
  export LSHLAB_TEST_QUICK=1
  # Under mpirun: Open MPI keeps its components loaded, and valgrind keeps the
  # names of libraries unloaded before exit, so that valgrind.supp can name
  # the Open MPI libraries whose own leaks it suppresses.
  export OMPI_MCA_mca_base_component_disable_dlclose=1
  wrapper="valgrind --tool=memcheck --error-exitcode=1 --leak-check=full --keep-debuginfo=yes
    --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --suppressions=$PWD/tools/valgrind.supp
    --trace-children=yes --trace-children-skip=*/rm,*/cp,*/chmod,*/chattr,*/mkdir,*/mktemp,*/od,*/grep,*/head,*/sed,*/tr,*/wc,*/cat,*/python3*
    --log-file=$logs/%p.log"
  set +e
  # suite libhdf5: inputs on which libhdf5 itself reads out of bounds;
  # suite sdk: builds and installs a plain copy of lshlab (tools/sdk_check.sh);
  # suite mpi: mpirun and Open MPI under valgrind (tests/mpi runs under ASan instead)
  meson test -C "$dir" --print-errorlogs --timeout-multiplier 20 --no-suite libhdf5 \
    --no-suite sdk --no-suite mpi \
    --wrapper "$wrapper"
  rc=$?
  set -e
  bad=0
  for f in "$logs"/*.log; do
    [ -e "$f" ] || continue
    if grep -Eq 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$f"; then
      echo "valgrind: errors in $f:" >&2
      sed -n '1,80p' "$f" >&2
      bad=1
    fi
  done
  n=$(ls "$logs" | wc -l)
  if [ "$bad" -eq 0 ] && [ "$rc" -eq 0 ]; then
    echo "valgrind: $n processes checked, no errors, no definite leaks"
    rm -rf "$logs"
  else
    echo "valgrind: FAILED (meson test exit $rc); logs kept in $logs" >&2
    exit 1
  fi
  ;;
*)
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
