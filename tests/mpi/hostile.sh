#!/bin/bash
# hostile.sh BUILD_DIR - regression checks of `mpirun -np N lshlab run` against
# one process (`lshlab run -j 1`), from the hostile-user review of issue 11:
#   1. skip_invalid groups in a unit cut between ranks: /runs rows in the
#      one-process order (a unit's skipped rows first), every field but the
#      *_seconds bit for bit, /points and /datasets the same;
#   2. a strategy failing at run time (failing_hash) and data whose scores
#      overflow, in a unit spread by rows and in one spread by hash groups:
#      the same failed rows and messages, exit code 5 from mpirun;
#   3. a plugin calling exit() on one rank: the run ends (no hang), exit != 0,
#      and the .partial is kept;
#   4. a rank that cannot load the config while rank 0 can: all stop at once;
#   5. by rows, ranks that hash or read data differently: a clear error, and
#      every rank ends normally (no MPI_Abort: Debian's mpirun sometimes
#      crashed handling one).
# Every command has a timeout.  Exit 0 when all pass, 77 (skip) without
# mpirun or h5py.
set -u
BUILD=$(cd "${1:?usage: hostile.sh BUILD_DIR}" && pwd)
L=$BUILD/core/lshlab
PY=/usr/bin/python3
command -v mpirun >/dev/null || { echo "no mpirun: skipped"; exit 77; }
$PY -c 'import h5py, numpy' 2>/dev/null || { echo "no h5py: skipped"; exit 77; }
$L --version | grep -q '^MPI: Open MPI' || { echo "lshlab built without MPI: skipped"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(timeout 120 mpirun --oversubscribe -np)
[ "$(id -u)" = 0 ] && MPIRUN=(timeout 120 mpirun --allow-run-as-root --oversubscribe -np)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cat > "$T/cmp.py" <<'EOF'
import sys, h5py, numpy as np
fa, fb = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
bad = []
ra, rb = fa['runs'][()], fb['runs'][()]
if len(ra) != len(rb):
    bad.append('rows %d != %d' % (len(ra), len(rb)))
else:
    for c in ra.dtype.names:
        if not c.endswith('seconds') and ra[c].tobytes() != rb[c].tobytes():
            bad.append('/runs column %s' % c)
def walk(x, y, path):
    for k in set(x.attrs) | set(y.attrs):
        if k in ('created', 'command_line', 'host'):
            continue
        if k not in x.attrs or k not in y.attrs or \
           np.asarray(x.attrs[k]).tobytes() != np.asarray(y.attrs[k]).tobytes():
            bad.append('attribute %s of %s' % (k, path))
    if isinstance(x, h5py.Dataset):
        if path != '/runs' and x[()].tobytes() != y[()].tobytes():
            bad.append(path)
        return
    if set(x) != set(y):
        bad.append('members of %s' % path)
    for k in set(x) & set(y):
        walk(x[k], y[k], path.rstrip('/') + '/' + k)
walk(fa, fb, '/')
print('; '.join(bad[:8]) if bad else 'same')
sys.exit(1 if bad else 0)
EOF

# 1. skipped groups of a unit cut between ranks
cat > "$T/skip.yaml" <<'EOF'
name: skiporder
seed: 3
repeats: 6
datasets:
  - {name: g, kind: gaussian, n: 400, d: 8}
attention:
  keys: shared
  topk: [1]
strategies:
  - name: hyperplane
  - name: kmeans
    skip_invalid: true
    params: { iterations: 2 }
sweep:
  n_hashes: [1, 8]
  n_buckets: [4, 16]
  mode: bucket
  combine: [union, importance]
dump: [buckets]
EOF
$L validate "$T/skip.yaml" --ranks 3 | grep -q 'rank 1: groups \[[1-9]' ||
    fail "skip.yaml: the unit is no longer cut between ranks 0 and 1 (the check tests nothing)"
timeout 60 $L run "$T/skip.yaml" -j 1 -q -o "$T/skip1.h5" >/dev/null 2>&1 || fail "skip.yaml -j 1"
"${MPIRUN[@]}" 3 $L run "$T/skip.yaml" -j 1 -q -o "$T/skip3.h5" >/dev/null 2>"$T/err" ||
    fail "skip.yaml -np 3: $(head -3 "$T/err")"
r=$($PY "$T/cmp.py" "$T/skip1.h5" "$T/skip3.h5") || fail "skip.yaml -np 3 against -j 1: $r"

# 2. run-time failures: a failing strategy and overflowing scores
mkdir -p "$T/plug"
cp "$BUILD/tests/failing_hash.so" "$BUILD/tests/exit_in_hash.so" "$T/plug/"
chmod 755 "$T/plug"
chmod 644 "$T/plug"/*.so
export LSHLAB_STRATEGY_PATH=$T/plug
$PY - "$T" <<'EOF'
import sys, numpy as np
rng = np.random.default_rng(1)
q = rng.standard_normal((700, 8)); q[650, 3] = 1e150   # spread by rows
np.save(sys.argv[1] + '/big_rows.npy', q)
q = rng.standard_normal((100, 8)); q[5, 1] = 1e150     # spread by groups
np.save(sys.argv[1] + '/big_groups.npy', q)
EOF
cat > "$T/fail.yaml" <<'EOF'
name: failures
seed: 5
datasets:
  - {name: rows, kind: npy, q: big_rows.npy}
  - {name: groups, kind: npy, q: big_groups.npy}
  - {name: g, kind: gaussian, n: 600, d: 8}
  - {name: h, kind: gaussian, n: 100, d: 8}
attention:
  keys: shared_normalized
  topk: [1]
strategies:
  - name: hyperplane
  - name: failing_hash
  - name: rotation
sweep:
  n_hashes: [1, 2]
  n_buckets: [4, 8]
  mode: bucket
  combine: [union, rounds]
dump: [buckets, rows]
EOF
export LSHLAB_TEST_SLICE_ROWS=256
timeout 60 $L run "$T/fail.yaml" -j 1 -q -o "$T/fail1.h5" >/dev/null 2>&1
[ $? = 5 ] || fail "fail.yaml -j 1: exit code not 5"
"${MPIRUN[@]}" 3 $L run "$T/fail.yaml" -j 1 -q -o "$T/fail3.h5" >/dev/null 2>&1
[ $? = 5 ] || fail "fail.yaml -np 3: exit code not 5"
r=$($PY "$T/cmp.py" "$T/fail1.h5" "$T/fail3.h5") || fail "fail.yaml -np 3 against -j 1: $r"

# 3. exit() in a plugin, on one rank (groups) and on every rank (rows)
sed 's/failing_hash/exit_in_hash/' "$T/fail.yaml" > "$T/exit.yaml"
for slice in 256 16384; do
    rm -f "$T"/exit.h5*
    LSHLAB_TEST_SLICE_ROWS=$slice "${MPIRUN[@]}" 3 $L run "$T/exit.yaml" -j 1 -q \
        -o "$T/exit.h5" >/dev/null 2>"$T/err"
    rc=$?
    [ $rc = 124 ] && fail "exit.yaml (slices of $slice): mpirun hung"
    [ $rc = 0 ] && fail "exit.yaml (slices of $slice): exit code 0"
    grep -q 'called exit()' "$T/err" || fail "exit.yaml (slices of $slice): no message"
    [ -e "$T/exit.h5.partial" ] || fail "exit.yaml (slices of $slice): no .partial"
done

# 4. a rank that cannot load the config (the plugin is missing on its node):
#    every rank stops at the start, no hang, exit 3, no results file
unset LSHLAB_STRATEGY_PATH
rm -f "$T"/mm.h5*
"${MPIRUN[@]}" 1 -x LSHLAB_STRATEGY_PATH="$T/plug" $L run "$T/fail.yaml" -q -o "$T/mm.h5" : \
    -np 2 $L run "$T/fail.yaml" -q -o "$T/mm.h5" >/dev/null 2>"$T/err"
rc=$?
[ $rc = 124 ] && fail "plugin missing on ranks 1-2: mpirun hung"
[ $rc = 3 ] || fail "plugin missing on ranks 1-2: exit code $rc, not 3"
grep -q "another rank could not start the run" "$T/err" || fail "plugin missing: no message"
ls "$T"/mm.h5* >/dev/null 2>&1 && fail "plugin missing: a results file was left"

# 5. spread by rows, ranks that disagree: a plugin of the same name failing on
#    rank 0 only; other input data on rank 0.  A message and exit != 0, no
#    crash (crossed collectives), no hang.
export LSHLAB_TEST_SLICE_ROWS=256
mkdir -p "$T/plug2" "$T/d1" "$T/d2"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
sed 's/return LSH_STRATEGY_EFAIL;/for (size_t i = 0; i < n; i++) bucket[i] = 0; return 0;/' \
    "$SRC/tests/plugins/failing_hash.c" > "$T/fh.c"
if cc -shared -fPIC -I"$SRC/core/include" -o "$T/plug2/failing_hash.so" "$T/fh.c" 2>/dev/null
then
    chmod 755 "$T/plug2"
    chmod 644 "$T/plug2/failing_hash.so"
    cat > "$T/fh.yaml" <<'EOF'
name: fh
seed: 4
datasets:
  - {name: g, kind: gaussian, n: 700, d: 8}
strategies:
  - name: failing_hash
  - name: hyperplane
sweep:
  n_hashes: [1, 2]
  n_buckets: [2]
EOF
    "${MPIRUN[@]}" 1 -x LSHLAB_STRATEGY_PATH="$T/plug" $L run "$T/fh.yaml" -q -o "$T/fh.h5" : \
        -np 2 -x LSHLAB_STRATEGY_PATH="$T/plug2" $L run "$T/fh.yaml" -q -o "$T/fh.h5" \
        >/dev/null 2>"$T/err"
    rc=$?
    { [ $rc = 0 ] || [ $rc -ge 124 ]; } && fail "plugin failing on rank 0 only: exit code $rc"
    grep -q "failed while hashing on some ranks only" "$T/err" ||
        fail "plugin failing on rank 0 only: no message: $(grep -v '^-' "$T/err" | head -3)"
    grep -q "MPI_ABORT was invoked" "$T/err" &&
        fail "plugin failing on rank 0 only: every rank knew it, yet rank 0 called MPI_Abort"
fi
$PY - "$T" <<'EOF'
import sys, numpy as np
rng = np.random.default_rng(2)
q = rng.standard_normal((700, 8))
np.save(sys.argv[1] + '/d2/q.npy', q)
q[650, 3] = 1e150
np.save(sys.argv[1] + '/d1/q.npy', q)
EOF
cat > "$T/d1/x.yaml" <<'EOF'
name: dd
seed: 1
datasets:
  - {name: x, kind: npy, q: q.npy}
strategies:
  - name: hyperplane
sweep:
  n_hashes: [1]
  n_buckets: [4]
EOF
cp "$T/d1/x.yaml" "$T/d2/x.yaml"
"${MPIRUN[@]}" 1 $L run "$T/d1/x.yaml" -q -o "$T/dd.h5" : -np 2 $L run "$T/d2/x.yaml" -q \
    -o "$T/dd.h5" >/dev/null 2>"$T/err"
rc=$?
{ [ $rc = 0 ] || [ $rc -ge 124 ]; } && fail "other data on rank 0: exit code $rc"
grep -q "the ranks read different data" "$T/err" ||
    fail "other data on rank 0: no message: $(grep -v '^-' "$T/err" | head -3)"
grep -q "MPI_ABORT was invoked" "$T/err" &&
    fail "other data on rank 0: every rank knew it, yet rank 0 called MPI_Abort"

[ $fails = 0 ] && echo "hostile.sh: all passed"
exit $((fails != 0))
