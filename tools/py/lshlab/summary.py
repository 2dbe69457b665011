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
status and message: the mean over repeats of each point."""

EPILOG = """\
examples:
  tools/summary results/quickstart.h5 --group-by strategy,n_buckets,n_hashes
  tools/summary results/quickstart.h5 --group-by strategy --metrics out_rel_err,density --csv
  tools/summary results/collision.h5 --group-by strategy,n_buckets,angle

exit codes: 0 ok, 1 unreadable file, 2 bad command line (unknown column)"""


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
                    help="comma-separated key columns, e.g. strategy,n_buckets,n_hashes")
    ap.add_argument("-m", "--metrics", metavar="COLS",
                    help="comma-separated metric columns (default: all)")
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
    else:
        keys = [k for k in keys_all if k not in lr.REPEAT_COLUMNS]
    for k in keys:
        if k not in table:
            near = difflib.get_close_matches(k, table.order, n=1)
            ap.error(f"--group-by: no column '{k}' in /{table.name}"
                     + (f"; did you mean '{near[0]}'?" if near else "")
                     + " columns: " + ", ".join(table.order))
    metrics = [m for m in table.metrics() if not m.endswith("_se") or m[:-3] not in table]
    if args.metrics:
        want = [m.strip() for m in args.metrics.split(",") if m.strip()]
        for m in want:
            if m not in table or table[m].dtype.kind not in "fiu":
                ap.error(f"--metrics: no numeric column '{m}' in /{table.name}; metrics: "
                         + ", ".join(metrics))
        metrics = want

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
