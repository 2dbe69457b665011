#!/usr/bin/env python3
"""efficiency.py - how much of the machine one `lshlab run` used (a benchmark
helper, not a test).

  efficiency.py RESULTS.h5 --wall S --threads T --dgemm GFLOPS [--log RUN_STDOUT]

Useful work (the contract of tools/bench/NOTES.md, issue 12):
  * each unit's exact reference: 2 (d + d_v) flops for each allowed pair
    (evaluated rows x keys; causal: the keys up to the row);
  * each pass's distinct candidate pairs at its largest n_hashes: 2 (d + d_v)
    flops each, from the points' own mean_candidates x evaluated rows (a pass:
    the same unit, strategy, parameters, buckets, seed and candidate rules;
    the combines share its pairs).
k-means fits and hashing are not counted (conservative).

efficiency = useful flops / wall seconds of the whole command / (T x the
single-thread DGEMM rate).  With --log (the command's stdout, with its
`cpu:` line), the T x wall core-seconds are split into reference,
hashing and fits, evaluation, setup and I/O (data, writing, other, and the
process's start and exit outside lshlab's own clock) and idle threads.
"""
import argparse
import re
import sys

try:
    import h5py
except ImportError:  # pyenv's python3 on PATH does not see Debian's packages
    sys.exit("efficiency.py: needs h5py (run it with /usr/bin/python3; apt-get install python3-h5py)")


def useful_flops(path):
    with h5py.File(path, "r") as f:
        cfg = f.attrs.get("resolved_config", "")
        cfg = cfg.decode() if isinstance(cfg, bytes) else str(cfg)
        causal = re.search(r"^\s*causal:\s*true\s*$", cfg, re.M) is not None
        shapes = {}
        for name, g in f["datasets"].items():
            a = g.attrs
            n, d = int(a["n"]), int(a["d"])
            dv = int(a.get("d_v", d))
            m = int(a.get("reference_rows", n)) or n
            shapes[name] = (n, m, d, dv)
        runs = f["runs"][()]
    cols = runs.dtype.names

    def text(v):
        return v.decode() if isinstance(v, bytes) else str(v)

    units, passes = set(), {}
    pass_key = [c for c in ("dataset", "layer", "head", "strategy", "params", "mode", "chunk_size",
                            "look_back", "window", "min_collisions", "sink", "local", "n_buckets",
                            "repeat", "seed") if c in cols]
    for row in runs:
        if text(row["status"]) != "ok":
            continue
        ds = text(row["dataset"])
        units.add((ds, int(row["layer"]), int(row["head"])))
        key = tuple(text(row[c]) for c in pass_key)
        h = int(row["n_hashes"])
        if key not in passes or h > passes[key][0]:
            passes[key] = (h, float(row["mean_candidates"]), ds)
    ref = pairs = 0.0
    for ds, _, _ in units:
        n, m, d, dv = shapes[ds]
        allowed = m * (n + 1) / 2.0 if causal else float(m) * n
        ref += 2.0 * (d + dv) * allowed
    for _, mc, ds in passes.values():
        n, m, d, dv = shapes[ds]
        pairs += 2.0 * (d + dv) * mc * m
    return ref, pairs, len(units), len(passes)


def read_log(path):
    """The phases' CPU seconds and the elapsed time from the `cpu:` line of
    `lshlab run`'s stdout."""
    cpu, elapsed = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("cpu: "):
            cpu = {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+) s", line)}
            m = re.search(r"threads? x ([0-9.]+) s", line)
            elapsed = float(m.group(1)) if m else None
    return cpu, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--wall", type=float, required=True, help="wall seconds of the whole command")
    ap.add_argument("--threads", type=int, required=True, help="-j of the run")
    ap.add_argument("--dgemm", type=float, required=True, help="single-thread DGEMM GFLOP/s")
    ap.add_argument("--log", help="the run's stdout (its cpu: line) for the breakdown")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    ref, pairs, n_units, n_passes = useful_flops(a.results)
    total = ref + pairs
    room = a.wall * a.threads
    eff = total / (room * a.dgemm * 1e9)
    label = a.label + ": " if a.label else ""
    print("%sefficiency %.0f%%: %.2f GFLOP useful (reference %.2f over %d unit%s, candidate pairs %.2f "
          "over %d pass%s) in %.3f s on %d thread%s at %.1f GFLOP/s each (ideal %.3f s)"
          % (label, 100 * eff, total / 1e9, ref / 1e9, n_units, "" if n_units == 1 else "s",
             pairs / 1e9, n_passes, "" if n_passes == 1 else "es", a.wall, a.threads,
             "" if a.threads == 1 else "s", a.dgemm, total / (a.threads * a.dgemm * 1e9)))
    if a.log:
        cpu, elapsed = read_log(a.log)
        if not cpu or elapsed is None:
            print("  (no cpu: line in %s: no breakdown)" % a.log)
            return
        outside = max(a.wall - elapsed, 0.0)  # start and exit: one thread
        parts = [("reference", cpu.get("reference", 0.0)),
                 ("hashing and fits", cpu.get("hashing", 0.0)),
                 ("evaluation", cpu.get("evaluation", 0.0)),
                 ("setup and I/O", cpu.get("data", 0.0) + cpu.get("writing", 0.0) +
                  cpu.get("other", 0.0) + outside)]
        busy = sum(v for _, v in parts)
        parts.append(("idle threads", max(room - busy, 0.0)))
        print("  where the %d x %.3f s went: %s" % (a.threads, a.wall, ", ".join(
            "%s %.0f%% (%.3f s)" % (k, 100 * v / room, v) for k, v in parts)))


if __name__ == "__main__":
    main()
