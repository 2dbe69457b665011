"""lshlab.summary - mean and standard error over repeats of every metric of an
lshlab results file, grouped by key columns (run it through tools/summary)."""

import argparse
import csv
import difflib
import math
import sys

import numpy as np

from . import results as lr

DESCRIPTION = """\
Summarise an lshlab results file: for every group of rows that share the
--group-by key columns, the number of rows (n) and, for every metric, the
mean over the group's rows and its standard error (sample sd / sqrt(n); with
n = 1 the row's own X_se column when the file has one, else empty).  The
standard error is over repeats when the group fixes every other key column
that varies in the file; otherwise it also spreads over those columns.  Rows
of /runs whose status is not ok are left out (a note on stderr says how many).

The default grouping is every key column except point_id, repeat, seed,
status and message (and layer and head when every row has -1 there, and
min_collisions, sink and local when every row has today's rule 1, 0, 0): the
mean over repeats of each point.  --group-by takes any key columns of the
table, in the order given; of /runs these are
dataset, layer, head, strategy, params, mode, chunk_size, look_back, window,
combine, min_collisions, sink, local, n_hashes, n_buckets (and point_id, repeat,
seed, status).  A file written before min_collisions, sink and local reads
them as 1, 0, 0.  layer and
head (results format 2) are -1 for a dataset without that axis; a file of
format 1 reads them as -1 too.  --where keeps only the rows whose key column
has the given value, so that one can summarise, say, the heads of one
strategy at one (n_hashes, n_buckets).

--budget DENSITY asks instead: at a cost of at most DENSITY (density, the share
of the allowed pairs computed), which rule recovers most, and how close is it to
the best set of that size?  A rule is a strategy with its parameters that vary
(kmeans balanced=true is its own), and the mode settings, combine,
min_collisions, sink and local when they vary.  For each dataset and rule, each
point (n_hashes, n_buckets) gets its mean density and mean --metric (default
mass_recall): per (layer, head) over the repeats, then over the heads.  Of the
points whose mean density is <= DENSITY, the one with the best metric (highest;
lowest for out_rel_err, attn_rel_err, kl and empty_rows) is listed, best first
within each dataset; ties go to the cheaper point (smaller density, then fewer
n_hashes, then fewer n_buckets).  With the oracle columns (attention.oracle)
the oracle's value at that point is beside it, and for mass_recall the ratio
metric / oracle of the two means (1: as good as the best set of that size).  A
rule with no point under the budget is listed last as "none under budget" with
its smallest density.  Rows whose status is not ok are left out and counted in
a footer line (on stderr with --csv)."""

EPILOG = """\
examples:
  tools/summary results/quickstart.h5 --group-by strategy,n_buckets,n_hashes
  tools/summary results/quickstart.h5 --group-by strategy --metrics out_rel_err,density --csv
  tools/summary results/collision.h5 --group-by strategy,n_buckets,angle
  tools/summary results/real-heads.h5 -g layer,head,strategy -m mass_recall --where n_buckets=16
  tools/summary results/methods.h5 --budget 0.05
  tools/summary results/methods.h5 --budget 0.05 --metric out_rel_err --where dataset=tinylm --csv

exit codes: 0 ok, 1 unreadable file (or not a results file of format 1 or 2),
2 bad command line (unknown column or value)"""


def fmt(v, digits=4):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (float,)):
        return f"{v:.{digits}g}"
    return str(v)


# ---- --budget: the best point of each rule at a cost of at most DENSITY -------------

# Metrics whose direction is known: higher is better, or (errors, counts of empty
# rows) lower is better.  topk_recall_K columns are higher-better for every K.
HIGHER_BETTER = {"mass_recall", "gram_recovery", "oracle_mass_recall"}
LOWER_BETTER = {"out_rel_err", "attn_rel_err", "kl", "empty_rows", "oracle_out_rel_err"}
# Key columns that make a rule (besides dataset): a point of a rule is one
# (n_hashes, n_buckets); the rows of a point differ in layer, head and repeat only.
RULE_KEYS = ["strategy", "params", "mode", "chunk_size", "look_back", "window", "combine",
             "min_collisions", "sink", "local"]
# Mean densities this close above the budget count as under it (rounding of means).
BUDGET_SLACK = 1e-9


def higher_is_better(metric):
    """True for a metric where more is better, False for an error (less is better),
    None when the direction is not known (the metric cannot rank points)."""
    if metric in HIGHER_BETTER or metric.startswith("topk_recall_"):
        return True
    if metric in LOWER_BETTER:
        return False
    return None


def rule_labels(table):
    """{rule key tuple (RULE_KEYS present in table): label}: the strategy, then only
    what varies in the table: the parameters that differ within the strategy (a
    missing flag reads false), the mode settings, combine, min_collisions, sink and
    local (the labels tools/plot gives its lines)."""
    cols = [c for c in RULE_KEYS if c in table]
    varying = {c for c in cols if len(lr.unique_in_order(table[c])) > 1}
    if "mode" in table:  # chunk settings vary only if they do among chunked rows
        chunked = table["mode"] == "chunked"
        for c in ("chunk_size", "look_back", "window"):
            if c in varying and len(set(table[c][chunked])) <= 1:
                varying.discard(c)
    vary_params = {}
    if "params" in table:
        by_strategy = {}
        for s, p in zip(table["strategy"], table["params"]):
            by_strategy.setdefault(s, {})[p] = None
        for s, plist in by_strategy.items():
            dicts = [dict(lr.split_params(p)) for p in plist]
            names = list(dict.fromkeys(n for d in dicts for n in d))
            vary_params[s] = [n for n in names if len({d.get(n) for d in dicts}) > 1]
    labels = {}
    for key, _ in lr.group_rows(table, cols):
        rec = dict(zip(cols, key))
        s = rec["strategy"]
        parts = [s]
        if vary_params.get(s):
            d = dict(lr.split_params(rec["params"]))
            parts += [f"{k}={d.get(k, 'false')}" for k in vary_params[s]]
        if "mode" in varying:
            parts.append(f"mode={rec['mode']}")
        if rec.get("mode") == "chunked":
            parts += [f"{c}={rec[c]}" for c in ("chunk_size", "look_back", "window")
                      if c in varying]
        parts += [f"{c}={rec[c]}" for c in ("combine", "min_collisions", "sink", "local")
                  if c in varying]
        labels[key] = " ".join(parts)
    return cols, labels


def head_mean(table, idx, col):
    """Mean of column col over the rows idx of one point: first over the repeats of
    each (layer, head), then over the heads, so that every head weighs the same
    even when some of its repeats are missing."""
    heads = {}
    for i in idx:
        u = (int(table["layer"][i]) if "layer" in table else -1,
             int(table["head"][i]) if "head" in table else -1)
        heads.setdefault(u, []).append(float(table[col][i]))
    return float(np.mean([np.mean(v) for v in heads.values()])), len(heads)


def budget_pick(table, budget, metric="mass_recall"):
    """The question "at a cost of at most `budget` (density, the share of pairs
    computed), which rule recovers most, and how close is it to the best set of
    that size?" asked of a /runs table (lshlab.results.Table, rows of any status).

    Rows whose status is not ok are left out.  For each dataset and each rule (see
    rule_labels), each point (n_hashes, n_buckets) gets its mean density and mean
    metric (and oracle column): per (layer, head) over the repeats, then over the
    heads.  Of the points whose mean density is <= budget (to a relative 1e-9), the
    one with the best metric (highest, or lowest for an error) is the rule's pick;
    ties go to the smaller density, then fewer n_hashes, then fewer n_buckets.

    Returns a dict: metric, higher (bool), oracle (the oracle column or None),
    left_out (rows not ok), and rows: one dict per (dataset, rule), in dataset
    order and best first within a dataset (rules with no point under the budget
    last, cheapest first), with keys dataset, rule, strategy, params, under
    (bool), n_hashes, n_buckets, density, value, oracle, ratio (metric / oracle for
    a higher-better metric with an oracle column, else None), heads.  A rule with
    no point under the budget has under False, value/oracle/ratio None, and its
    smallest-density point's n_hashes, n_buckets and density.

    ValueError when metric is not a numeric column of table or its direction is
    not known."""
    higher = higher_is_better(metric)
    if metric not in table or table[metric].dtype.kind not in "fiu":
        raise ValueError(f"--metric: no numeric column '{metric}' in /{table.name}")
    if higher is None:
        known = sorted(HIGHER_BETTER | LOWER_BETTER) + ["topk_recall_K"]
        raise ValueError(f"--metric: '{metric}' cannot rank points (neither higher nor lower "
                         "is known to be better); metrics: " + ", ".join(known))
    if "density" not in table:
        raise ValueError(f"/{table.name} has no density column")
    n_all = len(table)
    ok = lr.ok_runs(table)
    oracle = lr.ORACLE_COLUMNS.get(metric)
    if oracle not in ok:
        oracle = None
    cols, labels = rule_labels(ok)
    by_dataset = lr.group_rows(ok, ["dataset"]) if "dataset" in ok else [((None,), None)]
    rows = []
    for (ds,), didx in by_dataset:
        sub = ok if didx is None else ok.select(didx)
        picks = []
        for key, ridx in lr.group_rows(sub, cols):
            r = sub.select(ridx)
            pts = []
            for (h, b), pidx in lr.group_rows(r, ["n_hashes", "n_buckets"]):
                dens, heads = head_mean(r, pidx, "density")
                val, _ = head_mean(r, pidx, metric)
                orc = head_mean(r, pidx, oracle)[0] if oracle else None
                pts.append({"n_hashes": int(h), "n_buckets": int(b), "density": dens,
                            "value": val, "oracle": orc, "heads": heads})
            rec = dict(zip(cols, key))
            base = {"dataset": ds, "rule": labels[key], "strategy": rec["strategy"],
                    "params": rec.get("params", "")}
            under = [p for p in pts if p["density"] <= budget * (1 + BUDGET_SLACK)]
            if under:
                best = min(under, key=lambda p: ((-p["value"] if higher else p["value"]),
                                                 p["density"], p["n_hashes"], p["n_buckets"]))
                ratio = None
                if higher and best["oracle"] is not None and best["oracle"] != 0:
                    ratio = best["value"] / best["oracle"]
                picks.append(dict(base, under=True, ratio=ratio, **best))
            else:
                low = min(pts, key=lambda p: (p["density"], p["n_hashes"], p["n_buckets"]))
                picks.append(dict(base, under=False, n_hashes=low["n_hashes"],
                                  n_buckets=low["n_buckets"], density=low["density"],
                                  value=None, oracle=None, ratio=None, heads=low["heads"]))
        good = [p for p in picks if p["under"]]
        good.sort(key=lambda p: -p["value"] if higher else p["value"])  # stable: ties in rule order
        bad = sorted((p for p in picks if not p["under"]), key=lambda p: p["density"])
        rows += good + bad
    return {"metric": metric, "higher": higher, "oracle": oracle,
            "left_out": n_all - len(ok), "rows": rows, "budget": budget}


def print_budget(res, as_csv, out=None):
    """The table of budget_pick's result, aligned (with a footer) or CSV."""
    out = sys.stdout if out is None else out
    m, oracle, higher = res["metric"], res["oracle"], res["higher"]
    header = ["dataset", "rule", "n_buckets", "n_hashes", "density", m]
    if oracle:
        header.append(oracle)
        if higher:
            header.append(f"{m}/oracle")
    if as_csv:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["dataset", "rule", "strategy", "params", "under_budget", "n_buckets",
                    "n_hashes", "heads", "density", m]
                   + ([oracle] + (["ratio"] if higher else []) if oracle else []))

        def num(v):
            return "" if v is None else f"{v:.17g}"
        for r in res["rows"]:
            w.writerow([r["dataset"], r["rule"], r["strategy"], r["params"],
                        1 if r["under"] else 0, r["n_buckets"], r["n_hashes"], r["heads"],
                        num(r["density"]), num(r["value"])]
                       + ([num(r["oracle"])] + ([num(r["ratio"])] if higher else [])
                          if oracle else []))
        return
    cells = []
    for r in res["rows"]:
        line = [str(r["dataset"]), r["rule"], str(r["n_buckets"]), str(r["n_hashes"]),
                fmt(r["density"])]
        if r["under"]:
            line.append(fmt(r["value"]))
            if oracle:
                line.append(fmt(r["oracle"]))
                if higher:
                    line.append(fmt(r["ratio"]))
        else:
            line.append("none under budget (smallest density shown)")
        cells.append(line)
    full = [c for c in cells if not c[-1].startswith("none")]
    width = [max([len(h)] + [len(c[i]) for c in (cells if i < 5 else full)])
             for i, h in enumerate(header)]
    left = {0, 1}

    def line(vals):
        return "  ".join(v if i >= len(width) else
                         (v.ljust(width[i]) if i in left else v.rjust(width[i]))
                         for i, v in enumerate(vals)).rstrip()
    print(line(header), file=out)
    for c in cells:
        if c[-1].startswith("none"):
            print(line(c[:5]) + "  " + c[5], file=out)
        else:
            print(line(c), file=out)
    n_rules = len(res["rows"])
    n_under = sum(r["under"] for r in res["rows"])
    print(f"# budget: density <= {res['budget']:g}; {m}: {'higher' if higher else 'lower'} "
          f"is better; each point's mean over its heads (per head over repeats); "
          f"{n_under} of {n_rules} rules have a point under the budget", file=out)
    print(f"# {res['left_out']} rows whose status is not ok are left out", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/summary", description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="results file (HDF5) written by lshlab run")
    ap.add_argument("-g", "--group-by", metavar="KEYS",
                    help="comma-separated key columns, e.g. strategy,n_buckets,n_hashes "
                         "or layer,head,strategy (default: every key but the repeat)")
    ap.add_argument("-m", "--metrics", metavar="COLS",
                    help="comma-separated metric columns (default: all)")
    ap.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                    help="keep only rows whose key column COL equals VALUE (repeatable, "
                         "e.g. --where strategy=kmeans --where n_buckets=16)")
    ap.add_argument("-t", "--table", choices=["runs", "collision"],
                    help="which table (default: /runs, else /collision)")
    ap.add_argument("--csv", action="store_true",
                    help="CSV with a header line, full precision (17 significant digits)")
    ap.add_argument("--budget", type=float, metavar="DENSITY",
                    help="instead of means: for each dataset and rule, the point with the "
                         "best --metric among those whose mean density is <= DENSITY "
                         "(0 < DENSITY <= 1), best first, beside the oracle's value")
    ap.add_argument("--metric", metavar="COL",
                    help="with --budget: the metric that ranks points (default mass_recall; "
                         "errors such as out_rel_err rank lowest first)")
    args = ap.parse_args(argv)
    if args.budget is not None:
        if not (math.isfinite(args.budget) and 0 < args.budget <= 1):
            ap.error(f"--budget: {args.budget:g} is not a density in (0, 1]")
        if args.group_by:
            ap.error("--budget picks one point per dataset and rule; it takes no --group-by "
                     "(narrow the rows with --where)")
        if args.metrics:
            ap.error("--budget ranks by one metric: use --metric COL, not --metrics")
        if args.table == "collision":
            ap.error("--budget reads /runs (the density column), not /collision")
        args.table = "runs"
    elif args.metric:
        ap.error("--metric goes with --budget; for mean tables use -m/--metrics")

    try:
        names = [args.table] if args.table else ["runs", "collision"]
        table = None
        for name in names:
            table = lr.read_table(args.file, name)
            if table is not None:
                break
    except lr.FormatError as e:
        print(f"tools/summary: error: {e}", file=sys.stderr)
        return 1
    except (OSError, KeyError) as e:
        print(f"tools/summary: error: cannot read '{args.file}': {lr.why_unreadable(args.file, e)}",
              file=sys.stderr)
        return 1
    if table is None:
        print(f"tools/summary: error: '{args.file}' has no /{' or /'.join(names)} table",
              file=sys.stderr)
        return 1

    if args.budget is not None:
        try:
            table = lr.where(table, lr.parse_where(args.where, table))
        except ValueError as e:
            ap.error(str(e))
        if not len(lr.ok_runs(table)):
            print(f"tools/summary: error: no ok rows of '{args.file}'"
                  + (" match " + " and ".join(args.where) if args.where else ""),
                  file=sys.stderr)
            return 1
        try:
            res = budget_pick(table, args.budget, args.metric or "mass_recall")
        except ValueError as e:
            ap.error(str(e) + ("; metrics: " + ", ".join(table.metrics())
                               if "no numeric column" in str(e) else ""))
        if args.csv and res["left_out"]:
            print(f"tools/summary: note: {res['left_out']} rows whose status is not ok "
                  "are left out", file=sys.stderr)
        print_budget(res, args.csv)
        return 0

    if table.name == "runs":
        n_all = len(table)
        table = lr.ok_runs(table)
        if not len(table):  # as tools/plot's "nothing to draw"
            print(f"tools/summary: error: no ok rows in '{args.file}' ({n_all} rows, none "
                  "with status ok)", file=sys.stderr)
            return 1
        if len(table) < n_all:
            print(f"tools/summary: note: {n_all - len(table)} rows whose status is not ok "
                  "are left out", file=sys.stderr)

    keys_all = table.keys()
    if args.group_by:
        keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
        if not keys:
            ap.error(f"--group-by: no column named in '{args.group_by}'; key columns: "
                     + ", ".join(keys_all))
    else:  # layer and head of data without those axes (-1, or absent) would be noise
        keys = [k for k in keys_all if k not in lr.REPEAT_COLUMNS and k not in table.filled
                and not (k in ("layer", "head") and len(table) and (table[k] == -1).all())
                and not lr.default_rule(table, k)]
    for k in keys:
        if k not in keys_all:
            what = "a metric, not a key column" if k in table else "no key column"
            near = difflib.get_close_matches(k, keys_all, n=1)
            ap.error(f"--group-by: '{k}' is {what} of /{table.name}"
                     + (f"; did you mean '{near[0]}'?" if near and k not in table else "")
                     + "; key columns: " + ", ".join(keys_all))
    if len(set(keys)) < len(keys):
        ap.error(f"--group-by: a column is named twice in '{args.group_by}'")
    try:
        table = lr.where(table, lr.parse_where(args.where, table))
    except ValueError as e:
        ap.error(str(e))
    if args.where and not len(table):
        print(f"tools/summary: error: no {'ok ' if table.name == 'runs' else ''}rows of "
              f"'{args.file}' match " + " and ".join(args.where), file=sys.stderr)
        return 1
    metrics = [m for m in table.metrics() if not m.endswith("_se") or m[:-3] not in table]
    if args.metrics:
        want = [m.strip() for m in args.metrics.split(",") if m.strip()]
        for m in want:
            if m not in table or table[m].dtype.kind not in "fiu":
                ap.error(f"--metrics: no numeric column '{m}' in /{table.name}; metrics: "
                         + ", ".join(metrics))
        metrics = want

    # Layer and head numbers of two models are not the same heads: say when a
    # group mixes datasets the grouping does not name.
    if ("dataset" in table and "dataset" not in keys and len(table)
            and {"layer", "head"} & set(keys)):
        pooled = []
        for _, idx in lr.group_rows(table, keys):
            names = lr.unique_in_order(table["dataset"][idx])
            if len(names) > 1 and len(names) > len(pooled):
                pooled = names
        if pooled:
            print(f"tools/summary: note: groups pool the rows of {len(pooled)} datasets "
                  f"({', '.join(pooled)}); add dataset to --group-by to keep them apart",
                  file=sys.stderr)

    rows = []
    for values, idx in lr.group_rows(table, keys):
        out = list(values) + [len(idx)]
        for m in metrics:
            se_col = table[m + "_se"][idx] if m + "_se" in table else None
            mean, se = lr.mean_se(table[m][idx], se_col)
            out += [mean, se]
        rows.append(out)

    header = keys + ["n"]
    for m in metrics:
        header += [m, m + "_se"]
    if args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else (f"{v:.17g}" if isinstance(v, float) else v)
                        for v in r])
        return 0

    # Aligned table: one "mean ± se" cell per metric.
    head = keys + ["n"] + metrics
    cells = []
    for r in rows:
        line = [fmt(v) for v in r[:len(keys) + 1]]
        for j in range(len(metrics)):
            mean, se = r[len(keys) + 1 + 2 * j], r[len(keys) + 2 + 2 * j]
            line.append(fmt(mean) + ("" if se is None else " ± " + fmt(se, 2)))
        cells.append(line)
    width = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
    numeric = [i >= len(keys) or table[head[i]].dtype.kind in "fiu" for i in range(len(head))]

    def line(vals):
        return "  ".join(v.rjust(width[i]) if numeric[i] else v.ljust(width[i])
                         for i, v in enumerate(vals)).rstrip()

    print(line(head))
    for c in cells:
        print(line(c))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `| head` is fine
        sys.exit(0)
