#!/bin/sh
# test_plot.sh - tools/plot and tools/summary on small results files: the
# quickstart's, a sweep with repeats and dumped buckets, and a collision
# experiment.  Every expected figure must exist as a real PDF and PNG.
# Exit 77 (skipped, for meson) when no Python has h5py, matplotlib and numpy.
set -eu
src=${LSHLAB_SOURCE_ROOT:?run through meson test}
exe=${LSHLAB_EXE:?run through meson test}
plot=$src/tools/plot
summary=$src/tools/summary

if ! py=$("$plot" --which-python 2>/dev/null); then
    echo "SKIP: no Python 3 with h5py, matplotlib and numpy (apt-get install python3-h5py python3-matplotlib python3-numpy)"
    exit 77
fi
echo "# python: $py"
export MPLBACKEND=Agg MPLCONFIGDIR="${TMPDIR:-/tmp}/lshlab-test-mpl-$$"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lshlab-test-plot-XXXXXX")
trap 'rm -rf "$tmp" "$MPLCONFIGDIR"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A real file of the format: PDF starts with %PDF, PNG with \211PNG.
exts="pdf png"
check() { # check FILE... (without extension), in each format of $exts
    for f in "$@"; do
        for ext in $exts; do
            p="$tmp/fig/$f.$ext"
            if [ ! -s "$p" ]; then fail "missing $f.$ext"; continue; fi
            magic=$(head -c 4 "$p" | od -An -c | tr -d ' \n')
            case $ext:$magic in
                pdf:%PDF|png:211PNG) ;;
                *) fail "$f.$ext is not a $ext file (starts with '$magic')" ;;
            esac
        done
    done
}

"$exe" run "$src/experiments/configs/quickstart.yaml" -o "$tmp/quickstart.h5" -q -j 2
"$exe" run "$src/experiments/configs/smoke/plot.yaml" -o "$tmp/sweep.h5" -q -j 2
"$exe" run "$src/experiments/configs/smoke/collision.yaml" -o "$tmp/collision.h5" -q -j 2

# The quickstart's figures as PNG only (PDF is checked below): it keeps the test short.
"$plot" "$tmp/quickstart.h5" -o "$tmp/fig" --format png > "$tmp/quickstart.list" ||
    fail "tools/plot quickstart"
exts=png
check quickstart_out_rel_err_vs_n_hashes quickstart_cost quickstart_heatmap_out_rel_err \
      quickstart_balance
exts="pdf png"
"$plot" "$tmp/sweep.h5" -o "$tmp/fig" --metric gram_recovery,mass_recall > "$tmp/sweep.list" ||
    fail "tools/plot sweep"
check sweep_out_rel_err_vs_n_hashes sweep_gram_recovery_vs_n_hashes \
      sweep_mass_recall_vs_n_hashes sweep_cost sweep_heatmap_out_rel_err \
      sweep_heatmap_gram_recovery sweep_heatmap_mass_recall sweep_balance sweep_bucket_sizes
"$plot" "$tmp/collision.h5" -o "$tmp/fig" --width single > "$tmp/collision.list" ||
    fail "tools/plot collision"
check collision_collision collision_collision_any
# It prints what it wrote, one path a line.
[ "$(wc -l < "$tmp/sweep.list")" -eq 18 ] || fail "tools/plot sweep listed $(wc -l < "$tmp/sweep.list") files, not 18"

# Refusals: an unknown metric is a usage error; a missing file an error.
"$plot" "$tmp/sweep.h5" -o "$tmp/fig" --metric no_such_metric 2> "$tmp/err" && fail "unknown metric accepted"
grep -q "no numeric column 'no_such_metric'" "$tmp/err" || fail "unknown metric: $(cat "$tmp/err")"
"$plot" "$tmp/missing.h5" -o "$tmp/fig" 2> "$tmp/err" && fail "a missing file is not an error"
grep -q "cannot read '$tmp/missing.h5': no such file" "$tmp/err" || fail "missing file: $(cat "$tmp/err")"
"$summary" "$tmp" 2> "$tmp/err" && fail "summary of a folder is not an error"
grep -q "it is a folder" "$tmp/err" && ! grep -q "errno" "$tmp/err" ||
    fail "summary of a folder: $(cat "$tmp/err")"
# Bad options are usage errors (exit 2, no traceback), before anything is drawn.
for bad in "--dpi 0" "--width -3" "--width nan" "--width 1e6" "--format ," "--only bogus" \
           "--stem ../evil" "-o $tmp/quickstart.h5"; do
    # shellcheck disable=SC2086 # the options split at spaces
    if "$plot" "$tmp/sweep.h5" -o "$tmp/fig2" $bad 2> "$tmp/err"; then
        fail "plot $bad: accepted"
    else
        rc=$?
        [ "$rc" -eq 2 ] || fail "plot $bad: exit $rc, not 2"
    fi
    grep -q Traceback "$tmp/err" && fail "plot $bad: a traceback: $(cat "$tmp/err")"
done
[ ! -e "$tmp/fig2" ] || fail "a refused command line created the output folder"
# A figure never replaces the file it plots (a stem that makes its name collide).
cp "$tmp/quickstart.h5" "$tmp/q_cost.png"
sum_before=$(cksum < "$tmp/q_cost.png")
"$plot" "$tmp/q_cost.png" -o "$tmp" --stem q --only cost --format png 2> "$tmp/err" &&
    fail "plotting over the input: accepted"
grep -q "is the results file being plotted" "$tmp/err" || fail "plot over its input: $(cat "$tmp/err")"
[ "$(cksum < "$tmp/q_cost.png")" = "$sum_before" ] || fail "plot replaced its input"
# A file whose every point failed (scores past the exactness limit): nothing to summarise.
cat > "$tmp/allfail.yaml" <<'YAML'
name: allfail
datasets: [{name: g, kind: gaussian, n: 16, d: 4}]
attention: {scale: 1e10}
strategies: [{name: rotation}]
sweep: {n_buckets: [2]}
YAML
"$exe" run "$tmp/allfail.yaml" -o "$tmp/allfail.h5" -q 2> /dev/null || true
[ -f "$tmp/allfail.h5" ] || fail "the all-failed run wrote no file"
"$summary" "$tmp/allfail.h5" > /dev/null 2> "$tmp/err" && fail "summary of no ok rows: exit 0"
grep -q "no ok rows in" "$tmp/err" || fail "summary of no ok rows: $(cat "$tmp/err")"
# No Python with the modules: a clear message naming the packages, exit 69.
if LSHLAB_PYTHON_SEARCH=/bin/false "$plot" "$tmp/sweep.h5" 2> "$tmp/err"; then
    fail "no Python found, yet exit 0"
else
    rc=$?
    [ "$rc" -eq 69 ] || fail "no Python found: exit $rc, not 69"
fi
grep -q "apt-get install python3-h5py python3-matplotlib python3-numpy" "$tmp/err" ||
    fail "no Python found: $(cat "$tmp/err")"

# tools/summary: 3 strategies x 2 n_buckets x 3 n_hashes groups of 2 repeats.
"$summary" "$tmp/sweep.h5" --group-by strategy,n_buckets,n_hashes --csv > "$tmp/s.csv" ||
    fail "tools/summary"
[ "$(wc -l < "$tmp/s.csv")" -eq 19 ] || fail "summary: $(wc -l < "$tmp/s.csv") lines, not 19"
head -1 "$tmp/s.csv" | grep -q '^strategy,n_buckets,n_hashes,n,out_rel_err,out_rel_err_se,' ||
    fail "summary header: $(head -1 "$tmp/s.csv")"
sed -n 2p "$tmp/s.csv" | grep -q '^rotation,4,1,2,' || fail "summary row: $(sed -n 2p "$tmp/s.csv")"
# Its mean is the mean of the two repeats that `lshlab show --csv` lists.
"$exe" show "$tmp/sweep.h5" --csv > "$tmp/show.csv"
"$py" - "$tmp/show.csv" "$tmp/s.csv" <<'PY' || fail "summary mean differs from the rows"
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if not r.get("point_id", "").startswith("#")]
want = [float(r["out_rel_err"]) for r in rows if r["strategy"] == "kmeans"
        and r["n_buckets"] == "8" and r["n_hashes"] == "2"]
got = [r for r in csv.DictReader(open(sys.argv[2])) if r["strategy"] == "kmeans"
       and r["n_buckets"] == "8" and r["n_hashes"] == "2"][0]
assert len(want) == 2, want
assert abs(float(got["out_rel_err"]) - sum(want) / 2) < 1e-12, (got, want)
assert abs(float(got["out_rel_err_se"]) - abs(want[0] - want[1]) / 2) < 1e-12, (got, want)
PY
"$summary" "$tmp/collision.h5" --group-by strategy,n_buckets > "$tmp/c.txt" || fail "summary collision"
grep -q "^hyperplane" "$tmp/c.txt" || fail "summary collision: $(cat "$tmp/c.txt")"

# A dataset without layer and head axes reads as layer = head = -1 (results format 1
# or 2 alike): one group of every ok row.
"$summary" "$tmp/sweep.h5" --group-by layer,head --csv -m out_rel_err > "$tmp/lh.csv" ||
    fail "summary --group-by layer,head"
sed -n 2p "$tmp/lh.csv" | grep -q '^-1,-1,36,' || fail "summary by layer,head: $(cat "$tmp/lh.csv")"
"$summary" "$tmp/sweep.h5" --group-by layr 2> "$tmp/err" && fail "unknown --group-by column accepted"
grep -q "key columns: point_id, dataset, layer, head, strategy" "$tmp/err" ||
    fail "unknown --group-by column: $(cat "$tmp/err")"
# --help: exit 0 and the per-head options are there.
"$plot" --help > "$tmp/help" || fail "tools/plot --help"
grep -q "heads_<metric>" "$tmp/help" && grep -q -- "--n-buckets B" "$tmp/help" ||
    fail "tools/plot --help lacks the head figures"
"$summary" --help > "$tmp/help" || fail "tools/summary --help"
grep -q "layer,head" "$tmp/help" || fail "tools/summary --help lacks --group-by layer,head"

if [ "$failures" -gt 0 ]; then
    echo "$failures failures"
    exit 1
fi
echo "ok: every figure and summary"
