"""test_heads.py - the per-head side of the Python package (results format 2):
the reader of format_version 1 and 2 (and its refusals), tools/summary
--group-by layer,head and --where, and tools/plot's layer x head heatmap and
head spread figures, each against a hand-made file of 2 layers x 2 heads whose
metric values are written out below and averaged by hand.  Run by
tests/py/run.sh (meson test python)."""

import contextlib
import csv
import io
import math
import os
import shutil
import tempfile
import unittest

import h5py
import numpy as np

from lshlab import results as lr
from lshlab import summary

# /runs of format 2 as lshlab writes it: layer and head right after dataset.
V2_FIELDS = [
    ("point_id", "<u8"), ("dataset", "S64"), ("layer", "<i4"), ("head", "<i4"),
    ("strategy", "S64"), ("params", "S256"), ("mode", "S16"), ("chunk_size", "<u4"),
    ("look_back", "<u4"), ("window", "S16"), ("combine", "S16"), ("n_hashes", "<u4"),
    ("n_buckets", "<u4"), ("repeat", "<u4"), ("seed", "<u8"), ("status", "S16"),
    ("message", "S256"), ("out_rel_err", "<f8"), ("mass_recall", "<f8"),
    ("density", "<f8"),
]
V2_DTYPE = np.dtype(V2_FIELDS)
V1_DTYPE = np.dtype([f for f in V2_FIELDS if f[0] not in ("layer", "head")])

# mass_recall at the default point of the heatmap (the largest n_hashes, 2, and the
# middle of n_buckets 4, 8, 16: 8), two repeats per (strategy, layer, head).
AT_2_8 = {
    ("rotation", 0, 0): (0.20, 0.30), ("rotation", 0, 1): (0.40, 0.50),
    ("rotation", 1, 0): (0.61, 0.59), ("rotation", 1, 1): (0.10, 0.14),
    ("kmeans", 0, 0): (0.70, 0.72), ("kmeans", 0, 1): (0.33, 0.35),
    ("kmeans", 1, 0): (0.90, 0.80), ("kmeans", 1, 1): (0.05, 0.07),
}
# Their means, worked out by hand: rows are layers, columns heads.
ROTATION_2_8 = [[0.25, 0.45], [0.60, 0.12]]
KMEANS_2_8 = [[0.71, 0.34], [0.85, 0.06]]


def filler(strategy, layer, head, h, b, r):
    """mass_recall away from (2, 8): distinct values, so that a figure showing the
    wrong point cannot pass.  At (1, 16): 0.1 L + 0.01 H + 0.002 r (+0.5 kmeans)."""
    base = 0.5 if strategy == "kmeans" else 0.0
    if (h, b) == (1, 16):
        return base + 0.1 * layer + 0.01 * head + 0.002 * r
    return base + 0.3 + 0.001 * h + 0.0001 * b + 0.01 * layer + 0.02 * head + 0.003 * r


def heads_rows(extra=None):
    """Every row of the 2 x 2 head file: 2 strategies x n_hashes 1, 2 x n_buckets 4, 8,
    16 x 2 layers x 2 heads x 2 repeats, plus one failed row that must not count."""
    rows, pid = [], 0
    for s in ("rotation", "kmeans"):
        for h in (1, 2):
            for b in (4, 8, 16):
                for layer in (0, 1):
                    for head in (0, 1):
                        for r in (0, 1):
                            if (h, b) == (2, 8):
                                mr = AT_2_8[(s, layer, head)][r]
                            else:
                                mr = filler(s, layer, head, h, b, r)
                            rows.append([pid, b"tiny", layer, head, s.encode(), b"", b"bucket",
                                         0, 0, b"n/a", b"union", h, b, r, 1000 + pid, b"ok",
                                         b"", 1.0 - mr, mr, h / b])
                            pid += 1
    # A failed point at the default point: its numbers are nonsense and left out.
    rows.append([pid, b"tiny", 0, 0, b"kmeans", b"", b"bucket", 0, 0, b"n/a", b"union", 2, 8,
                 2, 9999, b"failed", b"boom", 99.0, 99.0, 99.0])
    return rows


class HeadsFile(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lshlab-heads-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, name, rows, dtype=V2_DTYPE, version=2, fmt="lshlab-results",
              datasets=True):
        path = os.path.join(self.tmp, name)
        with h5py.File(path, "w") as f:
            if fmt is not None:
                f.attrs["format"] = fmt
            if version is not None:
                f.attrs["format_version"] = (np.int32(version) if isinstance(version, int)
                                             else version)
            f.create_dataset("runs", data=np.array([tuple(r) for r in rows], dtype=dtype),
                             maxshape=(None,), chunks=(64,))
            if datasets:
                g = f.create_group("datasets/tiny")
                g.attrs["layers"] = np.array([0, 1], dtype=np.int32)
                g.attrs["heads"] = np.array([0, 1], dtype=np.int32)
                g.attrs["kv_heads"] = np.int64(2)
                g.attrs["source"] = "hand-made"
                g.attrs["dtype"] = "float32"
        return path

    def heads_file(self):
        return self.write("heads.h5", heads_rows())

    def v1_file(self):
        rows = [[r[0], r[1]] + r[4:] for r in heads_rows() if r[2] == 0 and r[3] == 0]
        return self.write("v1.h5", rows, dtype=V1_DTYPE, version=1, datasets=False)

    def summary(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = summary.main(list(argv))
        return rc, out.getvalue(), err.getvalue()

    def usage_error(self, main, *argv):
        """The message of a command line that main refuses with exit code 2."""
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            with self.assertRaises(SystemExit) as cm:
                main(list(argv))
        self.assertEqual(cm.exception.code, 2, err.getvalue())
        return err.getvalue()


class FormatVersionTest(HeadsFile):
    def test_version_2_has_layer_and_head_after_dataset(self):
        t = lr.read_table(self.heads_file(), "runs")
        self.assertEqual(t.order[:4], ["point_id", "dataset", "layer", "head"])
        self.assertEqual(t.keys()[:4], ["point_id", "dataset", "layer", "head"])
        self.assertEqual(t.filled, set())
        self.assertEqual(sorted(set(zip(t["layer"], t["head"]))),
                         [(0, 0), (0, 1), (1, 0), (1, 1)])
        self.assertNotIn("layer", t.metrics())

    def test_version_1_still_reads_with_layer_and_head_minus_one(self):
        path = self.v1_file()
        t = lr.read_table(path, "runs")
        self.assertEqual(t.attrs["format_version"], 1)
        self.assertEqual(t.order[:4], ["point_id", "dataset", "layer", "head"])
        self.assertEqual(t.filled, {"layer", "head"})
        self.assertEqual(set(t["layer"]), {-1})
        self.assertEqual(set(t["head"]), {-1})
        self.assertEqual(len(t), 2 * 2 * 3 * 2 + 1)
        # The summary of a version-1 file: no layer/head columns unless asked for.
        rc, out, _ = self.summary(path, "--csv", "-m", "mass_recall")
        self.assertEqual(rc, 0)
        self.assertEqual(next(csv.reader(io.StringIO(out)))[:4],
                         ["dataset", "strategy", "params", "mode"])
        rc, out, _ = self.summary(path, "--csv", "-g", "layer,head", "-m", "mass_recall")
        self.assertEqual(rc, 0)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual([(r["layer"], r["head"], r["n"]) for r in got], [("-1", "-1", "24")])

    def test_other_versions_and_formats_are_refused(self):
        rows = heads_rows()[:3]
        cases = [
            (dict(version=3), "format_version 3; this reader reads format_version 1 and 2"),
            (dict(version=0), "format_version 0"),
            (dict(version=None), "no format_version attribute"),
            (dict(version=np.bytes_(b"2")), "not an integer"),
            (dict(version=np.float64(2.0)), "not an integer"),
            (dict(fmt="something-else"), "its format attribute is 'something-else'"),
        ]
        for i, (kw, want) in enumerate(cases):
            path = self.write(f"bad{i}.h5", rows, **kw)
            with self.assertRaises(lr.FormatError) as cm:
                lr.read_table(path, "runs")
            self.assertIn(want, str(cm.exception), kw)
            self.assertIn(path, str(cm.exception))
            rc, out, err = self.summary(path)
            self.assertEqual((rc, out), (1, ""), kw)
            self.assertIn(want, err)

    def test_a_layer_column_that_is_not_integers_is_refused(self):
        fields = [(n, "S8" if n == "layer" else t) for n, t in V2_FIELDS]
        rows = [r[:2] + [b"zero"] + r[3:] for r in heads_rows()[:2]]
        path = self.write("strlayer.h5", rows, dtype=np.dtype(fields))
        with self.assertRaises(lr.FormatError) as cm:
            lr.read_table(path, "runs")
        self.assertIn("the /runs column layer holds |S8, not integers", str(cm.exception))

    def test_dataset_attributes_are_read(self):
        d = lr.read_datasets(self.heads_file())
        self.assertEqual(list(d), ["tiny"])
        self.assertEqual(list(d["tiny"]["layers"]), [0, 1])
        self.assertEqual(list(d["tiny"]["heads"]), [0, 1])
        self.assertEqual(int(d["tiny"]["kv_heads"]), 2)
        self.assertEqual(d["tiny"]["source"], "hand-made")


class SummaryGroupByTest(HeadsFile):
    AT = ["--where", "n_hashes=2", "--where", "n_buckets=8", "-m", "mass_recall", "--csv"]

    def test_group_by_layer_and_head(self):
        rc, out, err = self.summary(self.heads_file(), "--group-by", "layer,head",
                                    "--where", "strategy=kmeans", *self.AT)
        self.assertEqual(rc, 0, err)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(list(got[0]), ["layer", "head", "n", "mass_recall", "mass_recall_se"])
        self.assertEqual([(r["layer"], r["head"], r["n"]) for r in got],
                         [("0", "0", "2"), ("0", "1", "2"), ("1", "0", "2"), ("1", "1", "2")])
        # Two repeats: mean (a + b) / 2, se |a - b| / 2.
        want = [(0.71, 0.01), (0.34, 0.01), (0.85, 0.05), (0.06, 0.01)]
        for r, (m, se) in zip(got, want):
            self.assertAlmostEqual(float(r["mass_recall"]), m, places=14)
            self.assertAlmostEqual(float(r["mass_recall_se"]), se, places=14)

    def test_group_by_layer_and_head_over_two_models_warns_that_it_pools_them(self):
        rows = heads_rows()
        rows += [[r[0] + 1000, b"other"] + r[2:] for r in heads_rows()]
        path = self.write("two_models.h5", rows)
        rc, out, err = self.summary(path, "--group-by", "layer,head", *self.AT)
        self.assertEqual(rc, 0, err)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(got[0]["n"], "8")  # 2 strategies x 2 repeats x 2 datasets
        self.assertIn("note: groups pool the rows of 2 datasets (tiny, other); add "
                      "dataset to --group-by to keep them apart", err)
        rc, out, err = self.summary(path, "--group-by", "dataset,layer,head", *self.AT)
        self.assertNotIn("pools", err)
        rc, out, err = self.summary(self.heads_file(), "--group-by", "layer,head", *self.AT)
        self.assertNotIn("pools", err)

    def test_group_by_layer_pools_heads_and_repeats(self):
        rc, out, _ = self.summary(self.heads_file(), "--group-by", "strategy,layer", *self.AT)
        self.assertEqual(rc, 0)
        got = {(r["strategy"], r["layer"]): r for r in csv.DictReader(io.StringIO(out))}
        self.assertEqual(list(got), [("rotation", "0"), ("rotation", "1"), ("kmeans", "0"),
                                     ("kmeans", "1")])
        # kmeans, layer 0: 0.70, 0.72, 0.33, 0.35 -> mean 0.525; squared deviations
        # 0.175^2 + 0.195^2 + 0.195^2 + 0.175^2 = 0.1373, sd^2 = 0.1373 / 3, se = sd / 2.
        k0 = got[("kmeans", "0")]
        self.assertEqual(k0["n"], "4")
        self.assertAlmostEqual(float(k0["mass_recall"]), 0.525, places=14)
        self.assertAlmostEqual(float(k0["mass_recall_se"]), math.sqrt(0.1373 / 3) / 2,
                               places=14)
        # The failed row (99.0) is left out: kmeans layer 0 head 0 has two rows, not 3.
        self.assertAlmostEqual(float(got[("rotation", "1")]["mass_recall"]),
                               (0.61 + 0.59 + 0.10 + 0.14) / 4, places=14)

    def test_default_grouping_keeps_layer_and_head_of_a_version_2_file(self):
        rc, out, _ = self.summary(self.heads_file(), "--where", "strategy=rotation", *self.AT)
        self.assertEqual(rc, 0)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(list(got[0])[:3], ["dataset", "layer", "head"])
        self.assertEqual(len(got), 4)
        self.assertAlmostEqual(float(got[3]["mass_recall"]), 0.12, places=14)

    def test_default_grouping_leaves_out_layer_and_head_of_data_without_heads(self):
        rows = [r[:2] + [-1, -1] + r[4:] for r in heads_rows() if r[2] == 0 and r[3] == 0]
        rc, out, _ = self.summary(self.write("flat.h5", rows), *self.AT)
        self.assertEqual(rc, 0)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(list(got[0])[:2], ["dataset", "strategy"])
        self.assertEqual([(r["strategy"], r["n"]) for r in got], [("rotation", "2"),
                                                                  ("kmeans", "2")])
        self.assertAlmostEqual(float(got[1]["mass_recall"]), 0.71, places=14)

    def test_unknown_or_metric_column_is_refused_naming_the_key_columns(self):
        path = self.heads_file()
        err = self.usage_error(summary.main, path, "--group-by", "layr,head")
        self.assertIn("'layr' is no key column of /runs; did you mean 'layer'?", err)
        self.assertIn("key columns: point_id, dataset, layer, head, strategy", err)
        err = self.usage_error(summary.main, path, "--group-by", "mass_recall")
        self.assertIn("'mass_recall' is a metric, not a key column", err)
        err = self.usage_error(summary.main, path, "--where", "layer=7")
        self.assertIn("--where: layer has no value '7'; values: 0, 1", err)
        err = self.usage_error(summary.main, path, "--where", "heads=1")
        self.assertIn("no key column 'heads'", err)
        err = self.usage_error(summary.main, path, "--where", "head")
        self.assertIn("'head' is not COLUMN=VALUE", err)


try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


@unittest.skipUnless(HAVE_MATPLOTLIB, "needs matplotlib")
class HeadFiguresTest(HeadsFile):
    def plot(self, path, *argv):
        from lshlab import plot
        out = os.path.join(self.tmp, "fig")
        drawn = {}
        so, se = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
            rc = plot.main([path, "-o", out, "--format", "png", "--dpi", "40"] + list(argv),
                           drawn=drawn)
        return rc, so.getvalue().split(), se.getvalue(), drawn

    def test_heatmap_draws_the_hand_computed_means_at_the_default_point(self):
        from lshlab import plot
        rc, files, err, drawn = self.plot(self.heads_file(), "--only", "heads")
        self.assertEqual(rc, 0, err)
        self.assertEqual(files, [os.path.join(self.tmp, "fig", "heads_heads_mass_recall.png")])
        with open(files[0], "rb") as f:
            self.assertEqual(f.read(4), b"\x89PNG")
        d = drawn["heads_heads_mass_recall"]
        self.assertEqual((d["n_hashes"], d["n_buckets"]), (2, 8))
        self.assertIn("n_hashes = 2, n_buckets = 8; mean over 2 repeats", d["title"])
        self.assertEqual((d["layers"], d["heads"]), ([0, 1], [0, 1]))
        self.assertEqual([p["label"] for p in d["panels"]], ["rotation", "kmeans"])
        for p, want in zip(d["panels"], (ROTATION_2_8, KMEANS_2_8)):
            np.testing.assert_allclose(p["matrix"], want, rtol=0, atol=1e-14)
            # What the image shows, and the numbers written in its cells.
            np.testing.assert_allclose(p["image"], want, rtol=0, atol=1e-14)
            self.assertEqual(sorted(p["texts"]),
                             [(i, j, f"{want[i][j]:.2f}") for i in (0, 1) for j in (0, 1)])
            np.testing.assert_array_equal(p["repeats"], [[2, 2], [2, 2]])
            self.assertEqual(p["colour"], plot.STRATEGY_STYLE[p["strategy"]][0])

    def test_heatmap_at_a_chosen_point_and_strategy(self):
        rc, _, err, drawn = self.plot(self.heads_file(), "--only", "heads", "--n-hashes", "1",
                                      "--n-buckets", "16", "--strategy", "kmeans")
        self.assertEqual(rc, 0, err)
        d = drawn["heads_heads_mass_recall"]
        self.assertEqual((d["n_hashes"], d["n_buckets"]), (1, 16))
        self.assertEqual([p["label"] for p in d["panels"]], ["kmeans"])
        # 0.5 + 0.1 L + 0.01 H + 0.002 r, mean over r = 0, 1: + 0.001.
        np.testing.assert_allclose(d["panels"][0]["matrix"],
                                   [[0.501, 0.511], [0.601, 0.611]], rtol=0, atol=1e-14)

    def test_default_point_is_the_largest_n_hashes_and_the_middle_n_buckets(self):
        from lshlab import plot
        t = lr.Table("runs", {
            "n_hashes": np.array([1, 4, 4, 4, 4, 2], dtype=np.uint32),
            "n_buckets": np.array([64, 32, 8, 16, 64, 4], dtype=np.uint32),
        }, ["n_hashes", "n_buckets"], {})
        # n_buckets at n_hashes 4: 8, 16, 32, 64 -> the lower middle one, 16.
        self.assertEqual(plot.default_point(t), (4, 16))
        self.assertEqual(plot.default_point(t, n_hashes=1), (1, 64))
        self.assertEqual(plot.default_point(t, n_buckets=8), (4, 8))

    def test_spread_draws_one_dot_per_head_in_the_strategy_colour(self):
        from lshlab import plot
        rc, files, err, drawn = self.plot(self.heads_file(), "--only", "head_spread")
        self.assertEqual(rc, 0, err)
        self.assertEqual([os.path.basename(f) for f in files],
                         ["heads_head_spread_mass_recall.png"])
        d = drawn["heads_head_spread_mass_recall"]
        self.assertEqual((d["n_hashes"], d["n_buckets"]), (2, [4, 8, 16]))
        groups = {(g["strategy"], g["n_buckets"]): g for g in d["groups"]}
        self.assertEqual(len(groups), 6)
        for s, want in (("rotation", ROTATION_2_8), ("kmeans", KMEANS_2_8)):
            g = groups[(s, 8)]
            self.assertEqual(g["units"], [(0, 0), (0, 1), (1, 0), (1, 1)])
            flat = [want[0][0], want[0][1], want[1][0], want[1][1]]
            np.testing.assert_allclose(g["values"], flat, rtol=0, atol=1e-14)
            np.testing.assert_allclose(g["points"], flat, rtol=0, atol=1e-14)
            self.assertEqual(g["point_colour"], plot.STRATEGY_STYLE[s][0].lower())
        # Another n_buckets: the filler, by hand (rotation, n_hashes 2, B = 4, layer 1, head 1:
        # 0.3 + 0.002 + 0.0004 + 0.01 + 0.02 + 0.0015).
        self.assertAlmostEqual(groups[("rotation", 4)]["values"][3], 0.3339, places=14)

    def test_spread_marks_the_mean_of_a_baseline_dataset(self):
        rows = heads_rows()
        pid = 5000
        for s in ("rotation", "kmeans"):
            for h in (1, 2):
                for b in (4, 8, 16):
                    for r in (0, 1):
                        # 0.1 (rotation) or 0.2 (kmeans) + 0.01 r: mean 0.105 or 0.205.
                        mr = (0.1 if s == "rotation" else 0.2) + 0.01 * r
                        rows.append([pid, b"gauss", -1, -1, s.encode(), b"", b"bucket", 0, 0,
                                     b"n/a", b"union", h, b, r, pid, b"ok", b"", 1 - mr, mr,
                                     h / b])
                        pid += 1
        path = self.write("two.h5", rows)
        rc, files, err, drawn = self.plot(path, "--only", "head_spread", "--baseline", "gauss")
        self.assertEqual(rc, 0, err)
        # Only the multi-head dataset gets the figure; gauss has one (layer, head).
        self.assertEqual([os.path.basename(f) for f in files],
                         ["two_tiny_head_spread_mass_recall.png"])
        self.assertIn("gauss: head_spread_mass_recall: one (layer, head) only", err)
        groups = drawn["two_tiny_head_spread_mass_recall"]["groups"]
        self.assertEqual(len(groups), 6)
        for g in groups:
            want = 0.105 if g["strategy"] == "rotation" else 0.205
            self.assertAlmostEqual(g["baseline"], want, places=14)
        from lshlab import plot
        err = self.usage_error(plot.main, path, "-o", self.tmp, "--baseline", "gaus")
        self.assertIn("--baseline: no ok rows of dataset 'gaus'; datasets: tiny, gauss", err)

    def test_ambiguous_point_is_not_drawn_and_names_the_choice(self):
        fields = V2_FIELDS[:11] + [("min_collisions", "<u4")] + V2_FIELDS[11:]
        rows = []
        for t in (1, 2):
            for r in heads_rows()[:-1]:
                rows.append(r[:11] + [t] + r[11:])
                rows[-1][0] += 1000 * t
                if t == 2:
                    rows[-1][-2] += 0.5  # mass_recall
        path = self.write("ambiguous.h5", rows, dtype=np.dtype(fields))
        rc, files, err, drawn = self.plot(path, "--only", "heads,head_spread")
        self.assertEqual((rc, files, drawn), (1, [], {}))
        self.assertIn("min_collisions takes the values 1, 2 at this point; pick one with "
                      "--where min_collisions=VALUE", err)
        rc, _, err, drawn = self.plot(path, "--only", "heads", "--where", "min_collisions=2")
        self.assertEqual(rc, 0, err)
        np.testing.assert_allclose(drawn["ambiguous_heads_mass_recall"]["panels"][1]["matrix"],
                                   np.array(KMEANS_2_8) + 0.5, rtol=0, atol=1e-14)

    def failed_file(self, fail):
        """The 2 x 2 file with every row of the (strategy, layer, head) that fail(...)
        picks failed (as when a head's scores overflow): no metrics, status failed."""
        rows = heads_rows()
        for r in rows:
            if fail(r[4].decode(), r[2], r[3]):
                r[15], r[16] = b"failed", b"dataset 'tiny': scores overflow"
                r[-3:] = [0.0, 0.0, 0.0]
        return self.write("failed.h5", rows)

    def test_a_layer_whose_heads_all_failed_is_drawn_as_failed_cells(self):
        path = self.failed_file(lambda s, layer, head: layer == 1)
        rc, files, err, drawn = self.plot(path, "--only", "heads,head_spread")
        self.assertEqual(rc, 0, err)
        d = drawn["failed_heads_mass_recall"]
        # The failed layer keeps its row: it is not silently left out of the grid.
        self.assertEqual((d["layers"], d["heads"]), ([0, 1], [0, 1]))
        for p, want in zip(d["panels"], (ROTATION_2_8, KMEANS_2_8)):
            np.testing.assert_allclose(p["matrix"][0], want[0], rtol=0, atol=1e-14)
            self.assertTrue(np.isnan(p["matrix"][1]).all())
            self.assertEqual(sorted(p["texts"]),
                             [(0, j, f"{want[0][j]:.2f}") for j in (0, 1)]
                             + [(1, 0, "failed"), (1, 1, "failed")])
        self.assertIn("2 heads failed (grey): L1 H0, L1 H1", d["title"])
        s = drawn["failed_head_spread_mass_recall"]
        self.assertIn("across 2 heads", s["title"])
        self.assertIn("2 heads failed, left out: L1 H0, L1 H1", s["title"])
        for g in s["groups"]:
            self.assertEqual(g["units"], [(0, 0), (0, 1)])

    def test_a_head_failed_for_one_strategy_is_failed_in_its_panel_only(self):
        path = self.failed_file(lambda s, layer, head: (s, layer, head) == ("rotation", 1, 1))
        rc, files, err, drawn = self.plot(path, "--only", "heads")
        self.assertEqual(rc, 0, err)
        d = drawn["failed_heads_mass_recall"]
        rot, km = d["panels"]
        self.assertIn((1, 1, "failed"), rot["texts"])
        self.assertTrue(np.isnan(rot["matrix"][1][1]))
        np.testing.assert_allclose(km["matrix"], KMEANS_2_8, rtol=0, atol=1e-14)
        self.assertNotIn("failed", [t for _, _, t in km["texts"]])
        self.assertIn("1 head failed (grey): L1 H1", d["title"])

    def test_one_head_selected_keeps_the_heatmap_short(self):
        rc, _, err, drawn = self.plot(self.heads_file(), "--only", "heads", "--where", "head=1")
        self.assertEqual(rc, 0, err)
        d = drawn["heads_heads_mass_recall"]
        self.assertEqual((d["layers"], d["heads"]), ([0, 1], [1]))
        np.testing.assert_allclose(d["panels"][0]["matrix"], [[0.45], [0.12]], rtol=0,
                                   atol=1e-14)
        # two cells a panel: the height of two rows of a wide heatmap, not 4 in
        self.assertLessEqual(d["size"][1], 2.0)

    def test_single_head_files_get_no_head_figures(self):
        path = self.v1_file()
        rc, files, err, drawn = self.plot(path, "--only", "heads,head_spread")
        self.assertEqual((rc, files, drawn), (1, [], {}))
        self.assertIn("one (layer, head) only", err)
        rc, files, err, drawn = self.plot(path, "--only", "heatmap,cost")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(os.path.basename(f) for f in files),
                         ["v1_cost.png", "v1_heatmap_out_rel_err.png"])

    def test_bad_options_name_the_allowed_values(self):
        from lshlab import plot
        path = self.heads_file()
        fig = os.path.join(self.tmp, "fig")
        err = self.usage_error(plot.main, path, "-o", fig, "--n-hashes", "3")
        self.assertIn("--n-hashes: no ok rows with n_hashes = 3; n_hashes: 1, 2", err)
        err = self.usage_error(plot.main, path, "-o", fig, "--n-buckets", "5")
        self.assertIn("n_buckets: 4, 8, 16", err)
        err = self.usage_error(plot.main, path, "-o", fig, "--head-metric", "recall")
        self.assertIn("--head-metric: no numeric column 'recall' in /runs; metrics: "
                      "out_rel_err, mass_recall, density", err)
        err = self.usage_error(plot.main, path, "-o", fig, "--strategy", "rotaton")
        self.assertIn("--strategy: no rows of strategy 'rotaton'; strategies: rotation, kmeans",
                      err)

    def test_bad_version_is_refused(self):
        path = self.write("v3.h5", heads_rows(), version=3)
        rc, files, err, _ = self.plot(path)
        self.assertEqual((rc, files), (1, []))
        self.assertIn("has results format_version 3; this reader reads format_version 1 and 2",
                      err)


if __name__ == "__main__":
    unittest.main()
