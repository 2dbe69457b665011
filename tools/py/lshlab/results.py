"""lshlab.results - read an lshlab results file (docs/definitions.md, "The results
file") into numpy columns whose strings are str, group rows by key columns, average
over repeats (mean and standard error), and find Pareto fronts.

Reads format_version 1 and 2 (SPEC section 16).  Version 2 adds the /runs key
columns `layer` and `head` (int32, -1 for a dataset without that axis); a version-1
/runs table gets them as -1 columns, so every reader can group by them.  The
candidate-rule key columns `min_collisions`, `sink` and `local` (uint32, SPEC section
13) read as 1, 0, 0 (today's rule) from a file written before them.  The oracle
columns (`oracle_mass_recall`, `oracle_out_rel_err`, their `_se`, `oracle_seconds`)
are read when the file has them (attention.oracle) and are absent otherwise (see
has_oracle).  /collision's `has_law` and `p_law` read as 0 (no law) from a file
written before them.

Shared by tools/plot and tools/summary; needs h5py and numpy only.
"""

import math

import h5py
import numpy as np

# Columns that identify a row (docs/definitions.md); every other numeric column is a measurement.
KEY_COLUMNS = {
    "runs": ["point_id", "dataset", "layer", "head", "strategy", "params", "mode",
             "chunk_size", "look_back", "window", "combine", "min_collisions", "sink",
             "local", "n_hashes", "n_buckets", "repeat", "seed", "status", "message"],
    "collision": ["strategy", "params", "n_buckets", "n_hashes", "angle", "pairs", "seed"],
}

# What `--group-by` leaves out by default: the columns that differ between the
# repeats of one point, so the default summary is the mean over repeats.
REPEAT_COLUMNS = {"point_id", "repeat", "seed", "status", "message"}

# The results format versions this package reads (SPEC sections 9 and 16).
FORMAT = "lshlab-results"
FORMAT_VERSIONS = (1, 2)
# Key columns that version 2 added, the value they read as in a file without them,
# their type, and the column they follow in the file (SPEC sections 13 and 16).
V2_KEY_DEFAULTS = {"runs": [("layer", -1, np.int32, "dataset"),
                            ("head", -1, np.int32, "layer"),
                            ("min_collisions", 1, np.uint32, "combine"),
                            ("sink", 0, np.uint32, "min_collisions"),
                            ("local", 0, np.uint32, "sink")]}
# The value each candidate-rule key has when the rule is today's union (a file
# written before them reads as these).
RULE_DEFAULTS = {"min_collisions": 1, "sink": 0, "local": 0}
# Measurement columns of /collision added later: absent -> this value (no law).
COLLISION_DEFAULTS = [("has_law", 0, np.uint8), ("p_law", 0.0, np.float64)]
# The budget-matched oracle's columns (attention.oracle), beside the columns they
# bound: a strategy's metric and the oracle's at the same candidate-set sizes.
ORACLE_COLUMNS = {"mass_recall": "oracle_mass_recall", "out_rel_err": "oracle_out_rel_err"}


class FormatError(ValueError):
    """The file is not an lshlab results file of a format version this package reads."""


class Table:
    """One table of a results file: name, columns (name -> 1-D numpy array; strings
    decoded to str objects), the column order of the file, and its file's root
    attributes."""

    def __init__(self, name, columns, order, attrs, filled=(), rule_filled=()):
        self.name = name
        self.columns = columns
        self.order = order
        self.attrs = attrs
        # Key columns the file does not hold, filled with their version-1 value
        # (layer and head).
        self.filled = set(filled)
        # Candidate-rule key columns the file does not hold, filled with today's
        # rule (min_collisions 1, sink 0, local 0).
        self.rule_filled = set(rule_filled)

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
                     self.attrs, self.filled, self.rule_filled)


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


def check_format(path, attrs):
    """The file's format_version (1 or 2), or FormatError naming the file, what it
    holds and what is allowed."""
    fmt = attrs.get("format")
    if fmt is not None and (not isinstance(fmt, str) or fmt != FORMAT):
        raise FormatError(f"'{path}' is not an lshlab results file: its format attribute "
                          f"is {fmt!r}, not '{FORMAT}'")
    if "format_version" not in attrs:
        raise FormatError(f"'{path}' is not an lshlab results file: it has no "
                          "format_version attribute (lshlab run writes one)")
    v = attrs["format_version"]
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    allowed = " and ".join(str(x) for x in FORMAT_VERSIONS)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise FormatError(f"'{path}': the format_version attribute is {v!r} "
                          f"({type(v).__name__}), not an integer; this reader reads "
                          f"format_version {allowed}")
    if int(v) not in FORMAT_VERSIONS:
        raise FormatError(f"'{path}' has results format_version {int(v)}; this reader reads "
                          f"format_version {allowed} only")
    return int(v)


def why_unreadable(path, e):
    """A one-line reason why the results file at path did not open (e, the
    OSError h5py raised, carries HDF5's whole diagnostic)."""
    import errno as _errno
    import os
    if not os.path.lexists(path):
        return "no such file"
    if os.path.isdir(path):
        return "it is a folder"
    code = getattr(e, "errno", None)
    if code in (_errno.EACCES, _errno.EPERM):
        return "permission denied"
    text = str(e)
    if "file signature not found" in text:
        return "not an HDF5 file"
    if "truncated file" in text:
        return "a truncated HDF5 file (a copy that did not finish?)"
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_table(path, name):
    """The table /name of the results file at path, or None when it has none.
    String columns and attributes are str, never bytes.  A file of another format
    (or format_version) raises FormatError; a version-1 /runs table gets the
    version-2 key columns layer and head as -1 (listed in Table.filled)."""
    with h5py.File(path, "r") as f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        check_format(path, attrs)
        if name not in f:
            return None
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise FormatError(f"'{path}': /{name} is a group, not a table (a compound "
                              "dataset)")
        data = obj[()]
        if not isinstance(data, np.ndarray) or data.dtype.names is None:
            raise FormatError(f"'{path}': /{name} is not a table (a compound dataset); "
                              f"found {data.dtype} of shape {data.shape}")
        data = np.atleast_1d(data)
    order = list(data.dtype.names)
    columns = {c: _decode(data[c]) for c in order}
    filled, rule_filled = [], []
    for col, value, dtype, after in V2_KEY_DEFAULTS.get(name, []):
        if col in columns and columns[col].dtype.kind not in "iu":
            raise FormatError(f"'{path}': the /{name} column {col} holds {data.dtype[col]}, "
                              f"not integers (format 2 writes {np.dtype(dtype).name})")
        if col not in columns:
            columns[col] = np.full(len(data), value, dtype=dtype)
            (rule_filled if col in RULE_DEFAULTS else filled).append(col)
            # where format 2 puts it: right after `after` (else first)
            at = order.index(after) + 1 if after in order else 0
            order.insert(at, col)
    if name == "collision":
        # No law columns: every row has no law.  Not listed in order (the file has
        # no such measurement), but readable like any column.
        for col, value, dtype in COLLISION_DEFAULTS:
            if col not in columns:
                columns[col] = np.full(len(data), value, dtype=dtype)
    return Table(name, columns, order, attrs, filled, rule_filled)


def default_rule(table, col):
    """Whether every row of table has today's candidate rule in col (min_collisions 1,
    sink 0, local 0): such a column says nothing and summaries leave it out."""
    return (col in RULE_DEFAULTS and col in table.columns
            and bool((table[col] == RULE_DEFAULTS[col]).all()))


def has_oracle(table, metric="mass_recall"):
    """Whether table holds the oracle's column for metric (mass_recall or
    out_rel_err): files of runs with attention.oracle true."""
    return table is not None and ORACLE_COLUMNS.get(metric) in table.columns


def read_datasets(path):
    """{name: attributes} of the groups /datasets/NAME (str strings; numpy arrays
    for array attributes such as version 2's layers and heads); {} when none."""
    out = {}
    with h5py.File(path, "r") as f:
        g = f.get("datasets")
        if not isinstance(g, h5py.Group):
            return out
        for name, obj in g.items():
            if isinstance(obj, h5py.Group):
                out[name] = {k: _attr(v) for k, v in obj.attrs.items()}
    return out


def parse_where(items, table, flag="--where"):
    """[(column, value)] from COL=VALUE strings (the first '=' splits, so
    params=factors=[2,4] works); the value converted to the column's type.
    ValueError naming the offending item and the allowed columns or values."""
    out = []
    keys = table.keys()
    for item in items:
        col, eq, text = item.partition("=")
        col = col.strip()
        if not eq:
            raise ValueError(f"{flag}: '{item}' is not COLUMN=VALUE")
        if col not in keys:
            raise ValueError(f"{flag}: no key column '{col}' in /{table.name}; key columns: "
                             + ", ".join(keys))
        values = unique_in_order(table[col])
        if table[col].dtype.kind in "iu":
            try:
                value = int(text)
            except ValueError:
                value = None
        elif table[col].dtype.kind == "f":
            try:
                value = float(text)
            except ValueError:
                value = None
        else:
            value = text
        if value is None or value not in values:
            raise ValueError(f"{flag}: {col} has no value '{text}'; values: "
                             + ", ".join(str(v) for v in values))
        out.append((col, value))
    return out


def where(table, conditions):
    """The rows of table where every (column, value) of conditions holds."""
    mask = np.ones(len(table), dtype=bool)
    for col, value in conditions:
        mask &= table[col] == value
    return table.select(mask)


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
