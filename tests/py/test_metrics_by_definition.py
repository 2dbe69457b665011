"""test_metrics_by_definition.py - every /runs metric of small sweeps, recomputed
with numpy from docs/definitions.md (sections 4-7) out of the data and buckets that
lshlab dumps: both modes, both windows, look_back with wrap-around, both combines,
shared_normalized and separate keys, causal, and a sampled reference with its _se
columns.  Also each hash rule (section 3) from the dumped hash parameters.  Needs
LSHLAB_EXE (meson test sets it)."""

import math
import os
import shutil
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

EXE = os.environ.get("LSHLAB_EXE")

# Small sweeps whose every point is compared.  Chunked with n = 37 and chunk_size 5
# makes 8 chunks: look_back 2 wraps around for the first two, 9 covers them all.
CONFIGS = {
    "normalized": """
name: normalized
seed: 11
datasets:
  - {name: c, kind: clustered, n: 37, d: 6, d_v: 3, clusters: 3}
attention: {keys: shared_normalized, scale: 1, topk: [1, 4]}
strategies:
  - name: rotation
    params: {factors: [[2, 4]], orthogonal: [false, true]}
  - name: hyperplane
sweep:
  n_hashes: [1, 3]
  n_buckets: [8]
  mode: [bucket, chunked]
  chunk_size: [5]
  look_back: [0, 2, 9]
  window: [all, same_bucket]
  combine: [union, rounds]
dump: [data, buckets, hash_params, rows]
""",
    "separate": """
name: separate
seed: 3
datasets:
  - {name: g, kind: gaussian, n: 37, d: 5, d_v: 2}
  - {name: s, kind: gaussian, n: 40, d: 5, reference_rows: 17}
attention: {keys: separate, causal: true, exclude_self: true, topk: [2]}
strategies:
  - name: kmeans
    params: {iterations: 3}
  - name: rotation
sweep:
  n_hashes: [2, 3]
  n_buckets: [4]
  mode: [bucket, chunked]
  chunk_size: [5]
  look_back: [1]
  window: [same_bucket]
  combine: [union, rounds]
dump: [data, buckets, hash_params, rows]
""",
}


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def round_sets(bq, bk, key_items, mode, cs, look_back, window, i):
    """S_i^h of one round as a set of keys (section 4), before U_i."""
    if mode == "bucket":
        return {j for j in range(len(bk)) if bk[j] == bq[i]}
    # key_items: separate keys -> sort (bucket, position, kind) over 2n items
    n = len(bq)
    if key_items:
        items = sorted([(bq[p], p, 0) for p in range(n)] + [(bk[p], p, 1) for p in range(n)])
    else:
        items = sorted((bq[p], p, 1) for p in range(n))  # each item is both
    chunks = [items[t:t + cs] for t in range(0, len(items), cs)]
    own = next(t for t, ch in enumerate(chunks)
               for (_, p, kind) in ch if p == i and (kind == 0 or not key_items))
    span = min(look_back + 1, len(chunks))
    out = set()
    for u in range(span):
        for (_, p, kind) in chunks[(own - u) % len(chunks)]:
            if kind == 1 and (window == "all" or bk[p] == bq[i]):
                out.add(p)
    return out


def allowed(n, i, exclude_self, causal):
    u = {j for j in range(n) if not (exclude_self and j == i) and not (causal and j > i)}
    return u if u else {i}


def ratio_se(y, x, m, n):
    """Section 7: the ratio estimator and its standard error."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    if x.sum() == 0:
        return 0.0, 0.0
    r = y.sum() / x.sum()
    if m == n or m < 2:
        return r, 0.0
    ss = ((y - r * x) ** 2).sum()
    xbar = x.sum() / m
    return r, math.sqrt((1 - m / n) * ss / (m * (m - 1))) / abs(xbar)


def problem_group(f, row):
    """The /datasets group holding the dumped Q, K, V of a /runs row: NAME, or
    NAME/layer{L}/head{H} (or just one of them) for data with those axes (section 11)."""
    g = f["datasets"][text(row["dataset"])]
    for axis in ("layer", "head"):
        if axis in row.dtype.names and int(row[axis]) >= 0:
            g = g[f"{axis}{int(row[axis])}"]
    return g


def expected_metrics(f, row, attn):
    """Every metric of one /runs row, from /datasets and /points (sections 4-7)."""
    g = problem_group(f, row)
    q = g["Q"][()]
    v = g["V"][()]
    n, d = q.shape
    keys = attn["keys"]
    if keys == "separate":
        k = g["K"][()]
    elif keys == "shared_normalized":
        k = q / np.linalg.norm(q, axis=1, keepdims=True)
    else:
        k = q
    scale = 1 / math.sqrt(d) if attn["scale"] == "auto" else float(attn["scale"])
    s = scale * (q @ k.T)
    gram = q @ q.T if keys == "shared_normalized" else q @ k.T
    pts = f["points"][str(int(row["point_id"]))]
    H = int(row["n_hashes"])
    bq = pts["buckets"][()][:H]
    bk = pts["key_buckets"][()][:H] if keys == "separate" else bq
    rows = pts["row_index"][()] if "row_index" in pts else np.arange(n)
    mode, combine = text(row["mode"]), text(row["combine"])
    acc = {c: ([], []) for c in ("out", "attn", "mass", "kl", "empty", "gram", "density",
                                 "cand")}
    topk = [int(c[len("topk_recall_"):]) for c in row.dtype.names
            if c.startswith("topk_recall_") and not c.endswith("_se")]
    acc.update({f"topk{K}": ([], []) for K in topk})

    def add(metric, y, x):
        acc[metric][0].append(y)
        acc[metric][1].append(x)

    masses, counts = [], []
    for i in rows:
        i = int(i)
        u = allowed(n, i, attn["exclude_self"], attn["causal"])
        ul = sorted(u)
        lse = np.log(np.exp(s[i, ul] - s[i, ul].max()).sum()) + s[i, ul].max()
        a = np.zeros(n)
        a[ul] = np.exp(s[i, ul] - lse)
        o = a @ v
        nij = np.zeros(n)
        for h in range(H):
            for j in round_sets(bq[h], bk[h], keys == "separate", mode,
                                int(row["chunk_size"]), int(row["look_back"]),
                                text(row["window"]), i) & u:
                nij[j] += 1
        sel = sorted(np.nonzero(nij)[0])
        empty = not sel
        if empty:
            sel = [i]
        mass = a[sel].sum()
        ahat = np.zeros(n)
        if empty:
            ahat[i] = 1.0
            kl = 0.0
        elif combine == "union":
            ahat[sel] = a[sel] / mass
            kl = -math.log(mass)
        else:
            den = (nij * a).sum()
            ahat = nij * a / den
            kl = float((ahat[sel] * np.log(nij[sel])).sum() - math.log(den))
        ohat = ahat @ v
        add("out", ((o - ohat) ** 2).sum(), (o ** 2).sum())
        add("attn", ((a - ahat) ** 2).sum(), (a ** 2).sum())
        add("mass", mass, 1)
        add("kl", 0.0 if empty else kl, 0 if empty else 1)
        add("empty", 1 if empty else 0, 1)
        off = [j for j in ul if j != i]
        add("gram", 0.0 if empty else sum(gram[i, j] ** 2 for j in sel if j != i),
            sum(gram[i, j] ** 2 for j in off))
        add("density", len(sel), len(u))
        add("cand", len(sel), 1)
        order = sorted(ul, key=lambda j: (-s[i, j], j))
        for K in topk:
            t = order[:min(K, len(u))]
            add(f"topk{K}", len(set(t) & set(sel)) / len(t), 1)
        masses.append(mass)
        counts.append(len(sel))

    m = len(rows)
    out = {}
    for metric, (y, x) in acc.items():
        r, se = ratio_se(y, x, m, n)
        out[metric] = (r, se)
    exp = {
        "out_rel_err": (math.sqrt(out["out"][0]),
                        out["out"][1] / (2 * math.sqrt(out["out"][0])) if out["out"][0] else 0),
        "attn_rel_err": (math.sqrt(out["attn"][0]),
                         out["attn"][1] / (2 * math.sqrt(out["attn"][0])) if out["attn"][0]
                         else 0),
        "mass_recall": out["mass"],
        "kl": out["kl"],
        "empty_rows": (sum(acc["empty"][0]), out["empty"][1] * m),
        "gram_recovery": out["gram"],
        "density": out["density"],
        "mean_candidates": out["cand"],
    }
    for K in topk:
        exp[f"topk_recall_{K}"] = out[f"topk{K}"]
    # Balance over all n rows of Q, the first H rounds.
    B = int(row["n_buckets"])
    sizes = [np.bincount(bq[h], minlength=B) for h in range(H)]
    exp["bucket_max"] = (max(sz.max() for sz in sizes) * B / n, 0.0)
    ent = [-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(B) for p in (sz / n for sz in sizes)]
    exp["bucket_entropy"] = (sum(ent) / H, 0.0)
    return exp, masses, counts


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
class MetricsByDefinitionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lshlab-metrics-")
        cls.files = {}
        for name, yaml in CONFIGS.items():
            cfg = os.path.join(cls.tmp, name + ".yaml")
            with open(cfg, "w") as f:
                f.write(yaml)
            out = os.path.join(cls.tmp, name + ".h5")
            subprocess.run([EXE, "run", cfg, "-o", out, "-q", "-j", "2"], check=True)
            cls.files[name] = out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def check_file(self, name, attn):
        checked = 0
        with h5py.File(self.files[name], "r") as f:
            runs = f["runs"][()]
            for row in runs:
                self.assertEqual(text(row["status"]), "ok", text(row["message"]))
                exp, masses, counts = expected_metrics(f, row, attn)
                where = (f"{name} point {row['point_id']} {text(row['strategy'])} "
                         f"{text(row['mode'])} lb={row['look_back']} {text(row['window'])} "
                         f"{text(row['combine'])} H={row['n_hashes']}")
                for col, (value, se) in exp.items():
                    self.assertTrue(math.isclose(float(row[col]), value, rel_tol=1e-9,
                                                 abs_tol=1e-12),
                                    f"{where}: {col} = {row[col]!r}, by definition {value!r}")
                    if col + "_se" in runs.dtype.names:
                        self.assertTrue(math.isclose(float(row[col + "_se"]), se,
                                                     rel_tol=1e-7, abs_tol=1e-12),
                                        f"{where}: {col}_se = {row[col + '_se']!r}, by "
                                        f"definition {se!r}")
                pts = f["points"][str(int(row["point_id"]))]
                np.testing.assert_allclose(pts["row_mass"][()], masses, rtol=1e-9, atol=1e-15)
                np.testing.assert_array_equal(pts["row_candidates"][()], counts)
                checked += 1
        return checked

    def test_shared_normalized_keys_every_mode_and_combine(self):
        self.assertEqual(self.check_file("normalized", {
            "keys": "shared_normalized", "scale": 1, "exclude_self": True, "causal": False}),
            3 * (1 + 6) * 2 * 2)  # parameter sets x mode settings x n_hashes x combine

    def test_separate_causal_keys_and_a_sampled_reference(self):
        n = self.check_file("separate", {
            "keys": "separate", "scale": "auto", "exclude_self": True, "causal": True})
        self.assertEqual(n, 2 * 2 * 2 * 2 * 2)
        with h5py.File(self.files["separate"], "r") as f:
            self.assertIn("mass_recall_se", f["runs"].dtype.names)
            self.assertEqual(int(f["datasets/s"].attrs["reference_rows"]), 17)
            idx = f["points"]
            sampled = [k for k in idx if "row_index" in idx[k]]
            self.assertTrue(sampled)
            rows = idx[sampled[0]]["row_index"][()]
            self.assertEqual(len(rows), 17)
            self.assertTrue(np.all(np.diff(rows.astype(np.int64)) > 0))

    def test_hash_rules_from_the_dumped_parameters(self):
        with h5py.File(self.files["normalized"], "r") as f:
            q = f["datasets/c/Q"][()]
            for row in f["runs"][()]:
                pts = f["points"][str(int(row["point_id"]))]
                strategy, params = text(row["strategy"]), text(row["params"])
                for h in range(int(row["n_hashes"])):
                    b = pts["buckets"][()][h]
                    if strategy == "rotation":
                        r = pts[f"hash_params_rotation_h{h}"][()]
                        if "orthogonal=true" in params:
                            np.testing.assert_allclose(r.T @ r, np.eye(r.shape[1]), atol=1e-12)
                        y = q @ r
                        # factors [2, 4]: factor 1 owns column 0, factor 2 columns 1-2
                        a1 = np.argmax(np.concatenate([y[:, :1], -y[:, :1]], axis=1), axis=1)
                        a2 = np.argmax(np.concatenate([y[:, 1:3], -y[:, 1:3]], axis=1), axis=1)
                        np.testing.assert_array_equal(b, a1 + 2 * a2)
                    else:
                        w = pts[f"hash_params_hyperplanes_h{h}"][()]
                        bits = (q @ w > 0).astype(int)
                        np.testing.assert_array_equal(b, bits @ (1 << np.arange(w.shape[1])))
        with h5py.File(self.files["separate"], "r") as f:
            for row in f["runs"][()]:
                if text(row["strategy"]) != "kmeans":
                    continue
                ds = f["datasets"][text(row["dataset"])]
                pts = f["points"][str(int(row["point_id"]))]
                for h in range(int(row["n_hashes"])):
                    c = pts[f"hash_params_centroids_h{h}"][()]
                    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-12)
                    for x, b in ((ds["Q"][()], pts["buckets"][()][h]),
                                 (ds["K"][()], pts["key_buckets"][()][h])):
                        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
                        np.testing.assert_array_equal(b, np.argmax(xn @ c.T, axis=1))


if __name__ == "__main__":
    unittest.main()
