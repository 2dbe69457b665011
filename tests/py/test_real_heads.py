"""test_real_heads.py - real attention tensors (docs/definitions.md sections 2.1, 8, 9,
11) checked end to end by an implementation independent of lshlab's C code:

* one head of the shipped model (experiments/data/tinylm.h5): the dumped Q, K, V
  against the file's float16 values read with h5py, every metric column of every
  point against the numpy oracle, the layer, head and seed columns against section 8;
* hidden data in another layout, built here: a rank-4 big-endian float16 .npy Q with
  grouped-query float32 K and V, a selection in the config's order, and a template
  layout of per-head files that must give the same bits;
* the input errors an independent checker probes (integer, complex and Fortran-order
  .npy files, a head count that does not divide, NaN and Inf in a selected head).

The metrics come from two oracles: expected_metrics of test_metrics_by_definition.py
(naive, row by row, O(n^2) Python: about 3 s per point at n = 1024, so it runs on one
point of the shipped head and on every point of the small hidden data), and
vector_metrics below, the same definitions in matrix form, fast enough for every point
at n = 1024 and itself checked against the naive oracle on every point of the small
data.  Needs LSHLAB_EXE (meson test sets it)."""

import math
import os
import shutil
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

from test_definitions import recipe
from test_metrics_by_definition import expected_metrics, problem_group, text

EXE = os.environ.get("LSHLAB_EXE")
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("LSHLAB_SOURCE_ROOT",
                             os.path.dirname(os.path.dirname(HERE)))
TINYLM = os.path.join(SOURCE_ROOT, "experiments", "data", "tinylm.h5")
POINT_SEED = recipe()["point_seed"]

METRICS = ("out_rel_err", "attn_rel_err", "mass_recall", "kl", "empty_rows",
           "gram_recovery", "density", "mean_candidates", "bucket_max", "bucket_entropy")


def round_mask(bq, bk, mode, cs, look_back, window):
    """S_i^h of one round (section 4) for every query at once, separate keys: an n x n
    boolean matrix, before U_i."""
    n = len(bq)
    same = bk[None, :] == bq[:, None]
    if mode == "bucket":
        return same
    # 2n items (bucket, position, kind), a query (kind 0) before the key of its position.
    bucket = np.concatenate([bq, bk]).astype(np.int64)
    pos = np.concatenate([np.arange(n), np.arange(n)])
    kind = np.concatenate([np.zeros(n, int), np.ones(n, int)])
    order = np.lexsort((kind, pos, bucket))
    rank = np.empty(2 * n, np.int64)
    rank[order] = np.arange(2 * n)
    chunk = rank // cs
    n_chunks = -(-2 * n // cs)
    tq, tk = chunk[:n], chunk[n:]
    seen = (tq[:, None] - tk[None, :]) % n_chunks <= look_back
    return seen & same if window == "same_bucket" else seen


def vector_metrics(q, k, v, bq, bk, attn, row):
    """Every metric of one /runs row with separate keys (sections 4-6), in matrix form."""
    assert attn["keys"] == "separate"
    n, d = q.shape
    scale = 1 / math.sqrt(d) if attn["scale"] == "auto" else float(attn["scale"])
    g = q @ k.T
    s = scale * g
    i = np.arange(n)
    u = np.ones((n, n), bool)
    if attn["exclude_self"]:
        u[i, i] = False
    if attn["causal"]:
        u &= i[None, :] <= i[:, None]
    lone = ~u.any(axis=1)
    u[lone, i[lone]] = True
    su = np.where(u, s, -np.inf)
    mx = su.max(axis=1, keepdims=True)
    lse = mx + np.log(np.exp(su - mx).sum(axis=1, keepdims=True))
    log_a = su - lse
    a = np.exp(log_a)
    o = a @ v

    H = int(row["n_hashes"])
    mode, combine = text(row["mode"]), text(row["combine"])
    counts = np.zeros((n, n), np.int64)
    for h in range(H):
        counts += round_mask(bq[h], bk[h], mode, int(row["chunk_size"]),
                             int(row["look_back"]), text(row["window"]), ) & u
    sel = counts > 0
    empty = ~sel.any(axis=1)
    sel[empty, i[empty]] = True
    mass = np.where(sel, a, 0).sum(axis=1)
    # Â from the scores: union weights each candidate once, rounds by N_ij; an empty row
    # attends to itself alone.
    w = sel.astype(float) if combine == "union" else counts.astype(float)
    w[empty, :] = 0
    w[empty, i[empty]] = 1
    sw = np.where(w > 0, s, -np.inf)
    mw = sw.max(axis=1, keepdims=True)
    ew = w * np.exp(sw - mw)
    zw = ew.sum(axis=1, keepdims=True)
    ahat = ew / zw
    ohat = ahat @ v
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ahat = np.log(w) + (sw - mw) - np.log(zw)
        kl_terms = np.where(w > 0, ahat * (log_ahat - log_a), 0.0)
    kl_rows = kl_terms.sum(axis=1)[~empty]

    def ratio(y, x):
        return float(y.sum() / x.sum()) if x.sum() else 0.0

    off_u = u.copy()
    off_u[i, i] = False
    off_s = sel & ~empty[:, None]
    off_s[i, i] = False
    size_s, size_u = sel.sum(axis=1), u.sum(axis=1)
    exp = {
        "out_rel_err": math.sqrt(ratio(((o - ohat) ** 2).sum(axis=1), (o ** 2).sum(axis=1))),
        "attn_rel_err": math.sqrt(ratio(((a - ahat) ** 2).sum(axis=1), (a ** 2).sum(axis=1))),
        "mass_recall": float(mass.mean()),
        "kl": float(kl_rows.mean()) if len(kl_rows) else 0.0,
        "empty_rows": int(empty.sum()),
        "gram_recovery": ratio((np.where(off_s, g, 0) ** 2).sum(axis=1),
                               (np.where(off_u, g, 0) ** 2).sum(axis=1)),
        "density": ratio(size_s, size_u),
        "mean_candidates": float(size_s.mean()),
    }
    # Top-k: the keys of U_i by score, largest first, ties to the smaller index.
    order = np.argsort(-su, axis=1, kind="stable")
    for col in row.dtype.names:
        if col.startswith("topk_recall_") and not col.endswith("_se"):
            K = int(col[len("topk_recall_"):])
            hits = []
            for r in range(n):
                t = order[r, :min(K, size_u[r])]
                hits.append(sel[r, t].sum() / len(t))
            exp[col] = float(np.mean(hits))
    B = int(row["n_buckets"])
    sizes = [np.bincount(bq[h], minlength=B) for h in range(H)]
    exp["bucket_max"] = max(sz.max() for sz in sizes) * B / n
    ent = [-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(B) if B > 1 else 0.0
           for p in (sz / n for sz in sizes)]
    exp["bucket_entropy"] = sum(ent) / H
    return exp


def run(cfg_text, folder, name):
    """lshlab run on a config written into folder; returns (results file, process)."""
    cfg = os.path.join(folder, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    out = os.path.join(folder, name + ".h5")
    p = subprocess.run([EXE, "run", cfg, "-o", out, "-q", "-j", "2", "--force"],
                       capture_output=True, text=True)
    return out, p


class OracleMixin:
    def assert_metric(self, where, col, got, want):
        self.assertTrue(math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12),
                        f"{where}: {col} = {got!r}, by definition {want!r}")

    def check_vector_oracle(self, f, attn):
        """Every metric column of every row of f against vector_metrics; the number of
        rows checked."""
        runs = f["runs"][()]
        for row in runs:
            self.assertEqual(text(row["status"]), "ok", text(row["message"]))
            g = problem_group(f, row)
            pts = f["points"][str(int(row["point_id"]))]
            H = int(row["n_hashes"])
            exp = vector_metrics(g["Q"][()], g["K"][()], g["V"][()], pts["buckets"][()][:H],
                                 pts["key_buckets"][()][:H], attn, row)
            where = (f"point {row['point_id']} layer {row['layer']} head {row['head']} "
                     f"{text(row['strategy'])} {text(row['mode'])} {text(row['combine'])}")
            for col, want in exp.items():
                self.assert_metric(where, col, row[col], want)
        return len(runs)

    def check_naive_oracle(self, f, row, attn):
        exp, _, _ = expected_metrics(f, row, attn)
        where = f"point {row['point_id']} (naive oracle)"
        for col, (want, _) in exp.items():
            self.assert_metric(where, col, row[col], want)


TINY_CONFIG = """
name: tiny-head
seed: 21
datasets:
  - name: tiny
    kind: hdf5
    file: {file}
    q: /layer{{layer}}/head{{head}}/q
    k: /layer{{layer}}/head{{head}}/k
    v: /layer{{layer}}/head{{head}}/v
    layers: [1]
    heads: [2]
attention: {{keys: separate, causal: true, topk: [1, 8]}}
strategies:
  - name: rotation
  - name: kmeans
    params: {{iterations: 3}}
sweep:
  n_hashes: {n_hashes}
  n_buckets: [8]
  mode: [bucket, chunked]
  chunk_size: [96]
  look_back: [1]
  combine: {combine}
dump: [data, buckets]
"""
TINY_ATTN = {"keys": "separate", "scale": "auto", "exclude_self": False, "causal": True}


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
@unittest.skipUnless(os.path.exists(TINYLM), "needs experiments/data/tinylm.h5")
class ShippedHeadTest(unittest.TestCase, OracleMixin):
    """Layer 1, head 2 of the shipped model, causal, separate keys, n = 1024."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lshlab-real-heads-")
        cls.out, p = run(TINY_CONFIG.format(file=TINYLM, n_hashes="[2]",
                                            combine="[union, rounds]"), cls.tmp, "tiny")
        if p.returncode != 0:
            raise AssertionError(f"lshlab run failed ({p.returncode}): {p.stderr}")
        # union alone takes lshlab's tiled evaluation (core/src/eval.c), a path of its
        # own; with rounds in the sweep every combine goes through the row path.
        cls.union_out, p = run(TINY_CONFIG.format(file=TINYLM, n_hashes="[1, 3]",
                                                  combine="[union]"), cls.tmp, "tiny-union")
        if p.returncode != 0:
            raise AssertionError(f"lshlab run failed ({p.returncode}): {p.stderr}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_dumped_qkv_are_the_files_float16_values_as_float64(self):
        with h5py.File(TINYLM, "r") as src, h5py.File(self.out, "r") as f:
            self.assertEqual(list(f["datasets/tiny"]), ["layer1"])
            self.assertEqual(list(f["datasets/tiny/layer1"]), ["head2"])
            g = f["datasets/tiny/layer1/head2"]
            for name in ("q", "k", "v"):
                raw = src[f"layer1/head2/{name}"]
                self.assertEqual(raw.dtype, np.dtype("<f2"))
                self.assertEqual(g[name.upper()].dtype, np.dtype("<f8"))
                np.testing.assert_array_equal(g[name.upper()][()],
                                              raw[()].astype(np.float64))
            # A neighbouring head must not have been taken by mistake.
            self.assertFalse(np.array_equal(g["Q"][()],
                                            src["layer1/head1/q"][()].astype(np.float64)))
            a = f["datasets/tiny"].attrs
            self.assertEqual(list(a["layers"]), [1])
            self.assertEqual(list(a["heads"]), [2])
            self.assertEqual(int(a["kv_heads"]), 4)
            self.assertEqual(text(a["dtype"]), "float16")
            self.assertEqual((int(a["n"]), int(a["d"]), int(a["d_v"])), (1024, 32, 32))

    def test_layer_head_and_seed_columns_follow_section_8(self):
        with h5py.File(self.out, "r") as f:
            runs = f["runs"][()]
            self.assertEqual(int(f.attrs["format_version"]), 2)
        self.assertEqual(len(runs), 2 * 2 * 2)
        for row in runs:
            self.assertEqual((int(row["layer"]), int(row["head"])), (1, 2))
            want = POINT_SEED(21, "tiny", text(row["strategy"]), text(row["params"]),
                              int(row["n_buckets"]), int(row["repeat"]), 1, 2)
            self.assertEqual(int(row["seed"]), want, text(row["strategy"]))
            # Layer and head are mixed in: the seed differs from the axis-free one.
            self.assertNotEqual(int(row["seed"]), POINT_SEED(
                21, "tiny", text(row["strategy"]), text(row["params"]),
                int(row["n_buckets"]), int(row["repeat"])))

    def test_every_point_against_the_matrix_oracle(self):
        with h5py.File(self.out, "r") as f:
            self.assertEqual(self.check_vector_oracle(f, TINY_ATTN), 8)

    def test_every_point_of_the_union_only_sweep_against_the_matrix_oracle(self):
        with h5py.File(self.union_out, "r") as f:
            self.assertEqual(self.check_vector_oracle(f, TINY_ATTN), 2 * 2 * 2)

    def test_one_point_against_the_naive_oracle(self):
        # The naive oracle is about 3 s per point at n = 1024: one point, rounds combine,
        # bucket mode, kmeans (so both strategies' hashing is covered between this test
        # and the matrix one, and the matrix oracle is checked at full size).
        with h5py.File(self.out, "r") as f:
            rows = [r for r in f["runs"][()] if text(r["strategy"]) == "kmeans"
                    and text(r["mode"]) == "bucket" and text(r["combine"]) == "rounds"]
            self.assertEqual(len(rows), 1)
            self.check_naive_oracle(f, rows[0], TINY_ATTN)


# Hidden data: 2 layers, 4 query heads, 2 key/value heads, n = 40, d = 8.
LAYERS, HQ, HKV, N, D = 2, 4, 2, 40, 8

SMALL_SWEEP = """
attention: {keys: separate, causal: true, topk: [1, 5]}
strategies:
  - name: rotation
  - name: kmeans
    params: {iterations: 2}
sweep:
  n_hashes: [1, 3]
  n_buckets: [4]
  mode: [bucket, chunked]
  chunk_size: [7]
  look_back: [2]
  window: [all, same_bucket]
  combine: [union, rounds]
"""
SMALL_ATTN = {"keys": "separate", "scale": "auto", "exclude_self": False, "causal": True}


def small_config(name, q, k, v, layers, heads, dump="[data, buckets]"):
    return (f"name: {name}\nseed: 4\ndatasets:\n"
            f"  - {{name: hid, kind: npy, q: '{q}', k: '{k}', v: '{v}', "
            f"layers: {layers}, heads: {heads}}}\n" + SMALL_SWEEP + f"dump: {dump}\n")


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
class HiddenLayoutTest(unittest.TestCase, OracleMixin):
    """A layout lshlab's own tests do not write: rank-4 big-endian float16 Q, fewer
    little-endian float32 K/V heads, and the same values as per-head template files."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lshlab-hidden-")
        rng = np.random.default_rng(2026)
        # float16 Q: the values are what float16 can hold, stored big-endian.
        cls.q = (rng.standard_normal((LAYERS, HQ, N, D)) * 2).astype(">f2")
        cls.k = (rng.standard_normal((LAYERS, HKV, N, D)) * 2).astype("<f4")
        cls.v = rng.standard_normal((LAYERS, HKV, N, D)).astype("<f4")
        for name, x in (("q", cls.q), ("k", cls.k), ("v", cls.v)):
            np.save(os.path.join(cls.tmp, name + ".npy"), x)
        # The template layout, the same values in other types and .npy versions.
        for layer in range(LAYERS):
            for h in range(HQ):
                with open(os.path.join(cls.tmp, f"q_L{layer}_H{h}.npy"), "wb") as f:
                    np.lib.format.write_array(f, cls.q[layer, h].astype("<f4"),
                                              version=(2, 0))
            for h in range(HKV):
                with open(os.path.join(cls.tmp, f"k_L{layer}_H{h}.npy"), "wb") as f:
                    np.lib.format.write_array(f, cls.k[layer, h].astype(">f8"),
                                              version=(3, 0))
                np.save(os.path.join(cls.tmp, f"v_L{layer}_H{h}.npy"), cls.v[layer, h])
        cls.out, p = run(small_config("hidden", "q.npy", "k.npy", "v.npy", "[1]", "[3, 0]"),
                         cls.tmp, "hidden")
        if p.returncode != 0:
            raise AssertionError(f"lshlab run failed ({p.returncode}): {p.stderr}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_dumped_data_uses_kv_head_h_times_hkv_over_hq(self):
        with h5py.File(self.out, "r") as f:
            self.assertEqual(sorted(f["datasets/hid"]), ["layer1"])
            self.assertEqual(sorted(f["datasets/hid/layer1"]), ["head0", "head3"])
            for h in (3, 0):
                g = f[f"datasets/hid/layer1/head{h}"]
                kv = h * HKV // HQ  # head 3 -> 1, head 0 -> 0
                np.testing.assert_array_equal(g["Q"][()], self.q[1, h].astype(np.float64))
                np.testing.assert_array_equal(g["K"][()], self.k[1, kv].astype(np.float64))
                np.testing.assert_array_equal(g["V"][()], self.v[1, kv].astype(np.float64))
            a = f["datasets/hid"].attrs
            self.assertEqual(int(a["kv_heads"]), HKV)
            self.assertEqual(text(a["dtype"]), "float16")
            self.assertEqual((int(a["n"]), int(a["d"]), int(a["d_v"])), (N, D, D))

    def test_seed_layer_and_head_columns_of_every_point(self):
        with h5py.File(self.out, "r") as f:
            runs = f["runs"][()]
        self.assertEqual(sorted(set(zip(runs["layer"].tolist(), runs["head"].tolist()))),
                         [(1, 0), (1, 3)])
        for row in runs:
            self.assertEqual(int(row["seed"]), POINT_SEED(
                4, "hid", text(row["strategy"]), text(row["params"]), int(row["n_buckets"]),
                int(row["repeat"]), int(row["layer"]), int(row["head"])))

    def test_problems_run_in_ascending_selection_order(self):
        # Section 2.1: a selection is sorted ascending (heads: [3, 0] runs head 0
        # first); section 9: point_id counts layer, then head, outside strategy.
        with h5py.File(self.out, "r") as f:
            a = f["datasets/hid"].attrs
            runs = np.sort(f["runs"][()], order="point_id")
            layers, heads = list(a["layers"]), list(a["heads"])
        self.assertEqual(list(runs["point_id"]), list(range(len(runs))))
        per_head = len(runs) // 2
        self.assertEqual(list(runs["layer"]), [1] * len(runs))
        self.assertEqual(list(runs["head"]), [0] * per_head + [3] * per_head)
        self.assertEqual((layers, heads), ([1], [0, 3]))

    def order_run(self):
        """(layer, head) of each point in point_id order, and the attributes, for
        layers: [1, 0], heads: [2, 1]."""
        out, p = run(small_config("order", "q.npy", "k.npy", "v.npy", "[1, 0]", "[2, 1]",
                                  dump="[]"), self.tmp, "order")
        self.assertEqual(p.returncode, 0, p.stderr)
        with h5py.File(out, "r") as f:
            runs = np.sort(f["runs"][()], order="point_id")
            attrs = (list(f["datasets/hid"].attrs["layers"]),
                     list(f["datasets/hid"].attrs["heads"]))
        return [(int(r["layer"]), int(r["head"])) for r in runs], attrs

    def test_problems_are_layer_major_and_contiguous(self):
        pairs, _ = self.order_run()
        per = len(pairs) // 4
        blocks = [pairs[t * per:(t + 1) * per] for t in range(4)]
        for b in blocks:
            self.assertEqual(len(set(b)), 1, "a problem's points are not contiguous")
        firsts = [b[0] for b in blocks]
        self.assertEqual(sorted(firsts), [(0, 1), (0, 2), (1, 1), (1, 2)])
        self.assertEqual(firsts[0][0], firsts[1][0])  # layer outside head
        self.assertEqual(firsts[2][0], firsts[3][0])

    def test_layer_major_ascending_order_over_two_layers(self):
        pairs, attrs = self.order_run()
        per = len(pairs) // 4
        self.assertEqual(pairs, [(0, 1)] * per + [(0, 2)] * per + [(1, 1)] * per
                         + [(1, 2)] * per)
        self.assertEqual(attrs, ([0, 1], [1, 2]))

    def test_every_point_against_both_oracles(self):
        # The naive oracle of test_metrics_by_definition.py on every point (both modes,
        # windows, wrap-around look_back, combines), and the matrix oracle used at
        # n = 1024 on the same points.
        with h5py.File(self.out, "r") as f:
            runs = f["runs"][()]
            # heads x strategies x mode settings x n_hashes x combine
            self.assertEqual(len(runs), 2 * 2 * 3 * 2 * 2)
            for row in runs:
                self.assertEqual(text(row["status"]), "ok", text(row["message"]))
                self.check_naive_oracle(f, row, SMALL_ATTN)
            self.check_vector_oracle(f, SMALL_ATTN)

    def test_union_only_sweep_against_the_naive_oracle(self):
        # union alone: the tiled evaluation path of core/src/eval.c.
        cfg = small_config("union", "q.npy", "k.npy", "v.npy", "[1]", "[3, 0]").replace(
            "combine: [union, rounds]", "combine: [union]")
        out, p = run(cfg, self.tmp, "union")
        self.assertEqual(p.returncode, 0, p.stderr)
        with h5py.File(out, "r") as f:
            runs = f["runs"][()]
            self.assertEqual(len(runs), 2 * 2 * 3 * 2)
            self.assertEqual(set(runs["combine"].tolist()), {b"union"})
            for row in runs:
                self.assertEqual(text(row["status"]), "ok", text(row["message"]))
                self.check_naive_oracle(f, row, SMALL_ATTN)

    def test_template_layout_gives_the_same_bits_as_the_rank4_arrays(self):
        results = {}
        for name, files in (("rank4", ("q.npy", "k.npy", "v.npy")),
                            ("tmpl", ("q_L{layer}_H{head}.npy", "k_L{layer}_H{head}.npy",
                                      "v_L{layer}_H{head}.npy"))):
            # Same config name and dataset name: the same seeds.
            folder = os.path.join(self.tmp, name)
            os.makedirs(folder, exist_ok=True)
            for fn in os.listdir(self.tmp):
                if fn.endswith(".npy"):
                    shutil.copy(os.path.join(self.tmp, fn), folder)
            out, p = run(small_config("same", *files, "[0, 1]", "[1, 2]", dump="[data]"),
                         folder, "same")
            self.assertEqual(p.returncode, 0, p.stderr)
            with h5py.File(out, "r") as f:
                results[name] = np.sort(f["runs"][()], order="point_id")
                for layer in (0, 1):
                    for h in (1, 2):
                        g = f[f"datasets/hid/layer{layer}/head{h}"]
                        np.testing.assert_array_equal(g["K"][()], self.k[layer, h * HKV // HQ])
        a, b = results["rank4"], results["tmpl"]
        self.assertEqual(len(a), len(b))
        for col in ("point_id", "layer", "head", "seed") + METRICS:
            np.testing.assert_array_equal(a[col], b[col], err_msg=col)


def error_config(q, k, v, layers="[1]", heads="[3, 0]"):
    return (f"name: bad\ndatasets:\n  - {{name: x, kind: npy, q: {q}, k: {k}, v: {v}, "
            f"layers: {layers}, heads: {heads}}}\n"
            "attention: {keys: separate, causal: true}\n"
            "strategies: [{name: rotation}]\nsweep: {n_buckets: [4]}\n")


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
class InputErrorTest(unittest.TestCase):
    """Each refused input: exit code 3 and a message naming the file and what it found."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lshlab-bad-npy-")
        rng = np.random.default_rng(9)
        cls.good = {"q": rng.standard_normal((LAYERS, HQ, N, D)).astype("<f4"),
                    "k": rng.standard_normal((LAYERS, HKV, N, D)).astype("<f4"),
                    "v": rng.standard_normal((LAYERS, HKV, N, D)).astype("<f4")}
        for name, x in cls.good.items():
            np.save(os.path.join(cls.tmp, name + ".npy"), x)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_bad(self, tag, q="q.npy", k="k.npy", v="v.npy", **sel):
        out, p = run(error_config(q, k, v, **sel), self.tmp, tag)
        return out, p

    def save(self, name, x):
        np.save(os.path.join(self.tmp, name), x)

    def assert_refused(self, p, out, *words):
        self.assertEqual(p.returncode, 3, p.stderr)
        for w in words:
            self.assertIn(w, p.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertNotIn("Traceback", p.stderr)

    def test_int32_npy_is_refused_naming_its_type(self):
        self.save("qi.npy", np.ones((LAYERS, HQ, N, D), "<i4"))
        out, p = self.run_bad("int", q="qi.npy")
        self.assert_refused(p, out, "qi.npy", "i4", "float16")

    def test_complex_npy_is_refused_naming_its_type(self):
        self.save("qc.npy", self.good["q"].astype("<c8"))
        out, p = self.run_bad("cplx", q="qc.npy")
        self.assert_refused(p, out, "qc.npy", "c8", "complex")

    def test_fortran_order_npy_is_refused(self):
        self.save("qf.npy", np.asfortranarray(self.good["q"]))
        out, p = self.run_bad("fort", q="qf.npy")
        self.assert_refused(p, out, "qf.npy", "Fortran")

    def test_query_heads_not_a_multiple_of_kv_heads(self):
        self.save("k3.npy", np.ones((LAYERS, 3, N, D), "<f4"))
        out, p = self.run_bad("gqa", k="k3.npy")
        self.assert_refused(p, out, "k3.npy", "q.npy", "3", "4")

    def test_nan_in_a_selected_head_names_layer_head_row_column(self):
        q = self.good["q"].copy()
        q[1, 3, 17, 5] = np.nan
        self.save("qnan.npy", q)
        out, p = self.run_bad("nan", q="qnan.npy")
        self.assert_refused(p, out, "qnan.npy", "NaN", "layer 1", "head 3", "row 17",
                            "column 5")

    def test_inf_in_a_selected_value_head_is_refused(self):
        v = self.good["v"].copy()
        v[1, 0, 33, 2] = -np.inf  # query head 0 uses kv head 0
        self.save("vinf.npy", v)
        out, p = self.run_bad("inf", v="vinf.npy")
        self.assert_refused(p, out, "vinf.npy", "Inf", "layer 1", "row 33", "column 2")

    def test_nan_in_an_unselected_head_is_fine(self):
        q = self.good["q"].copy()
        q[0, 3, 17, 5] = np.nan   # layer 0 is not selected
        q[1, 1, 4, 0] = np.nan    # nor is head 1
        self.save("qnan_other.npy", q)
        out, p = self.run_bad("nan-other", q="qnan_other.npy")
        self.assertEqual(p.returncode, 0, p.stderr)
        with h5py.File(out, "r") as f:
            self.assertEqual(sorted(set(f["runs"]["head"].tolist())), [0, 3])

    def test_nan_in_a_kv_head_no_selected_query_head_uses_is_fine(self):
        k = self.good["k"].copy()
        k[1, 1, 3, 3] = np.nan  # kv head 1 serves query heads 2 and 3 only
        self.save("knan.npy", k)
        out, p = self.run_bad("kv-unused", k="knan.npy", heads="[1, 0]")
        self.assertEqual(p.returncode, 0, p.stderr)
        out, p = self.run_bad("kv-used", k="knan.npy", heads="[2]")
        self.assert_refused(p, out, "knan.npy", "NaN", "layer 1", "row 3", "column 3")

    def test_npy_shorter_or_longer_than_its_header_says(self):
        with open(os.path.join(self.tmp, "q.npy"), "rb") as f:
            raw = f.read()
        for tag, data in (("short", raw[:-1]), ("long", raw + b"\0")):
            with open(os.path.join(self.tmp, f"q_{tag}.npy"), "wb") as f:
                f.write(data)
            out, p = self.run_bad(tag, q=f"q_{tag}.npy")
            self.assert_refused(p, out, f"q_{tag}.npy", str(len(data)), str(len(raw)))

    def test_selected_index_beyond_the_source_names_how_many_it_holds(self):
        out, p = self.run_bad("head4", heads="[4]")
        self.assert_refused(p, out, "q.npy", "4 heads")
        out, p = self.run_bad("layer2", layers="[2]", heads="[0]")
        self.assert_refused(p, out, "q.npy", "2 layers")

    def test_shapes_that_do_not_agree_name_both(self):
        self.save("q_rank3.npy", self.good["q"][1])
        out, p = self.run_bad("axes", q="q_rank3.npy", layers="all", heads="[0]")
        self.assert_refused(p, out, "q_rank3.npy", "k.npy")
        self.save("k_d9.npy", np.ones((LAYERS, HKV, N, D + 1), "<f4"))
        out, p = self.run_bad("d", k="k_d9.npy")
        self.assert_refused(p, out, "k_d9.npy", "q.npy", "9", "8")
        self.save("v_n41.npy", np.ones((LAYERS, HKV, N + 1, D), "<f4"))
        out, p = self.run_bad("n", v="v_n41.npy")
        self.assert_refused(p, out, "v_n41.npy", "q.npy", "41", "40")


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
class AxesAndValuesTest(unittest.TestCase):
    """Rank 3 and rank 2 arrays (the missing axes are -1 and do not enter the seed), and
    float16 values that are easy to get wrong (subnormals, -0, the largest finite)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lshlab-axes-")
        rng = np.random.default_rng(5)
        cls.q = rng.standard_normal((HQ, N, D)).astype("<f8")
        cls.k = rng.standard_normal((HKV, N, D)).astype(">f4")
        cls.v = rng.standard_normal((HKV, N, D)).astype("<f2")
        for name, x in (("q", cls.q), ("k", cls.k), ("v", cls.v)):
            np.save(os.path.join(cls.tmp, name + "3.npy"), x)
            np.save(os.path.join(cls.tmp, name + "2.npy"), x[1])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def sweep(self, tag, q, k, v, sel):
        cfg = (f"name: {tag}\nseed: 8\ndatasets:\n  - {{name: x, kind: npy, q: {q}, k: {k}, "
               f"v: {v}{sel}}}\nattention: {{keys: separate}}\n"
               "strategies: [{name: hyperplane}]\nsweep: {n_buckets: [4]}\ndump: [data]\n")
        out, p = run(cfg, self.tmp, tag)
        self.assertEqual(p.returncode, 0, p.stderr)
        return out

    def test_rank3_has_heads_only(self):
        out = self.sweep("r3", "q3.npy", "k3.npy", "v3.npy", ", heads: [3, 1]")
        with h5py.File(out, "r") as f:
            self.assertEqual(sorted(f["datasets/x"]), ["head1", "head3"])
            self.assertEqual(list(f["datasets/x"].attrs["layers"]), [-1])
            for h in (1, 3):
                g = f[f"datasets/x/head{h}"]
                np.testing.assert_array_equal(g["Q"][()], self.q[h])
                np.testing.assert_array_equal(g["K"][()], self.k[h * HKV // HQ].astype(float))
                np.testing.assert_array_equal(g["V"][()], self.v[h * HKV // HQ].astype(float))
            for row in f["runs"][()]:
                self.assertEqual(int(row["layer"]), -1)
                self.assertEqual(int(row["seed"]), POINT_SEED(
                    8, "x", "hyperplane", "", 4, 0, -1, int(row["head"])))

    def test_rank2_has_no_axes_and_the_seed_of_format_1(self):
        out = self.sweep("r2", "q2.npy", "k2.npy", "v2.npy", "")
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f["datasets/x/Q"][()], self.q[1])
            row = f["runs"][()][0]
            self.assertEqual((int(row["layer"]), int(row["head"])), (-1, -1))
            self.assertEqual(int(row["seed"]), POINT_SEED(8, "x", "hyperplane", "", 4, 0))

    def test_float16_edge_values_are_converted_exactly(self):
        # subnormals (smallest, largest), smallest normal, largest finite, -max, -0,
        # -smallest subnormal, 1, and 1/3 rounded; each bit pattern also byte-swapped.
        bits = np.array([0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x8000, 0x8001, 0x3C00,
                         0x3555], "<u2")
        vals = np.resize(bits.view("<f2"), (N, D))
        for order in ("<", ">"):
            np.save(os.path.join(self.tmp, "qe.npy"), vals.astype(order + "f2"))
            out = self.sweep("edge", "qe.npy", "k2.npy", "v2.npy", "")
            with h5py.File(out, "r") as f:
                got = f["datasets/x/Q"][()]
            # Exact doubles, by hand: m x 2^-24 for subnormals, (1024 + m) x 2^(e - 25).
            want = np.resize(np.array([2.0 ** -24, 1023 * 2.0 ** -24, 2.0 ** -14, 65504.0,
                                       -65504.0, -0.0, -(2.0 ** -24), 1.0,
                                       (1024 + 0x155) * 2.0 ** -12]), (N, D))
            np.testing.assert_array_equal(got.view("<u8"), want.view("<u8"), err_msg=order)


if __name__ == "__main__":
    unittest.main()
