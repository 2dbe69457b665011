"""test_plot_rules.py - the Python package and the rules of SPEC 12-14: the reader's
defaults for the candidate-rule key columns (min_collisions, sink, local: 1, 0, 0
when absent) and for /collision's law columns (absent: no law), the oracle columns,
tools/summary leaving out today's rule, and tools/plot's oracle figure (the
strategy and the budget-matched oracle at the same points, same colour), the
collision figure's dashed law lines (p_law, and 1 - (1 - p_law)^H), the fixed
styles of the new strategies and of kmeans balanced, and the note on what failed
or skipped points were left out.  Every expected value is written out below by
hand.  Run by tests/py/run.sh (meson test python)."""

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

try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False

# /runs of format 2 with the rule keys after combine and the oracle columns after
# the metrics they bound (DECISIONS 10, 2).
RULE_FIELDS = [
    ("point_id", "<u8"), ("dataset", "S64"), ("layer", "<i4"), ("head", "<i4"),
    ("strategy", "S64"), ("params", "S256"), ("mode", "S16"), ("chunk_size", "<u4"),
    ("look_back", "<u4"), ("window", "S16"), ("combine", "S16"),
    ("min_collisions", "<u4"), ("sink", "<u4"), ("local", "<u4"), ("n_hashes", "<u4"),
    ("n_buckets", "<u4"), ("repeat", "<u4"), ("seed", "<u8"), ("status", "S16"),
    ("message", "S256"), ("out_rel_err", "<f8"), ("mass_recall", "<f8"),
    ("density", "<f8"), ("oracle_mass_recall", "<f8"), ("oracle_out_rel_err", "<f8"),
    ("eval_seconds", "<f8"), ("oracle_seconds", "<f8"),
]
OLD_FIELDS = [f for f in RULE_FIELDS if f[0] not in ("min_collisions", "sink", "local")
              and not f[0].startswith("oracle")]

# (strategy, params, t, sink, local) x (n_buckets) -> (out_rel_err, mass_recall,
# density, oracle_mass_recall, oracle_out_rel_err): two repeats each, the second
# +0.02 on mass_recall and -0.02 on the oracle's error, so means are +0.01 / -0.01.
POINTS = {
    ("crosspolytope", "k=1,rotations=3", 1, 0, 0): {4: (0.5, 0.40, 0.25, 0.70, 0.30),
                                                    8: (0.7, 0.30, 0.125, 0.60, 0.40)},
    ("crosspolytope", "k=1,rotations=3", 2, 0, 0): {4: (0.6, 0.35, 0.10, 0.55, 0.45),
                                                    8: (0.8, 0.20, 0.05, 0.45, 0.55)},
    ("kmeans", "balanced=true,iterations=3", 1, 0, 0): {4: (0.4, 0.50, 0.25, 0.72, 0.28),
                                                        8: (0.6, 0.42, 0.125, 0.62, 0.38)},
}


def rule_rows(failed=0, skipped=0):
    rows, pid = [], 0
    for (s, p, t, sink, local), by_b in POINTS.items():
        for b, (err, mr, dens, omr, oerr) in by_b.items():
            for r in (0, 1):
                rows.append((pid, b"g", -1, -1, s.encode(), p.encode(), b"bucket", 0, 0,
                             b"n/a", b"union", t, sink, local, 2, b, r, 100 + pid, b"ok", b"",
                             err, mr + 0.02 * r, dens, omr, oerr - 0.02 * r, 0.1, 0.05))
                pid += 1
    for i in range(failed):
        rows.append((pid, b"g", -1, -1, b"smyrf", b"", b"bucket", 0, 0, b"n/a", b"importance",
                     1, 0, 0, 2, 4, i, 100 + pid, b"failed", b"pair (3, 5): u = 0",
                     0, 0, 0, 0, 0, 0, 0))
        pid += 1
    for i in range(skipped):
        rows.append((pid, b"g", -1, -1, b"random", b"", b"bucket", 0, 0, b"n/a", b"union",
                     1, 0, 0, 2, 4, i, 100 + pid, b"skipped", b"n_buckets > rows",
                     0, 0, 0, 0, 0, 0, 0))
        pid += 1
    return rows


# /collision with the law columns (DECISIONS 10, 8).
COLL_FIELDS = [("strategy", "S64"), ("params", "S256"), ("n_buckets", "<u4"),
               ("n_hashes", "<u4"), ("angle", "<f8"), ("pairs", "<u8"), ("seed", "<u8"),
               ("p_round", "<f8"), ("p_round_se", "<f8"), ("p_any", "<f8"),
               ("p_any_se", "<f8"), ("has_law", "u1"), ("p_law", "<f8")]


def collision_rows(with_law=True):
    rows = []
    for s, law in (("hyperplane", True), ("sortlsh", False)):
        for a in (0.0, 60.0, 90.0, 120.0):
            p = (1 - a / 180) ** 2 if law else 0.0  # B = 4: k = 2
            row = (s.encode(), b"", 4, 3, a, 1000, 7, 0.9 * p + 0.01, 0.01, 0.5, 0.01)
            rows.append(row + ((1 if law else 0, p) if with_law else ()))
    return rows


class RuleFiles(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lshlab-rules-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, name, runs=None, fields=RULE_FIELDS, coll=None, coll_fields=COLL_FIELDS):
        path = os.path.join(self.tmp, name)
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "lshlab-results"
            f.attrs["format_version"] = np.int32(2)
            f.attrs["resolved_config"] = "collision:\n  d: 16\n"
            if runs is not None:
                f.create_dataset("runs", data=np.array(runs, dtype=np.dtype(fields)))
            if coll is not None:
                f.create_dataset("collision", data=np.array(coll, dtype=np.dtype(coll_fields)))
        return path


class ReaderRulesTest(RuleFiles):
    def test_rule_keys_absent_read_as_today_rule_after_combine(self):
        old = [tuple(v for (n, _), v in zip(RULE_FIELDS, r) if n in dict(OLD_FIELDS))
               for r in rule_rows()]
        t = lr.read_table(self.write("old.h5", old, OLD_FIELDS), "runs")
        keys = t.keys()
        self.assertEqual(keys[keys.index("combine") + 1:keys.index("combine") + 4],
                         ["min_collisions", "sink", "local"])
        self.assertEqual(set(t["min_collisions"]), {1})
        self.assertEqual(set(t["sink"]), {0})
        self.assertEqual(set(t["local"]), {0})
        self.assertEqual(t["min_collisions"].dtype, np.uint32)
        self.assertEqual(t.rule_filled, {"min_collisions", "sink", "local"})
        self.assertEqual(t.filled, set())  # layer and head are in the file
        self.assertFalse(lr.has_oracle(t))
        self.assertNotIn("min_collisions", t.metrics())

    def test_rule_keys_and_oracle_columns_read_from_the_file(self):
        t = lr.read_table(self.write("new.h5", rule_rows()), "runs")
        self.assertEqual(t.rule_filled, set())
        self.assertEqual(sorted(set(t["min_collisions"])), [1, 2])
        self.assertTrue(lr.has_oracle(t))
        self.assertTrue(lr.has_oracle(t, "out_rel_err"))
        for c in ("oracle_mass_recall", "oracle_out_rel_err", "oracle_seconds"):
            self.assertIn(c, t.metrics())
        self.assertEqual(lr.parse_where(["min_collisions=2"], t), [("min_collisions", 2)])
        with self.assertRaisesRegex(ValueError, "min_collisions has no value '3'; values: 1, 2"):
            lr.parse_where(["min_collisions=3"], t)

    def test_collision_law_columns_absent_read_as_no_law(self):
        t = lr.read_table(self.write("c.h5", coll=collision_rows(False),
                                     coll_fields=COLL_FIELDS[:-2]), "collision")
        self.assertEqual(set(t["has_law"]), {0})
        self.assertEqual(set(t["p_law"]), {0.0})
        self.assertNotIn("p_law", t.order)
        t = lr.read_table(self.write("c2.h5", coll=collision_rows()), "collision")
        self.assertEqual(list(t["has_law"]), [1] * 4 + [0] * 4)

    def test_summary_leaves_out_today_rule_and_groups_by_a_swept_one(self):
        path = self.write("s.h5", rule_rows(failed=1))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = summary.main([path, "--csv", "-m", "mass_recall,oracle_mass_recall"])
        self.assertEqual(rc, 0, err.getvalue())
        got = list(csv.DictReader(io.StringIO(out.getvalue())))
        self.assertIn("min_collisions", got[0])  # swept: 1 and 2
        self.assertNotIn("sink", got[0])  # 0 everywhere: today's rule
        self.assertNotIn("local", got[0])
        first = got[0]
        self.assertEqual((first["strategy"], first["min_collisions"], first["n_buckets"]),
                         ("crosspolytope", "1", "4"))
        self.assertAlmostEqual(float(first["mass_recall"]), 0.41, places=12)
        self.assertIn("1 rows whose status is not ok are left out", err.getvalue())


@unittest.skipUnless(HAVE_MATPLOTLIB, "needs matplotlib")
class PlotRulesTest(RuleFiles):
    def plot(self, path, *argv):
        from lshlab import plot
        out = os.path.join(self.tmp, "fig")
        drawn = {}
        so, se = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
            rc = plot.main([path, "-o", out, "--format", "png", "--dpi", "40"] + list(argv),
                           drawn=drawn)
        return rc, so.getvalue().split(), se.getvalue(), drawn

    def test_every_rule_has_its_own_fixed_colour_and_marker(self):
        from lshlab import plot
        names = ["rotation", "hyperplane", "kmeans", "crosspolytope", "sortlsh", "smyrf",
                 "random", "window"]
        styles = [plot.strategy_style(n) for n in names]
        styles.append(plot.strategy_style("kmeans", "balanced=true,iterations=3"))
        self.assertEqual(len(set(c for c, _ in styles)), 9)
        self.assertEqual(len(set(m for _, m in styles)), 9)
        self.assertEqual(plot.strategy_style("rotation"), ("#0072B2", "o"))  # unchanged
        self.assertEqual(plot.strategy_style("kmeans", "balanced=false,iterations=3"),
                         plot.strategy_style("kmeans"))

    def test_oracle_figure_draws_both_at_the_same_points_in_one_colour(self):
        from lshlab import plot
        path = self.write("o.h5", rule_rows(failed=2, skipped=1))
        rc, files, err, drawn = self.plot(path, "--only", "oracle")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(os.path.basename(f) for f in files),
                         ["o_oracle_mass_recall.png", "o_oracle_out_rel_err.png"])
        lines = drawn["o_oracle_mass_recall"]["lines"]
        self.assertEqual([ln["label"] for ln in lines],
                         ["crosspolytope min_collisions=1", "crosspolytope min_collisions=2",
                          "kmeans min_collisions=1"])
        cp1, cp2, km = lines
        # Points by ascending density, means over the two repeats, worked by hand.
        self.assertEqual(cp1["density"], [0.125, 0.25])
        np.testing.assert_allclose(cp1["value"], [0.31, 0.41], rtol=0, atol=1e-14)
        np.testing.assert_allclose(cp1["oracle"], [0.60, 0.70], rtol=0, atol=1e-14)
        np.testing.assert_allclose(cp2["oracle"], [0.45, 0.55], rtol=0, atol=1e-14)
        self.assertEqual(cp1["colour"], cp2["colour"])
        self.assertNotEqual(cp1["linestyle"], cp2["linestyle"])
        self.assertEqual((km["colour"], km["marker"]),
                         plot.STRATEGY_STYLE["kmeans balanced"])
        e = drawn["o_oracle_out_rel_err"]["lines"][0]
        np.testing.assert_allclose(e["oracle"], [0.39, 0.29], rtol=0, atol=1e-14)
        # The failed and skipped points are said to be left out.
        self.assertIn("3 rows of /runs are not ok", err)

    def test_left_out_points_are_named_in_the_figure(self):
        from lshlab import plot
        runs = lr.read_table(self.write("l.h5", rule_rows(failed=2, skipped=1)), "runs")
        self.assertEqual(plot.left_out_note(runs),
                         "left out: 2 failed points (pair (3, 5): u = 0), 1 skipped point "
                         "(n_buckets > rows)")
        self.assertIsNone(plot.left_out_note(lr.ok_runs(runs)))

    def test_no_oracle_columns_no_oracle_figure_with_the_reason(self):
        old = [tuple(v for (n, _), v in zip(RULE_FIELDS, r) if n in dict(OLD_FIELDS))
               for r in rule_rows()]
        rc, files, err, _ = self.plot(self.write("n.h5", old, OLD_FIELDS), "--only",
                                      "oracle_mass_recall,cost")
        self.assertEqual(rc, 0, err)
        self.assertEqual([os.path.basename(f) for f in files], ["n_cost.png"])
        self.assertIn("no oracle_mass_recall column (runs with attention: {oracle: true})",
                      err)

    def test_where_on_a_rule_key_keeps_one_line(self):
        rc, _, err, drawn = self.plot(self.write("w.h5", rule_rows()), "--only", "oracle",
                                      "--where", "min_collisions=2")
        self.assertEqual(rc, 0, err)
        self.assertEqual([ln["label"] for ln in drawn["w_oracle_mass_recall"]["lines"]],
                         ["crosspolytope"])

    def test_collision_draws_each_published_law_dashed_in_its_colour(self):
        from lshlab import plot
        rc, files, err, drawn = self.plot(self.write("c.h5", coll=collision_rows()))
        self.assertEqual(rc, 0, err)
        rec = drawn["c_collision"]
        self.assertFalse(rec["simhash"])
        self.assertEqual([ln["label"] for ln in rec["laws"]], ["hyperplane"])
        law = rec["laws"][0]
        self.assertEqual(law["colour"], plot.STRATEGY_STYLE["hyperplane"][0])
        self.assertEqual(law["angle"], [0.0, 60.0, 90.0, 120.0])
        np.testing.assert_allclose(law["p"], [1.0, 4 / 9, 0.25, 1 / 9], rtol=1e-14)
        self.assertEqual(rec["no_law"], ["sortlsh"])
        anyl = drawn["c_collision_any"]["laws"][0]  # 1 - (1 - p)^3
        np.testing.assert_allclose(anyl["p"], [1.0, 1 - (5 / 9) ** 3, 1 - 0.75 ** 3,
                                               1 - (8 / 9) ** 3], rtol=1e-14)

    def test_collision_without_law_columns_keeps_simhash_law(self):
        rc, _, err, drawn = self.plot(self.write("c.h5", coll=collision_rows(False),
                                                 coll_fields=COLL_FIELDS[:-2]))
        self.assertEqual(rc, 0, err)
        self.assertTrue(drawn["c_collision"]["simhash"])
        self.assertEqual(drawn["c_collision"]["laws"], [])


if __name__ == "__main__":
    unittest.main()
