"""test_lshlab.py - unit tests of the Python package tools/py/lshlab: the reader
(str columns and attributes), the statistics (mean and standard error, groups,
Pareto fronts) and tools/summary's numbers, each against hand-made tables and
hand-computed values.  Run by tests/py/run.sh (meson test python)."""

import contextlib
import csv
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

from lshlab import results as lr
from lshlab import summary

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))

# /runs as lshlab writes it: fixed-length, NUL-padded strings (results.c).
RUN_DTYPE = np.dtype([
    ("point_id", "<u8"), ("dataset", "S64"), ("strategy", "S64"), ("params", "S256"),
    ("mode", "S16"), ("chunk_size", "<u4"), ("look_back", "<u4"), ("window", "S16"),
    ("combine", "S16"), ("n_hashes", "<u4"), ("n_buckets", "<u4"), ("repeat", "<u4"),
    ("seed", "<u8"), ("status", "S16"), ("message", "S256"), ("out_rel_err", "<f8"),
    ("mass_recall", "<f8"), ("empty_rows", "<u8"), ("density", "<f8"),
])


def run_row(pid, strategy, n_buckets, n_hashes, repeat, err, recall, density,
            status=b"ok", params=b""):
    return (pid, b"g", strategy, params, b"bucket", 0, 0, b"n/a", b"union", n_hashes,
            n_buckets, repeat, 1000 + pid, status, b"", err, recall, 0, density)


class TempDir(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lshlab-pytest-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def runs_file(self, rows, name="r.h5", extra_attrs=None):
        path = os.path.join(self.tmp, name)
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "lshlab-results"  # variable-length UTF-8, as lshlab writes
            f.attrs["format_version"] = np.int32(1)
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = v
            f.create_dataset("runs", data=np.array(rows, dtype=RUN_DTYPE), maxshape=(None,),
                             chunks=(64,))
        return path


class ReaderTest(TempDir):
    def test_string_columns_and_attributes_are_str(self):
        path = self.runs_file([run_row(0, b"rotation", 8, 1, 0, 0.5, 0.6, 0.1,
                                       params=b"orthogonal=true")],
                              extra_attrs={"host": np.bytes_(b"fixed-length")})
        t = lr.read_table(path, "runs")
        for c in ("dataset", "strategy", "params", "mode", "window", "combine", "status",
                  "message"):
            self.assertTrue(all(type(v) is str for v in t[c]), (c, list(t[c])))
        self.assertEqual(list(t["strategy"]), ["rotation"])
        self.assertEqual(list(t["params"]), ["orthogonal=true"])
        self.assertEqual(list(t["message"]), [""])  # NUL padding is gone
        self.assertEqual(t.attrs["format"], "lshlab-results")
        self.assertIs(type(t.attrs["host"]), str)
        self.assertEqual(t.attrs["host"], "fixed-length")
        self.assertEqual(t.attrs["format_version"], 1)
        # Numbers stay numbers, with their widths.
        self.assertEqual(t["n_buckets"].dtype, np.uint32)
        self.assertEqual(t["seed"].dtype, np.uint64)
        self.assertEqual(t["out_rel_err"][0], 0.5)

    def test_variable_length_string_columns_are_str(self):
        # h5py gives the values of a variable-length string field as bytes.
        path = os.path.join(self.tmp, "vlen.h5")
        dt = np.dtype([("strategy", h5py.string_dtype()), ("p_round", "<f8")])
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "lshlab-results"
            f.attrs["format_version"] = np.int32(1)
            f.create_dataset("collision", data=np.array([("rotation", 0.25), ("kmeans", 0.5)],
                                                        dtype=dt))
            f.attrs["names"] = np.array([b"a", b"b"])
        t = lr.read_table(path, "collision")
        self.assertEqual([type(v) for v in t["strategy"]], [str, str])
        self.assertEqual(list(t["strategy"]), ["rotation", "kmeans"])
        self.assertEqual(t.attrs["names"], ["a", "b"])

    def test_missing_table_is_none(self):
        path = self.runs_file([run_row(0, b"rotation", 8, 1, 0, 0.5, 0.6, 0.1)])
        self.assertIsNone(lr.read_table(path, "collision"))

    def test_keys_metrics_and_ok_rows(self):
        path = self.runs_file([run_row(0, b"rotation", 8, 1, 0, 0.5, 0.6, 0.1),
                               run_row(1, b"hyperplane", 8, 1, 0, 0.0, 0.0, 0.0,
                                       status=b"skipped")])
        t = lr.read_table(path, "runs")
        # A version-1 file: layer and head (version 2) read as -1, after dataset;
        # min_collisions, sink and local (SPEC 13) as 1, 0, 0 after combine.
        self.assertEqual(t.keys(), ["point_id", "dataset", "layer", "head", "strategy",
                                    "params", "mode", "chunk_size", "look_back", "window",
                                    "combine", "min_collisions", "sink", "local",
                                    "n_hashes", "n_buckets", "repeat", "seed",
                                    "status", "message"])
        self.assertEqual(t.metrics(), ["out_rel_err", "mass_recall", "empty_rows", "density"])
        ok = lr.ok_runs(t)
        self.assertEqual(len(ok), 1)
        self.assertEqual(list(ok["strategy"]), ["rotation"])


class StatisticsTest(unittest.TestCase):
    def test_mean_and_standard_error_by_hand(self):
        # mean 0.3; deviations -0.2, -0.1, 0.3: sd^2 = 0.14 / 2 = 0.07, se = sqrt(0.07 / 3)
        m, se = lr.mean_se([0.1, 0.2, 0.6])
        self.assertAlmostEqual(m, 0.3, places=15)
        self.assertAlmostEqual(se, 0.15275252316519466, places=15)
        # Two values: se = |a - b| / 2.
        m, se = lr.mean_se([1.0, 4.0])
        self.assertEqual(m, 2.5)
        self.assertAlmostEqual(se, 1.5, places=15)

    def test_one_value_takes_its_own_se_column(self):
        self.assertEqual(lr.mean_se([0.7], np.array([0.03])), (0.7, 0.03))
        self.assertEqual(lr.mean_se([0.7]), (0.7, None))
        m, se = lr.mean_se([])
        self.assertTrue(math.isnan(m))
        self.assertIsNone(se)

    def test_pareto_front_of_a_hand_made_table(self):
        # cost x, quality y (higher is better).  By cost: 0.05 (0.2) front; 0.1 (0.5)
        # front; 0.2 (0.7) front and 0.2 (0.4) not; 0.3 (0.6) beaten by 0.2 (0.7);
        # 0.4 (0.9) front; 0.5 (0.9) no better than 0.4 (0.9).
        x = [0.1, 0.2, 0.2, 0.3, 0.05, 0.4, 0.5]
        y = [0.5, 0.4, 0.7, 0.6, 0.2, 0.9, 0.9]
        self.assertEqual(lr.pareto_front(x, y), [4, 0, 2, 5])
        self.assertEqual(lr.pareto_front([], []), [])
        self.assertEqual(lr.pareto_front([1.0, 1.0], [0.5, 0.5]), [0])

    def test_groups_order_strings_by_appearance_and_numbers_ascending(self):
        t = lr.Table("runs", {
            "strategy": np.array(["kmeans", "rotation", "kmeans", "rotation"], dtype=object),
            "n_buckets": np.array([16, 8, 8, 16], dtype=np.uint32),
        }, ["strategy", "n_buckets"], {})
        groups = lr.group_rows(t, ["strategy", "n_buckets"])
        self.assertEqual([k for k, _ in groups],
                         [("kmeans", 8), ("kmeans", 16), ("rotation", 8), ("rotation", 16)])
        self.assertEqual([list(i) for _, i in groups], [[2], [0], [1], [3]])
        self.assertEqual([list(i) for _, i in lr.group_rows(t, [])], [[0, 1, 2, 3]])

    def test_split_params_keeps_lists_whole(self):
        self.assertEqual(lr.split_params("factors=[2,4],orthogonal=true"),
                         [("factors", "[2,4]"), ("orthogonal", "true")])
        self.assertEqual(lr.split_params(""), [])


class SummaryTest(TempDir):
    def summary(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = summary.main(list(argv))
        return rc, out.getvalue(), err.getvalue()

    def test_mean_and_se_over_repeats(self):
        rows = [
            run_row(0, b"rotation", 8, 1, 0, 0.50, 0.60, 0.10),
            run_row(1, b"rotation", 8, 1, 1, 0.70, 0.64, 0.12),
            run_row(2, b"rotation", 8, 1, 2, 0.30, 0.62, 0.14),
            run_row(3, b"kmeans", 8, 1, 0, 0.20, 0.90, 0.20),
            run_row(4, b"kmeans", 8, 1, 1, 0.40, 0.80, 0.30),
            run_row(5, b"kmeans", 8, 1, 2, 9.99, 9.99, 9.99, status=b"failed"),
        ]
        rc, out, err = self.summary(self.runs_file(rows), "--group-by", "strategy",
                                    "--metrics", "out_rel_err,density", "--csv")
        self.assertEqual(rc, 0)
        self.assertIn("1 rows whose status is not ok", err)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(list(got[0]), ["strategy", "n", "out_rel_err", "out_rel_err_se",
                                        "density", "density_se"])
        self.assertEqual([r["strategy"] for r in got], ["rotation", "kmeans"])
        rot, km = got
        # rotation: out_rel_err 0.5, 0.7, 0.3 -> mean 0.5, sd 0.2, se 0.2 / sqrt(3)
        self.assertEqual(rot["n"], "3")
        self.assertAlmostEqual(float(rot["out_rel_err"]), 0.5, places=14)
        self.assertAlmostEqual(float(rot["out_rel_err_se"]), 0.2 / math.sqrt(3), places=14)
        # density 0.10, 0.12, 0.14 -> mean 0.12, sd 0.02, se 0.02 / sqrt(3)
        self.assertAlmostEqual(float(rot["density"]), 0.12, places=14)
        self.assertAlmostEqual(float(rot["density_se"]), 0.02 / math.sqrt(3), places=14)
        # kmeans: the failed row is left out; 0.2, 0.4 -> mean 0.3, se 0.1
        self.assertEqual(km["n"], "2")
        self.assertAlmostEqual(float(km["out_rel_err"]), 0.3, places=14)
        self.assertAlmostEqual(float(km["out_rel_err_se"]), 0.1, places=14)
        self.assertAlmostEqual(float(km["density_se"]), 0.05, places=14)

    def test_aligned_table_shows_mean_plus_minus_se(self):
        rows = [run_row(0, b"rotation", 8, 1, 0, 0.25, 0.6, 0.1),
                run_row(1, b"rotation", 8, 1, 1, 0.75, 0.6, 0.1)]
        rc, out, _ = self.summary(self.runs_file(rows), "-g", "strategy", "-m", "out_rel_err")
        self.assertEqual(rc, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["strategy", "n", "out_rel_err"])
        self.assertEqual(lines[1].split(), ["rotation", "2", "0.5", "±", "0.25"])

    def test_default_groups_average_over_repeats(self):
        rows = [run_row(0, b"rotation", 8, 1, 0, 0.2, 0.6, 0.1),
                run_row(1, b"rotation", 8, 1, 1, 0.4, 0.6, 0.1),
                run_row(2, b"rotation", 16, 1, 0, 0.1, 0.6, 0.1)]
        rc, out, _ = self.summary(self.runs_file(rows), "--csv", "-m", "out_rel_err")
        self.assertEqual(rc, 0)
        got = list(csv.DictReader(io.StringIO(out)))
        self.assertNotIn("repeat", got[0])
        self.assertNotIn("seed", got[0])
        self.assertEqual([(r["n_buckets"], r["n"]) for r in got], [("8", "2"), ("16", "1")])
        self.assertAlmostEqual(float(got[0]["out_rel_err"]), 0.3, places=14)
        self.assertEqual(got[1]["out_rel_err_se"], "")  # one row, no X_se column

    def test_unknown_column_is_a_usage_error(self):
        path = self.runs_file([run_row(0, b"rotation", 8, 1, 0, 0.5, 0.6, 0.1)])
        for argv in (["--group-by", "stratgy"], ["--metrics", "nope"]):
            with self.assertRaises(SystemExit) as cm:
                self.summary(path, *argv)
            self.assertEqual(cm.exception.code, 2)

    def test_unreadable_file_exits_1(self):
        rc, _, err = self.summary(os.path.join(self.tmp, "missing.h5"))
        self.assertEqual(rc, 1)
        self.assertIn("cannot read", err)


class PackageTest(TempDir):
    def test_importing_leaves_sys_path_alone(self):
        code = ("import sys; before = list(sys.path); import lshlab.results, lshlab.summary; "
                "sys.exit(0 if sys.path == before else 1)")
        subprocess.run([sys.executable, "-c", code], check=True)

    @unittest.skipUnless(sys.version_info >= (3, 11), "PYTHONSAFEPATH needs Python 3.11")
    def test_launcher_ignores_a_folder_named_lshlab_in_the_current_folder(self):
        path = self.runs_file([run_row(0, b"rotation", 8, 1, 0, 0.5, 0.6, 0.1)])
        decoy = os.path.join(self.tmp, "lshlab")
        os.mkdir(decoy)
        with open(os.path.join(decoy, "__init__.py"), "w") as f:
            f.write("raise SystemExit('the decoy package was imported')\n")
        env = dict(os.environ, LSHLAB_PYTHON=sys.executable)
        env.pop("PYTHONPATH", None)
        p = subprocess.run([os.path.join(SOURCE_ROOT, "tools", "summary"), path, "--csv",
                            "-g", "strategy", "-m", "out_rel_err"], cwd=self.tmp, env=env,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[1], "rotation,1,0.5,")


try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


@unittest.skipUnless(HAVE_MATPLOTLIB, "needs matplotlib")
class PlotTest(TempDir):
    def test_series_labels_name_only_what_varies(self):
        from lshlab import plot
        t = lr.Table("runs", {
            "strategy": np.array(["rotation", "rotation", "kmeans"], dtype=object),
            "params": np.array(["factors=[],orthogonal=false", "factors=[],orthogonal=true",
                                "init=random,iterations=10"], dtype=object),
            "mode": np.array(["bucket"] * 3, dtype=object),
            "combine": np.array(["union", "rounds", "union"], dtype=object),
        }, ["strategy", "params", "mode", "combine"], {})
        cols, series = plot.build_series(t, ["strategy", "params", "mode", "combine"])
        self.assertEqual(cols, ["strategy", "params", "mode", "combine"])
        self.assertEqual(sorted(s.label for s in series.values()),
                         ["kmeans combine=union", "rotation orthogonal=false combine=union",
                          "rotation orthogonal=true combine=rounds"])

    def test_cost_figure_written(self):
        from lshlab import plot
        rows = [run_row(i, s, b, h, 0, 0.5, 0.1 * h, 0.01 * h * b)
                for i, (s, b, h) in enumerate((s, b, h) for s in (b"rotation", b"kmeans")
                                              for b in (4, 8) for h in (1, 2))]
        path = self.runs_file(rows)
        out = os.path.join(self.tmp, "fig")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = plot.main([path, "-o", out, "--only", "cost", "--format", "png"])
        self.assertEqual(rc, 0)
        self.assertEqual(buf.getvalue().split(), [os.path.join(out, "r_cost.png")])
        with open(os.path.join(out, "r_cost.png"), "rb") as f:
            self.assertEqual(f.read(4), b"\x89PNG")


if __name__ == "__main__":
    unittest.main()
