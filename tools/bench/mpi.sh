#!/usr/bin/env bash
# mpi.sh - lshlab under mpirun on this machine (a benchmark, not a test; figures
# are measured, nothing is asserted):
#  1. N ranks x 1 thread against 1 process x N threads (N = the CPUs, 2 here), same
#     results (checked bit for bit): the real-heads study (experiments/configs/
#     real-heads.yaml: units of one slice, spread by hash groups; median of 3) and one
#     large dataset spread by rows (bench-mpi-rows.yaml, n = 65,536; one run each);
#  2. the exact reference at n = 2^s for each s of --sizes (default "18 19";
#     bench-mpi-exact.yaml: d = 64, one point of block-local attention) under
#     mpirun -np N -j 1: each rank's wall and CPU seconds (/usr/bin/time), the bytes
#     ranks sent each other (Open MPI's pml monitoring: every point-to-point message,
#     those inside collectives included), and the same run with reference_rows 256,
#     which leaves what every rank does whatever N (make the data, hash, finish);
#  3. the projection to M machines (--machines, default 64) of one rank each, at a
#     stated bandwidth into rank 0 (--gbit, default 10): every rank's fixed part +
#     the reference work / M + the communication (the bytes gathered to rank 0 grow as
#     (M - 1) / M of all rows), and the share of time that goes to communication;
#     n = 2^20 extrapolated (the work grows as n^2) when it was not measured.
#   tools/bench/mpi.sh [--sizes "18 19 20"] [--machines 64] [--gbit 10] [--exact-only]
#                      [BUILD_DIR]          (--exact-only: sections 2 and 3 alone)
# About 15 minutes with the default sizes on 2 cores (2^19: ~10 of them); 2^20 adds
# about 40 minutes.  Wall times drift on shared machines: compare the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes="18 19" machines=64 gbit=10 compare=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --machines) machines=$2; shift 2 ;;
    --gbit) gbit=$2; shift 2 ;;
    --exact-only) compare=0; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mpi.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
build=${1:-build}
lshlab=${LSHLAB_EXE:-$PWD/$build/core/lshlab}
[ -x "$lshlab" ] || { echo "mpi.sh: build first (tools/setup.sh --no-run)" >&2; exit 1; }
grep -q '^MPI: Open MPI' <("$lshlab" --version) ||
  { echo "mpi.sh: $lshlab is built without MPI (meson setup -Dmpi=enabled)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpi.sh: no mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
py=$(tools/summary --which-python 2>/dev/null) || py=
N=$(nproc)
[ "$N" -ge 2 ] || N=2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One machine: no binding (a rank's threads may use every core), loopback only.
mpi=(mpirun --oversubscribe --bind-to none --mca btl self,vader,tcp
     --mca btl_vader_single_copy_mechanism none --mca btl_tcp_if_include lo
     --mca oob_tcp_if_include lo)
[ "$(id -u)" -ne 0 ] || mpi+=(--allow-run-as-root)

now() { date +%s.%N; }
wall() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
same() {   # same A.h5 B.h5: bit-identical metric columns?
  if [ -z "$py" ]; then echo "(not checked: no Python with h5py)"; return; fi
  "$py" tests/mpi/compare_runs.py "$1" "$2" | head -3
}

# threads_vs_ranks LABEL CONFIG REPEATS
threads_vs_ranks() {
  local label=$1 cfg=$2 reps=$3 tt="" tr="" k
  for k in $(seq "$reps"); do
    tt="$tt $(wall "$lshlab" run "$cfg" -o "$out/t.h5" --force -q -j "$N")"
    tr="$tr $(wall "${mpi[@]}" -np "$N" "$lshlab" run "$cfg" -o "$out/r.h5" --force -q -j 1)"
  done
  local mt mr
  mt=$(echo "$tt" | median) mr=$(echo "$tr" | median)
  echo "$label: 1 process x $N threads (s):$tt"
  echo "$label: $N ranks x 1 thread (s):$tr"
  awk -v t="$mt" -v r="$mr" -v n="$N" -v k="$reps" 'BEGIN {
    printf "%s ranks / %s threads (median of %d): %.2f s / %.2f s = %.2f\n", n, n, k, r, t, r / t }'
  same "$out/t.h5" "$out/r.h5"
}

if [ "$compare" = 1 ]; then
  echo "== 1. $N ranks x 1 thread against 1 process x $N threads ($(date -u +%FT%TZ), $(nproc) CPUs)"
  threads_vs_ranks "real-heads (432 points, 9 units)" experiments/configs/real-heads.yaml 3
  threads_vs_ranks "bench-mpi-rows (n = 65,536, 4 points)" experiments/configs/bench-mpi-rows.yaml 1
fi

echo "== 2. exact reference, mpirun -np $N -j 1 (d = 64, one block-local point; $(date -u +%FT%TZ))"
# exact_run TAG N_LOG2 [SAMPLED]: one run; per-rank "wall user sys maxrss_kB" in $out/TAG.time.R,
# the monitoring lines in $out/TAG.err.
exact_run() {
  local tag=$1 s=$2 sampled=${3:-} n=$((1 << $2))
  sed -e "s/^    n: 262144$/    n: $n/" -e "s/^  n_buckets: 4096$/  n_buckets: $((n / 64))/" \
    experiments/configs/bench-mpi-exact.yaml > "$out/$tag.yaml"
  [ -z "$sampled" ] || sed -i "s/^    d: 64$/    d: 64\n    reference_rows: 256/" "$out/$tag.yaml"
  "${mpi[@]}" -np "$N" --mca pml_monitoring_enable 2 --mca pml_monitoring_enable_output 1 \
    sh -c 'exec /usr/bin/time -f "%e %U %S %M" -o "$0.time.$OMPI_COMM_WORLD_RANK" "$@"' "$out/$tag" \
    "$lshlab" run "$out/$tag.yaml" -o "$out/$tag.h5" --force -j 1 --memory-limit 4G \
    > "$out/$tag.out" 2> "$out/$tag.err" ||
    { echo "mpi.sh: mpirun failed on n = 2^$s:" >&2; tail -20 "$out/$tag.err" >&2; exit 1; }
}
# bytes TAG: every byte ranks sent each other (point-to-point, external and internal;
# the monitoring prints to stdout at MPI_Finalize)
bytes() { awk -F'\t' '$1 == "E" || $1 == "I" { split($4, b, " "); s += b[1] } END { printf "%.0f", s }' "$out/$1.out"; }
msgs() { awk -F'\t' '$1 == "E" || $1 == "I" { split($5, m, " "); s += m[1] } END { printf "%.0f", s }' "$out/$1.out"; }
to0() { awk -F'\t' '($1 == "E" || $1 == "I") && $3 == "0" { split($4, b, " "); s += b[1] } END { printf "%.0f", s }' "$out/$1.out"; }
# the largest wall and CPU seconds of a rank (CPU: what the projection divides; wall
# also counts the waits, and time lost to other work on a shared machine)
slowest() { cat "$out/$1".time.* | awk '$1 > w { w = $1 } END { print w }'; }
cpu() { cat "$out/$1".time.* | awk '$2 + $3 > c { c = $2 + $3 } END { print c }'; }

results=()
for s in $sizes; do
  exact_run "x$s" "$s"
  exact_run "f$s" "$s" sampled
  echo "n = 2^$s = $((1 << s)):"
  grep -h "reference for dataset" "$out/x$s.err" | sed 's/^/  rank 0: /' || true
  for f in "$out/x$s".time.*; do
    read -r w u y m < "$f"
    echo "  rank ${f##*.}: wall $w s, CPU $u s user + $y s system, max RSS $((m / 1024)) MiB"
  done
  tx=$(cpu "x$s") tf=$(cpu "f$s") b=$(bytes "x$s") b0=$(to0 "x$s") nm=$(msgs "x$s")
  echo "  busiest rank: CPU $tx s (wall $(slowest "x$s") s); the same with reference_rows 256 (what every rank does whatever N): CPU $tf s (wall $(slowest "f$s") s)"
  echo "  sent between ranks: $b bytes in $nm messages ($b0 to rank 0)"
  results+=("$s $tx $tf $b0 $nm")
done

echo "== 3. projected on $machines machines (one rank each, $gbit Gbit/s into rank 0)"
# Per size, from the busiest rank's CPU seconds: fixed part f (every rank, whatever the
# count), reference work W = N (tx - f) rank-seconds, bytes to rank 0 at M ranks = b0 * ((M - 1) / M) / ((N - 1) / N) (the rows
# rank 0 does not own), plus 20 us per message and rank.
project() {   # s tx tf b0 msgs [extrapolated-from-s]
  awk -v s="$1" -v tx="$2" -v tf="$3" -v b0="$4" -v nm="$5" -v N="$N" -v M="$machines" \
      -v g="$gbit" -v from="${6:-}" 'BEGIN {
    W = N * (tx - tf); if (W < 0) W = 0
    bytes = b0 * ((M - 1) / M) / ((N - 1) / N)
    comm = bytes * 8 / (g * 1e9) + 20e-6 * nm / (N - 1) * (M - 1)
    T = tf + W / M + comm
    printf "n = 2^%d%s: on %d cores %.1f CPU s (busiest rank); reference work %.0f rank-s; on %d machines %.1f s = fixed %.1f + work %.1f + communication %.3f (%.0f MB): communication %.2f%% of the time, speed-up %.0fx over %d ranks here\n",
      s, from, N, tx, W, M, T, tf, W / M, comm, bytes / 1e6, 100 * comm / T, tx / T, N }'
}
last=
for r in "${results[@]}"; do
  # shellcheck disable=SC2086
  project $r
  last=$r
done
if [ -n "$last" ]; then
  # shellcheck disable=SC2086
  set -- $last
  if [ "$1" -lt 20 ]; then
    # The work grows as n^2, the fixed part, the bytes and the messages as n.
    k=$((1 << (20 - $1)))
    tf=$(awk -v f="$3" -v k="$k" 'BEGIN { print f * k }')
    tx=$(awk -v x="$2" -v f="$3" -v k="$k" 'BEGIN { print f * k + (x - f) * k * k }')
    project 20 "$tx" "$tf" $(($4 * k)) $(($5 * k)) " (extrapolated from 2^$1)"
  fi
fi
