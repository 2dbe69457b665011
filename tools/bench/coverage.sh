#!/usr/bin/env bash
# coverage.sh - do the sampled-reference estimates (reference_rows) cover the
# exact values?  For each seed, the same dataset is evaluated exactly and with
# a sample of M rows; counts how often |estimate - exact| <= 2 se (about 95% of
# the time for a normal estimator).
#   tools/bench/coverage.sh [BUILD_DIR] [SEEDS] [M] [COMBINE]
#     defaults: build 40 512 "[union, rounds]" (the row path); "union" alone
#     takes the tile path
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build} seeds=${2:-40} m=${3:-512} combine=${4:-"[union, rounds]"}
lshlab="$build/core/lshlab"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
config() { # seed, extra dataset keys
  cat <<YAML
name: coverage
seed: $1
datasets:
  - {name: c, kind: clustered, n: 4096, d: 64, clusters: 32, spread: 0.5$2}
strategies:
  - name: rotation
  - name: hyperplane
sweep:
  n_hashes: [1, 4]
  n_buckets: [16, 64]
  combine: $combine
YAML
}
for s in $(seq 1 "$seeds"); do
  config "$s" "" > "$tmp/exact.yaml"
  config "$s" ", reference_rows: $m" > "$tmp/sampled.yaml"
  "$lshlab" run "$tmp/exact.yaml" -o "$tmp/exact-$s.h5" -q
  "$lshlab" run "$tmp/sampled.yaml" -o "$tmp/sampled-$s.h5" -q
  # quoted fields (params with commas) are emptied: only numbers are compared
  "$lshlab" show "$tmp/exact-$s.h5" --csv | sed 's/"[^"]*"//g' > "$tmp/exact-$s.csv"
  "$lshlab" show "$tmp/sampled-$s.h5" --csv | sed 's/"[^"]*"//g' > "$tmp/sampled-$s.csv"
done
awk -F, -v m="$m" '
  FNR == 1 { for (i = 1; i <= NF; i++) col[FILENAME, $i] = i; next }
  FILENAME ~ /exact/ { for (i = 1; i <= NF; i++) exact[FILENAME, FNR, i] = $i; next }
  {
    ex = FILENAME; sub(/sampled/, "exact", ex)
    n = split("out_rel_err attn_rel_err mass_recall kl gram_recovery topk_recall_1 topk_recall_10 density mean_candidates", names, " ")
    for (k = 1; k <= n; k++) {
      v = $(col[FILENAME, names[k]]); se = $(col[FILENAME, names[k] "_se"])
      x = exact[ex, FNR, col[ex, names[k]]]
      d = v - x; if (d < 0) d = -d
      total[names[k]]++; if (d <= 2 * se) ok[names[k]]++
      all++; if (d <= 2 * se) allok++
    }
  }
  END {
    printf "reference_rows %d of 4096: share of estimates within 2 se of the exact value\n", m
    for (k in total) printf "  %-16s %5.1f%% of %d\n", k, 100 * ok[k] / total[k], total[k]
    printf "  %-16s %5.1f%% of %d\n", "all", 100 * allok / all, all
  }' "$tmp"/exact-*.csv "$tmp"/sampled-*.csv
