#!/bin/sh
# run.sh - lshlab under mpirun on this machine (loopback), against one-process runs
# (meson test suite 'mpi'; registered only when lshlab is built with MPI and mpirun
# exists).  Every case compares with `lshlab run -j 1`, one process, which never
# touches MPI: /runs bit for bit except the *_seconds columns, same row order, and
# /points and /datasets identical (compare_runs.py).
#   points   points.yaml (heads, datasets, strategies, both modes, dumps): -np 2 -j 1
#            and -np 3 -j 2; rank 0's progress covers every point, its table is printed once
#   rows     rows.yaml with LSHLAB_TEST_SLICE_ROWS=256 (rows spread over ranks, a sampled
#            reference, the tile path, min_collisions 2, sink, the oracle): -np 2, -np 3 -j 2
#   kill     kill.yaml under -np 2; kill -9 of rank 1 once .partial has rows: mpirun
#            fails, .partial stays readable; --resume under -np 3 ends as one process
#   validate validate --ranks 3 prints the spread; under mpirun too
# Exits 77 (skipped) without a Python that has h5py and numpy; fails (does not skip)
# when mpirun cannot start lshlab.  Run one case: run.sh points (or rows, kill, validate).
set -eu
src=${LSHLAB_SOURCE_ROOT:?run through meson test}
exe=${LSHLAB_EXE:?run through meson test}
here=$src/tests/mpi
cases=${*:-points rows kill validate}
limit=300   # seconds for one mpirun: a hung job fails the test before meson's timeout

if ! py=$("$src/tools/summary" --which-python 2>/dev/null); then
    echo "SKIP: no Python 3 with h5py and numpy (apt-get install python3-h5py python3-numpy)"
    exit 77
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "FAIL: lshlab is built with MPI but there is no mpirun (apt-get install openmpi-bin)"
    exit 1
fi
if ! "$exe" --version | grep -q '^MPI: Open MPI'; then
    echo "FAIL: $exe --version has no 'MPI: Open MPI' line:"
    "$exe" --version
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lshlab-test-mpi-XXXXXX")
cleanup() {
    rm -rf "$tmp"
}
trap cleanup EXIT

# Under ASan (tools/memcheck.sh asan): Open MPI's own leaks are not ours.  Their stacks
# only match a suppression with full unwinding (tests/mpi/lsan-mpi.supp).
if [ -n "${ASAN_OPTIONS:-}" ]; then
    supp=$tmp/lsan.supp
    cat "$here/lsan-mpi.supp" >"$supp"
    old=$(printf '%s' "${LSAN_OPTIONS:-}" | sed -n 's/.*suppressions=\([^:]*\).*/\1/p')
    [ -z "$old" ] || cat "$old" >>"$supp"
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$supp:print_suppressions=0"
    export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
    export OMPI_MCA_mca_base_component_disable_dlclose=1
fi

# mpirun on one machine of 2 cores: 3 ranks need --oversubscribe; no binding, so a
# rank's -j 2 threads may use both cores; shared memory and TCP on loopback only.
# vader's single-copy (CMA) needs ptrace rights that containers often lack.
mpirun_opts="--oversubscribe --bind-to none --mca btl self,vader,tcp
    --mca btl_vader_single_copy_mechanism none --mca btl_tcp_if_include lo
    --mca oob_tcp_if_include lo"
[ "$(id -u)" -ne 0 ] || mpirun_opts="$mpirun_opts --allow-run-as-root"
for v in LSHLAB_STRATEGY_PATH OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE ASAN_OPTIONS \
         UBSAN_OPTIONS LSAN_OPTIONS OMPI_MCA_mca_base_component_disable_dlclose; do
    eval "[ -z \"\${$v+x}\" ]" || mpirun_opts="$mpirun_opts -x $v"
done

fail() {
    echo "FAIL: $*"
    exit 1
}
start=$(date +%s)
at() { echo "[$(($(date +%s) - start))s]"; }

# mpi NP ARGS...: lshlab under mpirun; its output in $tmp/mpi.out and .err.
mpi() {
    np=$1
    shift
    echo "$(at) mpirun -np $np lshlab $*"
    mpirun_rc=0
    # shellcheck disable=SC2086
    timeout "$limit" mpirun $mpirun_opts ${LSHLAB_TEST_SLICE_ROWS:+-x LSHLAB_TEST_SLICE_ROWS} -np "$np" "$exe" "$@" \
        >"$tmp/mpi.out" 2>"$tmp/mpi.err" || mpirun_rc=$?
}
mpi_ok() {
    mpi "$@"
    if [ "$mpirun_rc" -ne 0 ]; then
        sed -n '1,60p' "$tmp/mpi.err"
        [ "$mpirun_rc" -ne 124 ] || fail "mpirun -np $1 lshlab ... hung: stopped after $limit s"
        fail "mpirun -np $1 lshlab ... exited $mpirun_rc"
    fi
}

# one NAME CONFIG ARGS...: the one-process -j 1 run, the reference of every comparison.
one() {
    name=$1 config=$2
    shift 2
    echo "$(at) lshlab run $config -j 1 $* (one process)"
    "$exe" run "$config" -o "$tmp/$name.h5" -j 1 -q "$@" || fail "one-process run of $config"
}

same() {
    "$py" "$here/compare_runs.py" "$1" "$2" || fail "$2 differs from the one-process run $1"
}

# Can mpirun start lshlab at all?  A failure here is a failure, not a skip.
check_start() {
    mpi 2 --version
    if [ "$mpirun_rc" -ne 0 ] || [ "$(grep -c '^MPI: Open MPI' "$tmp/mpi.out")" -ne 2 ]; then
        cat "$tmp/mpi.out" "$tmp/mpi.err"
        fail "mpirun -np 2 lshlab --version did not run two copies (exit $mpirun_rc)"
    fi
}

case_points() {
    cfg=$here/points.yaml
    one points "$cfg"
    total=$("$py" "$here/compare_runs.py" --rows "$tmp/points.h5")
    # Without -q: rank 0 alone prints one progress line per point (all ranks' points)
    # and the table.
    mpi_ok 2 run "$cfg" -o "$tmp/points-np2.h5" -j 1
    same "$tmp/points.h5" "$tmp/points-np2.h5"
    # one line per point (every point id once), the count never going back, ending at all
    grep -o "^\[[0-9]*/$total\] point [0-9]* " "$tmp/mpi.err" | tr -d '[]' | tr '/' ' ' >"$tmp/progress"
    awk -v T="$total" '{ if ($1 < k) back++; k = $1; seen[$4]++ }
        END { for (p = 0; p < T; p++) if (seen[p] != 1) wrong++
              if (NR != T || wrong || back || k != T) {
                  printf "%d lines for %d points, %d points not printed once, %d steps back, last count %d\n", NR, T, wrong, back, k
                  exit 1 } }' "$tmp/progress" ||
        fail "progress lines on rank 0's stderr do not cover every point once"
    headers=$(grep -c '^dataset .* strategy ' "$tmp/mpi.out" || true)
    [ "$headers" -eq 1 ] || fail "the table of points was printed $headers times (want once)"
    mpi_ok 3 run "$cfg" -o "$tmp/points-np3.h5" -j 2 -q
    same "$tmp/points.h5" "$tmp/points-np3.h5"
}

case_rows() {
    cfg=$here/rows.yaml
    LSHLAB_TEST_SLICE_ROWS=256
    export LSHLAB_TEST_SLICE_ROWS
    one rows "$cfg"
    mpi_ok 2 run "$cfg" -o "$tmp/rows-np2.h5" -j 1 -q
    same "$tmp/rows.h5" "$tmp/rows-np2.h5"
    mpi_ok 3 run "$cfg" -o "$tmp/rows-np3.h5" -j 2 -q
    same "$tmp/rows.h5" "$tmp/rows-np3.h5"
    unset LSHLAB_TEST_SLICE_ROWS
}

rank_pid() {   # rank_pid MPIRUN_PID RANK: the pid of that rank (a child of mpirun)
    for p in $(pgrep -P "$1"); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

case_kill() {
    cfg=$here/kill.yaml
    if [ -n "${ASAN_OPTIONS:-}" ]; then
        # An ASan debug build runs ~70x slower: a 32x smaller sweep lasts long enough.
        sed -e 's/^repeats: 4$/repeats: 1/' -e 's/^    n: 4096$/    n: 1024/' \
            "$cfg" >"$tmp/kill-asan.yaml"
        cfg=$tmp/kill-asan.yaml
    fi
    out=$tmp/kill-mpi.h5
    one kill "$cfg"
    total=$("$py" "$here/compare_runs.py" --rows "$tmp/kill.h5")
    echo "$(at) mpirun -np 2 lshlab run kill.yaml -j 1, then kill -9 of rank 1"
    # shellcheck disable=SC2086
    timeout "$limit" mpirun $mpirun_opts -np 2 "$exe" run "$cfg" -o "$out" -j 1 -q \
        >"$tmp/kill.out" 2>"$tmp/kill.err" &
    tpid=$!
    sleep 0.2
    mpipid=$(pgrep -P "$tpid") || fail "mpirun did not start"
    rows=0 tries=0
    while [ "$rows" -eq 0 ]; do
        tries=$((tries + 1))
        [ "$tries" -le 600 ] || fail "no rows in $out.partial after 60 s"
        kill -0 "$mpipid" 2>/dev/null || fail "mpirun ended before the kill (make kill.yaml longer): $(cat "$tmp/kill.err")"
        sleep 0.1
        [ -f "$out.partial" ] || continue
        rows=$("$py" "$here/compare_runs.py" --rows "$out.partial" 2>/dev/null || echo 0)
    done
    victim=$(rank_pid "$mpipid" 1) || fail "no child of mpirun ($mpipid) is rank 1: $(pgrep -a -P "$mpipid")"
    kill -9 "$victim"
    rc=0
    wait "$tpid" || rc=$?
    echo "$(at) killed rank 1 (pid $victim) with $rows of $total rows in .partial; mpirun exited $rc"
    [ "$rc" -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
    [ "$rc" -ne 124 ] || fail "the job hung after the kill: mpirun stopped after $limit s"
    [ ! -e "$out" ] || fail "$out exists after a killed run"
    [ -f "$out.partial" ] || fail "$out.partial is gone after the kill"
    left=$("$py" "$here/compare_runs.py" --rows "$out.partial")
    [ "$left" -ge 1 ] && [ "$left" -lt "$total" ] ||
        fail "$out.partial has $left rows (want 1..$((total - 1)): the kill came too late)"
    "$exe" show "$out.partial" >"$tmp/show.out" || fail "lshlab show cannot read $out.partial"
    grep -q ' ok ' "$tmp/show.out" || fail "lshlab show lists no finished point of $out.partial"
    mpi_ok 3 run "$cfg" -o "$out" -j 1 -q --resume
    [ ! -e "$out.partial" ] || fail "$out.partial is still there after the resumed run"
    same "$tmp/kill.h5" "$out"
}

# check_spread FILE RANKS POINTS: the spread `validate` printed is a partition: every
# segment lists ranks 0..RANKS-1 in order with contiguous ranges (slices from 0 to the
# slice count, or the segment's hash groups), shares summing to 100%, and the points of
# all segments (by rows: each rank's part of all of them) sum to POINTS.
check_spread() {
    awk -v N="$2" -v P="$3" '
        function bad(msg) { print "bad spread: " msg " (line " NR ": " $0 ")"; err = 1; exit 1 }
        function close_seg() {
            if (!seg) return
            if (next_rank != N) bad("segment " seg " lists " next_rank " ranks, want " N)
            if (kind == "rows" && end != want) bad("slices end at " end ", want " want)
            if (kind == "groups" && end - first != want) bad((end - first) " groups, want " want)
            if (share < 100 - N || share > 100 + N) bad("shares sum to " share "%")
        }
        /^spread over / { if ($3 != N) bad("ranks " $3 ", want " N); header++ }
        /^  [^ ].*: by (rows|hash groups)/ {
            close_seg(); seg++; next_rank = 0; share = 0
            if ($0 ~ /by rows/) { kind = "rows"; match($0, /in [0-9]+ slices/)
                                  want = substr($0, RSTART + 3, RLENGTH - 10) + 0 }
            else { kind = "groups"; match($0, /\([0-9]+\)/); want = substr($0, RSTART + 1, RLENGTH - 2) + 0 }
            segs[kind]++
        }
        /^    rank [0-9]+: / {
            r = $2; sub(/:/, "", r)
            if (r + 0 != next_rank) bad("rank " r " where rank " next_rank " was due")
            if (!match($0, /\[[0-9]+, [0-9]+\)/)) bad("no range")
            split(substr($0, RSTART + 1, RLENGTH - 2), rg, ", ")
            if (next_rank == 0) { first = rg[1] + 0; if (kind == "rows" && first != 0) bad("slices start at " first) }
            else if (rg[1] + 0 != end) bad("range starts at " rg[1] ", the last ended at " end)
            if (rg[2] + 0 < rg[1] + 0) bad("empty-reversed range")
            end = rg[2] + 0
            match($0, /\), [0-9]+ points/); pts = substr($0, RSTART + 3, RLENGTH - 10) + 0
            # by rows, every rank has a part of every point of the segment
            if (kind == "groups" || next_rank == 0) points += pts
            else if (pts != seg_pts) bad("ranks of one row segment list different points")
            seg_pts = pts
            match($0, /[0-9]+% of the work/); share += substr($0, RSTART, RLENGTH - 13) + 0
            next_rank++
        }
        END {
            if (err) exit 1
            close_seg()
            if (header != 1) bad("\"spread over\" printed " header + 0 " times, want once")
            if (points != P) bad("the segments hold " points " points, want " P)
            if (!segs["rows"] || !segs["groups"]) bad("want segments by rows and by hash groups")
        }' "$1" || fail "validate: the spread in $1 is not a partition (above)"
}

case_validate() {
    cfg=$here/rows.yaml
    LSHLAB_TEST_SLICE_ROWS=256
    export LSHLAB_TEST_SLICE_ROWS
    echo "# lshlab validate rows.yaml --ranks 3"
    "$exe" validate "$cfg" --ranks 3 >"$tmp/v3.out" || fail "validate --ranks 3 failed"
    cat "$tmp/v3.out"
    # wide: 1,280 rows = 5 slices; sampled: 700 rows = 3 slices; small: one unit.
    grep -q "^  wide: by rows, 1280 rows in 5 slices of 256$" "$tmp/v3.out" ||
        fail "validate --ranks 3: 'wide' is not spread by rows in 5 slices"
    grep -q "^  sampled: by rows, 700 rows in 3 slices of 256$" "$tmp/v3.out" ||
        fail "validate --ranks 3: 'sampled' (reference_rows 700) is not spread by rows in 3 slices"
    grep -q "^  small: by hash groups" "$tmp/v3.out" ||
        fail "validate --ranks 3: 'small' is not spread by hash groups"
    check_spread "$tmp/v3.out" 3 96
    if "$exe" validate "$cfg" --ranks 0 >"$tmp/v0.out" 2>&1; then
        fail "validate --ranks 0 was accepted"
    fi
    mpi_ok 2 validate "$cfg"
    cat "$tmp/mpi.out"
    check_spread "$tmp/mpi.out" 2 96
    unset LSHLAB_TEST_SLICE_ROWS
}

check_start
for c in $cases; do
    echo "## $c"
    "case_$c"
done
echo "$(at) mpi: all cases passed ($cases)"
