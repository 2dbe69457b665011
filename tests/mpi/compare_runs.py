#!/usr/bin/env python3
"""compare_runs.py - is an MPI run's results file bit-identical to a one-process run's?

    compare_runs.py REFERENCE.h5 OTHER.h5
    compare_runs.py --rows FILE.h5        print the number of /runs rows (0 when none)

REFERENCE is `lshlab run -j 1` (one process), OTHER the run under test.  Checks, each
as raw bytes (so a NaN, a -0.0 or one ulp all count):
  - /runs: the same fields (names, types, order) and rows; every column equal row by row
    in the same row order, except timing columns (names ending in _seconds), which
    must only be finite and >= 0;
  - /points: the same groups, each with the same arrays (dtype, shape, bytes);
  - /datasets: the same tree, attributes and arrays.
Prints what differs (the first few rows and columns) and exits 1; exits 0 when equal.
"""
import sys

import h5py
import numpy as np

MAX_SHOWN = 5


def fail(msg, problems):
    problems.append(msg)


def compare_runs(ref, oth, problems):
    if "runs" not in ref or "runs" not in oth:
        fail("/runs missing in %s" % ("REFERENCE" if "runs" not in ref else "OTHER"), problems)
        return
    a = ref["runs"][()]
    b = oth["runs"][()]
    if a.dtype != b.dtype:
        fail("/runs fields differ:\n  reference %s\n  other     %s" % (a.dtype, b.dtype), problems)
        return
    if a.shape != b.shape:
        fail("/runs has %d rows in the reference, %d in the other" % (a.shape[0], b.shape[0]),
             problems)
        return
    if a.shape[0] == 0:
        fail("/runs is empty", problems)
    bad_status = [i for i, s in enumerate(a["status"]) if s != b"ok"]
    if bad_status:
        fail("reference rows not ok: %s" % bad_status[:MAX_SHOWN], problems)
    compared = 0
    for name in a.dtype.names:
        x, y = a[name], b[name]
        if name.endswith("_seconds"):
            for label, col in (("reference", x), ("other", y)):
                if not np.all(np.isfinite(col)) or np.any(col < 0):
                    fail("timing column %s of the %s has a negative or non-finite value"
                         % (name, label), problems)
            continue
        compared += 1
        xb = np.ascontiguousarray(x).view(np.uint8).reshape(len(x), -1)
        yb = np.ascontiguousarray(y).view(np.uint8).reshape(len(y), -1)
        rows = np.nonzero(np.any(xb != yb, axis=1))[0]
        if len(rows):
            shown = ", ".join("row %d (point_id %d): %r vs %r"
                              % (i, a["point_id"][i], x[i], y[i]) for i in rows[:MAX_SHOWN])
            fail("/runs column %s differs in %d of %d rows: %s"
                 % (name, len(rows), len(x), shown), problems)
    return compared


def same_array(p, q):
    if p.dtype != q.dtype or p.shape != q.shape:
        return "dtype/shape %s %s vs %s %s" % (p.dtype, p.shape, q.dtype, q.shape)
    u, v = p[()], q[()]
    if isinstance(u, np.ndarray):
        if np.ascontiguousarray(u).tobytes() != np.ascontiguousarray(v).tobytes():
            n = np.count_nonzero(u != v) if u.dtype.kind in "fiub" else "some"
            return "values differ (%s of %d entries)" % (n, u.size)
    elif u != v:
        return "values differ: %r vs %r" % (u, v)
    return None


def same_attrs(p, q, path, problems):
    ka, kb = sorted(p.attrs.keys()), sorted(q.attrs.keys())
    if ka != kb:
        fail("%s: attributes differ: %s vs %s" % (path, ka, kb), problems)
        return
    for k in ka:
        if k.endswith("_seconds"):
            continue
        u, v = p.attrs[k], q.attrs[k]
        ub = np.asarray(u).tobytes() if not isinstance(u, (str, bytes)) else u
        vb = np.asarray(v).tobytes() if not isinstance(v, (str, bytes)) else v
        if type(u) is not type(v) or ub != vb:
            fail("%s: attribute %s differs: %r vs %r" % (path, k, u, v), problems)


def compare_tree(ref, oth, top, problems):
    """Every group, dataset and attribute under /top, equal in both files."""
    if (top in ref) != (top in oth):
        fail("/%s exists in only one of the files" % top, problems)
        return 0
    if top not in ref:
        return 0
    names_a, names_b = [], []
    ref[top].visit(names_a.append)
    oth[top].visit(names_b.append)
    if sorted(names_a) != sorted(names_b):
        only_a = sorted(set(names_a) - set(names_b))
        only_b = sorted(set(names_b) - set(names_a))
        fail("/%s: objects only in the reference: %s; only in the other: %s"
             % (top, only_a[:MAX_SHOWN], only_b[:MAX_SHOWN]), problems)
        return 0
    arrays = 0
    same_attrs(ref[top], oth[top], "/" + top, problems)
    for n in sorted(names_a):
        p, q = ref[top][n], oth[top][n]
        path = "/%s/%s" % (top, n)
        if isinstance(p, h5py.Dataset) != isinstance(q, h5py.Dataset):
            fail("%s: a dataset in one file, a group in the other" % path, problems)
            continue
        same_attrs(p, q, path, problems)
        if isinstance(p, h5py.Dataset):
            arrays += 1
            why = same_array(p, q)
            if why:
                fail("%s: %s" % (path, why), problems)
    return arrays


def main(argv):
    if len(argv) == 3 and argv[1] == "--rows":
        with h5py.File(argv[2], "r") as f:
            print(f["runs"].shape[0] if "runs" in f else 0)
        return 0
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems = []
    with h5py.File(argv[1], "r") as ref, h5py.File(argv[2], "r") as oth:
        columns = compare_runs(ref, oth, problems)
        points = compare_tree(ref, oth, "points", problems)
        datasets = compare_tree(ref, oth, "datasets", problems)
        rows = ref["runs"].shape[0] if "runs" in ref else 0
    if problems:
        print("DIFFER: %s vs %s" % (argv[1], argv[2]))
        for p in problems[:20]:
            print("  " + p)
        if len(problems) > 20:
            print("  ... and %d more" % (len(problems) - 20))
        return 1
    print("identical: %d rows x %d columns of /runs, %d /points arrays, %d /datasets arrays"
          % (rows, columns or 0, points, datasets))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
