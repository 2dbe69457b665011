"""lshlab.summary - mean and standard error over repeats of every metric of an
lshlab results file, grouped by key columns (run it through tools/summary)."""

import argparse
import csv
import difflib
import math
import sys

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
strategy at one (n_hashes, n_buckets)."""

EPILOG = """\
examples:
  tools/summary results/quickstart.h5 --group-by strategy,n_buckets,n_hashes
  tools/summary results/quickstart.h5 --group-by strategy --metrics out_rel_err,density --csv
  tools/summary results/collision.h5 --group-by strategy,n_buckets,angle
  tools/summary results/real-heads.h5 -g layer,head,strategy -m mass_recall --where n_buckets=16

exit codes: 0 ok, 1 unreadable file (or not a results file of format 1 or 2),
2 bad command line (unknown column or value)"""


def fmt(v, digits=4):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (float,)):
        return f"{v:.{digits}g}"
    return str(v)


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
    args = ap.parse_args(argv)

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
        print(f"tools/summary: error: cannot read '{args.file}': {e}", file=sys.stderr)
        return 1
    if table is None:
        print(f"tools/summary: error: '{args.file}' has no /{' or /'.join(names)} table",
              file=sys.stderr)
        return 1

    if table.name == "runs":
        n_all = len(table)
        table = lr.ok_runs(table)
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
