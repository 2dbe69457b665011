"""lshlab.results - read an lshlab results file (docs/definitions.md, "The results
file") into numpy columns whose strings are str, group rows by key columns, average
over repeats (mean and standard error), and find Pareto fronts.

Shared by tools/plot and tools/summary; needs h5py and numpy only.
"""

import math

import h5py
import numpy as np

# Columns that identify a row (docs/definitions.md); every other numeric column is a measurement.
KEY_COLUMNS = {
    "runs": ["point_id", "dataset", "strategy", "params", "mode", "chunk_size", "look_back",
             "window", "combine", "n_hashes", "n_buckets", "repeat", "seed", "status",
             "message"],
    "collision": ["strategy", "params", "n_buckets", "n_hashes", "angle", "pairs", "seed"],
}

# What `--group-by` leaves out by default: the columns that differ between the
# repeats of one point, so the default summary is the mean over repeats.
REPEAT_COLUMNS = {"point_id", "repeat", "seed", "status", "message"}


class Table:
    """One table of a results file: name, columns (name -> 1-D numpy array; strings
    decoded to str objects), the column order of the file, and its file's root
    attributes."""

    def __init__(self, name, columns, order, attrs):
        self.name = name
        self.columns = columns
        self.order = order
        self.attrs = attrs

    def __len__(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __contains__(self, name):
        return name in self.columns

    def __getitem__(self, name):
        return self.columns[name]

    def keys(self):
        return [c for c in self.order if c in KEY_COLUMNS.get(self.name, [])]

    def metrics(self):
        """Numeric measurement columns, in file order (X_se columns included)."""
        keys = set(KEY_COLUMNS.get(self.name, []))
        return [c for c in self.order
                if c not in keys and self.columns[c].dtype.kind in "fiu"]

    def select(self, mask):
        return Table(self.name, {k: v[mask] for k, v in self.columns.items()}, self.order,
                     self.attrs)


def _text(v):
    """One string value as str: HDF5 strings come back from h5py as bytes (fixed
    length: numpy.bytes_; variable length inside a compound: bytes)."""
    if isinstance(v, bytes):  # numpy.bytes_ included
        return v.decode("utf-8", "replace")
    return str(v)


def _decode(col):
    """A column with str values when its values are strings, else the column."""
    if col.dtype.kind in "SU" or (col.dtype.kind == "O" and
                                  all(isinstance(v, (bytes, str)) for v in col)):
        return np.array([_text(v) for v in col], dtype=object)
    return col


def _attr(v):
    """A root attribute: strings (and arrays of them) as str, numbers as they are."""
    if isinstance(v, (bytes, str)):
        return _text(v)
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO":
        return [_text(x) for x in v.ravel()]
    return v


def read_table(path, name):
    """The table /name of the results file at path, or None when it has none.
    String columns and attributes are str, never bytes."""
    with h5py.File(path, "r") as f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if name not in f:
            return None
        data = f[name][()]
    order = list(data.dtype.names)
    return Table(name, {c: _decode(data[c]) for c in order}, order, attrs)


def ok_runs(table):
    """Rows of /runs whose status is ok (skipped and failed points have no numbers)."""
    if table is None or "status" not in table:
        return table
    return table.select(table["status"] == "ok")


def unique_in_order(values):
    """Distinct values: numbers ascending, strings in order of first appearance
    (the config's order, since rows are written in that order)."""
    if values.dtype.kind in "fiu":
        return list(np.unique(values))
    seen = {}
    for v in values:
        seen.setdefault(v, len(seen))
    return list(seen)


def group_rows(table, keys):
    """[(key values tuple, row indices)] for the distinct combinations of keys,
    ordered column by column as unique_in_order orders each column."""
    if not keys:
        return [((), np.arange(len(table)))]
    ranks = []
    for k in keys:
        col = table[k]
        order = {v: i for i, v in enumerate(unique_in_order(col))}
        ranks.append(np.array([order[v] for v in col]))
    groups = {}
    for i, r in enumerate(zip(*ranks)):
        groups.setdefault(r, []).append(i)
    out = []
    for r in sorted(groups):
        idx = np.array(groups[r])
        out.append((tuple(table[k][idx[0]] for k in keys), idx))
    return out


def mean_se(values, se_column=None):
    """Mean and standard error of the mean of values (one per repeat):
    sd / sqrt(n) with the n - 1 denominator.  With a single value the standard
    error is that row's own X_se (reference_rows sampling) when given, else None."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return math.nan, None
    m = float(values.mean())
    if n >= 2:
        return m, float(values.std(ddof=1) / math.sqrt(n))
    if se_column is not None:
        return m, float(se_column[0])
    return m, None


def split_params(canonical):
    """"a=1,b=[4,4]" -> [("a", "1"), ("b", "[4,4]")]: commas inside brackets stay."""
    out, depth, cur = [], 0, ""
    for ch in canonical:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in out]


def pareto_front(x, y):
    """Indices of the points that no other point beats, cheapest first: a point is
    on the front when every point at most as costly (x) has a smaller y (higher
    is better).  Of equal x, only the best y can be on it; of equal (x, y), the
    first."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i], i))
    front, best = [], -math.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front
