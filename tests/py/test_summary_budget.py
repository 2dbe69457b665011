"""test_summary_budget.py - tools/summary --budget DENSITY: for each dataset and rule,
the point with the best metric among those whose mean density is at most DENSITY,
beside the budget-matched oracle.  A hand-made /runs table whose answer is worked
out below by hand: a point's means are per (layer, head) over the repeats, then over
the heads (not pooled over rows); a point whose mean density is over the budget is
out even when one head alone is under it; a density equal to the budget is in;
ties go to the smaller density, then fewer n_hashes; errors rank lowest first and
carry the oracle's error instead of a ratio; rows not ok are left out and counted;
a rule with no point under the budget is listed with its smallest density; the
datasets are kept apart.  Run by tests/py/run.sh (meson test python)."""

import contextlib
import csv
import io
import os
import shutil
import tempfile
import unittest

import h5py
import numpy as np

from lshlab import results as lr
from lshlab import summary

FIELDS = [
    ("point_id", "<u8"), ("dataset", "S64"), ("layer", "<i4"), ("head", "<i4"),
    ("strategy", "S64"), ("params", "S256"), ("mode", "S16"), ("chunk_size", "<u4"),
    ("look_back", "<u4"), ("window", "S16"), ("combine", "S16"),
    ("min_collisions", "<u4"), ("sink", "<u4"), ("local", "<u4"), ("n_hashes", "<u4"),
    ("n_buckets", "<u4"), ("repeat", "<u4"), ("seed", "<u8"), ("status", "S16"),
    ("message", "S256"), ("out_rel_err", "<f8"), ("mass_recall", "<f8"),
    ("density", "<f8"), ("oracle_mass_recall", "<f8"), ("oracle_out_rel_err", "<f8"),
]

KM, KMB = "balanced=false,iterations=3", "balanced=true,iterations=3"

# (dataset, strategy, params, combine, min_collisions, n_hashes, n_buckets, layer,
#  head, repeat, status, mass_recall, density, oracle_mass_recall); out_rel_err is
# 1 - mass_recall and oracle_out_rel_err 1 - oracle_mass_recall.
ROWS = [
    # kmeans balanced=false on d1, budget 0.1:
    #  (1, 8): head 0 density 0.12, head 1 0.10: mean 0.11 > 0.1, out (its 0.95 too).
    ("d1", "kmeans", KM, "union", 1, 1, 8, 0, 0, 0, "ok", 0.95, 0.12, 0.99),
    ("d1", "kmeans", KM, "union", 1, 1, 8, 0, 1, 0, "ok", 0.95, 0.10, 0.99),
    #  (1, 16): head 0 two repeats (mr 0.5, 0.7 -> 0.6; density 0.06), head 1 one
    #  repeat (0.9; density 0.08; its repeat 1 failed): per head 0.6, 0.9 -> 0.75
    #  (pooled over rows it would be 0.7); density 0.07; oracle 0.9, 1.0 -> 0.95
    #  (pooled 0.9333); ratio 0.75 / 0.95.  Errors: 0.4, 0.1 -> 0.25; oracle 0.05.
    ("d1", "kmeans", KM, "union", 1, 1, 16, 0, 0, 0, "ok", 0.5, 0.06, 0.9),
    ("d1", "kmeans", KM, "union", 1, 1, 16, 0, 0, 1, "ok", 0.7, 0.06, 0.9),
    ("d1", "kmeans", KM, "union", 1, 1, 16, 0, 1, 0, "ok", 0.9, 0.08, 1.0),
    ("d1", "kmeans", KM, "union", 1, 1, 16, 0, 1, 1, "failed", 0.0, 0.0, 0.0),
    #  (2, 16): density exactly 0.1 (in), mass_recall 0.7 < 0.75; its error 0.3 >
    #  0.25 (picking the highest error would take this point).
    ("d1", "kmeans", KM, "union", 1, 2, 16, 0, 0, 0, "ok", 0.7, 0.1, 0.8),
    ("d1", "kmeans", KM, "union", 1, 2, 16, 0, 1, 0, "ok", 0.7, 0.1, 0.8),
    # kmeans balanced=true: three points of mass_recall 0.6: (1, 16) at density
    # 0.08, (2, 32) and (1, 32) at 0.05: the tie goes to (1, 32) (fewer n_hashes at
    # the same density); oracle 0.8 there, ratio 0.75.
    ("d1", "kmeans", KMB, "union", 1, 1, 16, 0, 0, 0, "ok", 0.6, 0.08, 0.7),
    ("d1", "kmeans", KMB, "union", 1, 1, 16, 0, 1, 0, "ok", 0.6, 0.08, 0.7),
    ("d1", "kmeans", KMB, "union", 1, 2, 32, 0, 0, 0, "ok", 0.6, 0.05, 0.9),
    ("d1", "kmeans", KMB, "union", 1, 2, 32, 0, 1, 0, "ok", 0.6, 0.05, 0.9),
    ("d1", "kmeans", KMB, "union", 1, 1, 32, 0, 0, 0, "ok", 0.6, 0.05, 0.8),
    ("d1", "kmeans", KMB, "union", 1, 1, 32, 0, 1, 0, "ok", 0.6, 0.05, 0.8),
    # hyperplane min_collisions=1: every point over the budget; smallest density
    # 0.3 at (1, 8).
    ("d1", "hyperplane", "", "union", 1, 2, 8, 0, 0, 0, "ok", 0.99, 0.5, 1.0),
    ("d1", "hyperplane", "", "union", 1, 1, 8, 0, 0, 0, "ok", 0.97, 0.3, 1.0),
    # hyperplane min_collisions=2 (its own rule): 0.8 at density 0.09, oracle 0.8.
    ("d1", "hyperplane", "", "union", 2, 2, 8, 0, 0, 0, "ok", 0.8, 0.09, 0.8),
    # smyrf failed and skipped everywhere: not a rule at all, and its combine
    # (importance) does not make combine vary.
    ("d1", "smyrf", "", "importance", 1, 1, 8, 0, 0, 0, "failed", 0.0, 0.0, 0.0),
    ("d1", "smyrf", "", "importance", 1, 1, 8, 0, 1, 0, "failed", 0.0, 0.0, 0.0),
    ("d1", "smyrf", "", "importance", 1, 1, 16, 0, 0, 0, "skipped", 0.0, 0.0, 0.0),
    # d2: kept apart from d1 (pooled, it would move kmeans balanced=false's means).
    ("d2", "kmeans", KM, "union", 1, 1, 16, -1, -1, 0, "ok", 0.99, 0.02, 1.0),
]


def table_rows():
    out = []
    for pid, (ds, s, p, comb, mc, h, b, layer, head, rep, st, mr, dens, omr) in \
            enumerate(ROWS):
        ok = st == "ok"
        out.append((pid, ds.encode(), layer, head, s.encode(), p.encode(), b"bucket", 0, 0,
                    b"n/a", comb.encode(), mc, 0, 0, h, b, rep, 100 + pid, st.encode(),
                    b"" if ok else b"no", 1 - mr if ok else 0.0, mr, dens,
                    omr, 1 - omr if ok else 0.0))
    return out


class BudgetTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lshlab-budget-")
        self.path = os.path.join(self.tmp, "b.h5")
        with h5py.File(self.path, "w") as f:
            f.attrs["format"] = "lshlab-results"
            f.attrs["format_version"] = np.int32(2)
            f.create_dataset("runs", data=np.array(table_rows(), dtype=np.dtype(FIELDS)))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = summary.main([self.path, *argv])
            except SystemExit as e:
                rc = e.code
        return rc, out.getvalue(), err.getvalue()

    def pick(self, metric="mass_recall", budget=0.1):
        return summary.budget_pick(lr.read_table(self.path, "runs"), budget, metric)

    def test_mass_recall_picks_per_rule_best_first_with_oracle_ratio(self):
        res = self.pick()
        self.assertEqual(res["left_out"], 4)
        got = [(r["dataset"], r["rule"], r["under"], r["n_hashes"], r["n_buckets"])
               for r in res["rows"]]
        self.assertEqual(got, [
            ("d1", "hyperplane min_collisions=2", True, 2, 8),
            ("d1", "kmeans balanced=false min_collisions=1", True, 1, 16),
            ("d1", "kmeans balanced=true min_collisions=1", True, 1, 32),
            ("d1", "hyperplane min_collisions=1", False, 1, 8),
            ("d2", "kmeans balanced=false min_collisions=1", True, 1, 16),
        ])
        hp2, km, kmb, hp1, d2 = res["rows"]
        self.assertAlmostEqual(hp2["value"], 0.8, places=12)
        self.assertAlmostEqual(hp2["ratio"], 1.0, places=12)
        # head means first: 0.75, not the pooled 0.7; oracle 0.95, not 0.9333
        self.assertAlmostEqual(km["value"], 0.75, places=12)
        self.assertAlmostEqual(km["density"], 0.07, places=12)
        self.assertAlmostEqual(km["oracle"], 0.95, places=12)
        self.assertAlmostEqual(km["ratio"], 0.75 / 0.95, places=12)
        self.assertEqual(km["heads"], 2)
        self.assertAlmostEqual(kmb["density"], 0.05, places=12)
        self.assertAlmostEqual(kmb["oracle"], 0.8, places=12)
        self.assertAlmostEqual(kmb["ratio"], 0.75, places=12)
        self.assertIsNone(hp1["value"])
        self.assertAlmostEqual(hp1["density"], 0.3, places=12)
        self.assertAlmostEqual(d2["value"], 0.99, places=12)

    def test_error_metric_ranks_lowest_first_with_oracle_error_not_ratio(self):
        res = self.pick("out_rel_err")
        self.assertFalse(res["higher"])
        self.assertEqual(res["oracle"], "oracle_out_rel_err")
        got = [(r["rule"], r["n_hashes"], r["n_buckets"]) for r in res["rows"]
               if r["dataset"] == "d1"]
        self.assertEqual(got, [("hyperplane min_collisions=2", 2, 8),
                               ("kmeans balanced=false min_collisions=1", 1, 16),
                               ("kmeans balanced=true min_collisions=1", 1, 32),
                               ("hyperplane min_collisions=1", 1, 8)])
        km = res["rows"][1]
        self.assertAlmostEqual(km["value"], 0.25, places=12)
        self.assertAlmostEqual(km["oracle"], 0.05, places=12)
        self.assertIsNone(km["ratio"])

    def test_budget_is_inclusive_and_a_lower_budget_moves_the_pick(self):
        # at 0.06 kmeans balanced=false (0.07, 0.1, 0.11) and hyperplane 2 (0.09): none
        rows = {r["rule"]: r for r in self.pick(budget=0.06)["rows"] if r["dataset"] == "d1"}
        self.assertFalse(rows["kmeans balanced=false min_collisions=1"]["under"])
        self.assertAlmostEqual(rows["kmeans balanced=false min_collisions=1"]["density"], 0.07,
                               places=12)
        self.assertFalse(rows["hyperplane min_collisions=2"]["under"])
        self.assertTrue(rows["kmeans balanced=true min_collisions=1"]["under"])
        # a mean density equal to the budget is under it: hyperplane 2 at 0.09
        rows = {r["rule"]: r for r in self.pick(budget=0.09)["rows"] if r["dataset"] == "d1"}
        self.assertTrue(rows["hyperplane min_collisions=2"]["under"])
        self.assertAlmostEqual(rows["hyperplane min_collisions=2"]["value"], 0.8, places=12)

    def test_cli_text_and_csv(self):
        rc, out, err = self.run_cli("--budget", "0.1")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["dataset", "rule", "n_buckets", "n_hashes",
                                            "density", "mass_recall", "oracle_mass_recall",
                                            "mass_recall/oracle"])
        self.assertRegex(lines[4], r"^d1 +hyperplane min_collisions=1 +8 +1 +0\.3 +"
                                   r"none under budget")
        self.assertIn("# 4 rows whose status is not ok are left out", lines)
        self.assertNotIn("smyrf", out)
        rc, out, err = self.run_cli("--budget", "0.1", "--metric", "out_rel_err", "--csv",
                                    "--where", "dataset=d1")
        self.assertEqual(rc, 0, err)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertNotIn("ratio", got[0])
        self.assertEqual([r["under_budget"] for r in got], ["1", "1", "1", "0"])
        self.assertEqual((got[1]["strategy"], got[1]["params"], got[1]["n_buckets"]),
                         ("kmeans", KM, "16"))
        self.assertAlmostEqual(float(got[1]["out_rel_err"]), 0.25, places=12)
        self.assertAlmostEqual(float(got[1]["oracle_out_rel_err"]), 0.05, places=12)
        self.assertEqual(got[3]["out_rel_err"], "")
        self.assertIn("4 rows whose status is not ok", err)

    def test_cli_rejects_unrankable_metric_and_group_by(self):
        for argv in (["--budget", "0.1", "--metric", "density"],
                     ["--budget", "0.1", "--metric", "nope"],
                     ["--budget", "0.1", "-g", "strategy"],
                     ["--budget", "0"], ["--budget", "1.5"],
                     ["--metric", "mass_recall"]):
            rc, _, err = self.run_cli(*argv)
            self.assertEqual(rc, 2, argv)
            self.assertIn("error", err)


if __name__ == "__main__":
    unittest.main()
