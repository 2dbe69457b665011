#!/usr/bin/env bash
# sdk_check.sh - check the installable SDK end to end (CI: meson test sdk_check).
#
#   tools/sdk_check.sh [BUILD_DIR]
#
# In a temporary folder (removed on exit): configure a fresh build of this
# repository with --prefix=TMP/prefix, `meson install` it, build the
# out-of-tree example plugin (examples/plugin) against the installed SDK
# through pkg-config, install it into the plugin folder the .pc names, and
# check that the installed lshlab lists it next to the 8 built-ins and runs it
# (rows with status ok in /runs).  Then `meson install --destdir` (of
# BUILD_DIR when given, an existing configured and built tree, else of the
# temporary build) and check the files land under the DESTDIR.
# Prints "sdk_check: ok", or what failed and exits 1.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-}
if [ -n "$build_dir" ]; then
  build_dir=$(cd "$build_dir" && pwd)
  [ -f "$build_dir/build.ninja" ] || { echo "sdk_check: $build_dir is not a meson build folder" >&2; exit 2; }
fi

tmp=$(mktemp -d /tmp/lshlab-sdk-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
log=$tmp/log
t0=$(date +%s)

fail() {
  echo "sdk_check: FAILED: $*" >&2
  if [ -s "$log" ]; then
    echo "--- last output:" >&2
    tail -n 40 "$log" >&2
  fi
  exit 1
}
step() { echo "sdk_check: $*"; }

# Plugins of the caller (meson test sets the build tree's) must not mask the
# installed folder: the installed lshlab alone is under test.
unset LSHLAB_STRATEGY_PATH LSHLAB_ALLOW_INSECURE_PLUGINS PKG_CONFIG_PATH
export OPENBLAS_NUM_THREADS=1

# ---- 1. a fresh build, installed under a prefix --------------------------------
# It takes BUILD_DIR's choice of BLAS (a machine without OpenBLAS builds with
# -Dblas=gslcblas), and is built without MPI, which this check covers too
# (`--version` says so and a run is one process); tests are not built.
opts=()
if [ -n "$build_dir" ]; then
  while IFS= read -r o; do opts+=("$o"); done < <(meson introspect "$build_dir" --buildoptions \
    | /usr/bin/python3 -c 'import json, sys
for o in json.load(sys.stdin):
    if o["name"] == "blas":
        print("-D%s=%s" % (o["name"], o["value"]))')
fi
step "configuring a fresh build with --prefix=$prefix ${opts[*]:-}"
meson setup "$tmp/build" "$src" --prefix="$prefix" -Dtests=disabled -Dmpi=disabled ${opts[@]+"${opts[@]}"} >"$log" 2>&1 \
  || fail "meson setup of the repository"
step "building and installing"
ninja -C "$tmp/build" >"$log" 2>&1 || fail "ninja (fresh build)"
meson install -C "$tmp/build" --no-rebuild >"$log" 2>&1 || fail "meson install"

exe=$prefix/bin/lshlab
[ -x "$exe" ] || fail "no $exe after meson install"
"$exe" --version | grep -q '^MPI: not built' || fail "a build without MPI does not say so in --version"
# started as rank 0 of 2 by mpirun, a build without MPI refuses instead of running twice
if OMPI_COMM_WORLD_SIZE=2 "$exe" strategies >"$log" 2>&1; then
  fail "a build without MPI ran as one of 2 mpirun processes"
fi
grep -q 'built without MPI' "$log" || fail "no clear message from a build without MPI under mpirun"
pc=$(find "$prefix" -name lshlab-strategy.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no lshlab-strategy.pc under $prefix"
for h in strategy.h fmadots.h; do
  [ -f "$prefix/include/lshlab/$h" ] || fail "no include/lshlab/$h under $prefix"
done
[ -f "$prefix/share/man/man1/lshlab.1" ] || fail "no share/man/man1/lshlab.1 under $prefix"
export PKG_CONFIG_PATH=$(dirname "$pc")

# The .pc against the tree, not against itself.
plugindir=$(pkg-config --variable=plugindir lshlab-strategy) || fail "pkg-config cannot read $pc"
libdir=$(pkg-config --variable=libdir lshlab-strategy)
[ "$plugindir" = "$libdir/lshlab/strategies" ] || fail "plugindir is $plugindir, not $libdir/lshlab/strategies"
case "$plugindir" in "$prefix"/*) ;; *) fail "plugindir $plugindir is not under the prefix $prefix" ;; esac
cflags=$(echo $(pkg-config --cflags lshlab-strategy))  # pkgconf adds a trailing blank
[ "$cflags" = "-I$prefix/include" ] || fail "Cflags are '$cflags', not '-I$prefix/include'"
libs=$(echo $(pkg-config --libs lshlab-strategy))
[ -z "$libs" ] || fail "Libs are '$libs': a plugin links nothing of lshlab"
hdr=$prefix/include/lshlab/strategy.h
for v in MAJOR MINOR; do
  want=$(sed -n "s/^#define LSH_STRATEGY_ABI_$v \([0-9]*\)$/\1/p" "$hdr")
  low=$(echo "$v" | tr A-Z a-z)
  got=$(pkg-config --variable="abi_$low" lshlab-strategy)
  [ -n "$want" ] && [ "$got" = "$want" ] || fail "abi_$low is '$got', strategy.h says '$want'"
done
[ "$(pkg-config --modversion lshlab-strategy)" = "$(pkg-config --variable=abi_major lshlab-strategy).$(pkg-config --variable=abi_minor lshlab-strategy)" ] \
  || fail "the .pc version is not the ABI version"
builtins="rotation hyperplane kmeans crosspolytope sortlsh smyrf random window"
for s in $builtins; do
  [ -f "$plugindir/$s.so" ] || fail "built-in $s.so is not in $plugindir"
done

# ---- 2. the example plugin, out of tree ------------------------------------------
step "building examples/plugin against $pc"
meson setup "$tmp/plugin-build" "$src/examples/plugin" --prefix="$prefix" >"$log" 2>&1 \
  || fail "meson setup of examples/plugin"
ninja -C "$tmp/plugin-build" >"$log" 2>&1 || fail "ninja (examples/plugin)"
meson install -C "$tmp/plugin-build" --no-rebuild >"$log" 2>&1 || fail "meson install (examples/plugin)"
[ -f "$plugindir/sparsesign.so" ] || fail "sparsesign.so was not installed into $plugindir"
# It exports the entry point and nothing else of its own.
if command -v nm >/dev/null; then
  exports=$(nm -D --defined-only "$plugindir/sparsesign.so" | awk '$2 == "T" {print $3}')
  [ "$exports" = "lsh_strategy_entry" ] || fail "sparsesign.so exports '$exports', not lsh_strategy_entry alone"
fi

# ---- 3. the installed lshlab lists and runs it -----------------------------------
"$exe" strategies --params >"$log" 2>&1 || fail "$exe strategies"
for s in $builtins sparsesign; do
  grep -q "^$s " "$log" || fail "'lshlab strategies' does not list $s"
done
grep -q "(ABI 1.1, $plugindir/sparsesign.so)" "$log" \
  || fail "'lshlab strategies --params' does not show sparsesign loaded from $plugindir"
n=$(grep -cE '^[a-z0-9_]+ ' "$log")
[ "$n" -eq 9 ] || fail "'lshlab strategies' lists $n strategies, not 9 (8 built-ins + sparsesign)"

cat >"$tmp/sdk.yaml" <<'EOF'
name: sdk-check
seed: 11
datasets:
  - name: g
    kind: gaussian
    n: 64
    d: 8
strategies:
  - name: sparsesign
    params:
      bits: [3, 6]
  - name: hyperplane
sweep:
  n_hashes: [1, 2]
  n_buckets: [4, 8]
EOF
"$exe" validate "$tmp/sdk.yaml" >"$log" 2>&1 || fail "lshlab validate of the example config"
"$exe" run "$tmp/sdk.yaml" -o "$tmp/sdk.h5" -q -j 2 >"$log" 2>&1 || fail "lshlab run of the example config"
"$exe" show "$tmp/sdk.h5" --csv >"$tmp/sdk.csv" 2>"$log" || fail "lshlab show --csv"
# Expected rows, counted by hand: sparsesign bits 3 x (B 4, 8) x H (1, 2) = 4,
# bits 6 the same = 4, hyperplane (B 4, 8) x H (1, 2) = 4.  All are valid
# (B <= 2^bits), so all 12 are ok.
/usr/bin/python3 - "$tmp/sdk.csv" >"$log" 2>&1 <<'EOF' || fail "the /runs rows of the example run"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["strategy"], []).append(r)
bad = [r for r in rows if r["status"] != "ok"]
assert not bad, "rows not ok: %s" % bad
assert len(by.get("sparsesign", [])) == 8, "sparsesign rows: %d, want 8" % len(by.get("sparsesign", []))
assert len(by.get("hyperplane", [])) == 4, "hyperplane rows: %d, want 4" % len(by.get("hyperplane", []))
assert len(rows) == 12, "rows: %d, want 12" % len(rows)
# A real rule: with every pair of a round's rows hashed, the computed pairs
# are a proper, non-empty subset of all pairs.
for r in by["sparsesign"]:
    d = float(r["density"])
    assert 0 < d < 1, "sparsesign density %r" % r["density"]
print("rows ok:", len(rows))
EOF

# The rule itself, recomputed independently from the dumped data and projections:
# bucket = (sum_t [x.r_t > 0] 2^t) mod B, with r_t sparse +-1 columns.
cat >"$tmp/rule.yaml" <<'EOF'
name: sdk-rule
seed: 5
datasets:
  - name: g
    kind: gaussian
    n: 50
    d: 6
strategies:
  - name: sparsesign
    params:
      bits: 4
      density: 0.5
sweep:
  n_hashes: 3
  n_buckets: [5, 16]
dump: [data, buckets, hash_params]
EOF
"$exe" run "$tmp/rule.yaml" -o "$tmp/rule.h5" -q >"$log" 2>&1 || fail "lshlab run of the rule config"
if /usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null; then
  /usr/bin/python3 - "$tmp/rule.h5" >"$log" 2>&1 <<'EOF' || fail "sparsesign's buckets against the rule recomputed"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
q = f["datasets/g/Q"][()]
runs = {int(r["point_id"]): r for r in f["runs"][()]}
assert len(runs) == 2 and len(f["points"]) == 2, (len(runs), len(f["points"]))
for pid in f["points"]:
    p = f["points"][pid]
    b = p["buckets"][()]
    B = int(runs[int(pid)]["n_buckets"])
    assert b.shape == (3, 50), b.shape
    for h in range(3):
        r = p["hash_params_projections_h%d" % h][()]
        assert r.shape == (6, 4) and set(np.unique(r)) <= {-1.0, 0.0, 1.0}, r
        assert (abs(r).sum(axis=0) > 0).all(), "an empty projection"
        code = ((q @ r > 0) * (1 << np.arange(4))).sum(axis=1)
        assert (b[h] == code % B).all(), (pid, h, b[h], code % B)
print("rule ok")
EOF
else
  step "no h5py/numpy in /usr/bin/python3: the recomputed-rule check is skipped"
fi

# ---- 4. DESTDIR: the files land under it -----------------------------------------
dd_build=${build_dir:-$tmp/build}
dd_prefix=$(meson introspect "$dd_build" --buildoptions \
  | /usr/bin/python3 -c 'import json,sys; print({o["name"]: o["value"] for o in json.load(sys.stdin)}["prefix"])')
dd_libdir=$(meson introspect "$dd_build" --buildoptions \
  | /usr/bin/python3 -c 'import json,sys; print({o["name"]: o["value"] for o in json.load(sys.stdin)}["libdir"])')
case "$dd_libdir" in /*) ;; *) dd_libdir=$dd_prefix/$dd_libdir ;; esac
step "meson install --destdir of $dd_build (prefix $dd_prefix)"
meson install -C "$dd_build" --no-rebuild --destdir "$tmp/destdir" >"$log" 2>&1 \
  || fail "meson install --destdir"
root=$tmp/destdir$dd_prefix
for f in bin/lshlab include/lshlab/strategy.h include/lshlab/fmadots.h share/man/man1/lshlab.1; do
  [ -f "$root/$f" ] || fail "DESTDIR install lacks $root/$f"
done
for f in pkgconfig/lshlab-strategy.pc $(for s in $builtins; do echo "lshlab/strategies/$s.so"; done); do
  [ -f "$tmp/destdir$dd_libdir/$f" ] || fail "DESTDIR install lacks $tmp/destdir$dd_libdir/$f"
done
# Nothing outside the DESTDIR: every installed file is under it.
outside=$(grep -v -e "^$tmp/destdir/" -e "^$tmp/destdir\$" -e '^#' "$dd_build/meson-logs/install-log.txt" || true)
[ -z "$outside" ] || fail "files installed outside the DESTDIR: $outside"
# A packager's tree works once moved into place (here: pointed at by the path).
LSHLAB_STRATEGY_PATH=$tmp/destdir$dd_libdir/lshlab/strategies "$root/bin/lshlab" strategies >"$log" 2>&1 \
  || fail "the DESTDIR's lshlab strategies"
for s in $builtins; do
  grep -q "^$s " "$log" || fail "the DESTDIR's lshlab does not list $s"
done
step "DESTDIR install ($(find "$tmp/destdir" -type f | wc -l) files):"
(cd "$tmp/destdir" && find . -type f | sort | sed 's/^\./    /')

step "ok ($(( $(date +%s) - t0 )) s): installed lshlab lists and runs the out-of-tree plugin sparsesign"
echo "sdk_check: ok"
