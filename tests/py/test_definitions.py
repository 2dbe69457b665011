"""test_definitions.py - docs/definitions.md against the code: the seed recipe
printed in it (its Python block, run as written) against its own known values and
against the seeds lshlab writes, and its tables of root attributes and /runs fields
against a file lshlab writes.  The lshlab parts need LSHLAB_EXE (meson test sets it)."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(SOURCE_ROOT, "docs", "definitions.md")
EXE = os.environ.get("LSHLAB_EXE")

with open(DOC, encoding="utf-8") as f:
    TEXT = f.read()


def section(title):
    """The text of the section whose heading starts with title."""
    m = re.search(r"^#+ " + re.escape(title) + r".*?$(.*?)(?=^#+ )", TEXT, re.M | re.S)
    if not m:
        raise AssertionError(f"docs/definitions.md has no section '{title}'")
    return m.group(1)


def table_rows(text):
    """The cells of a Markdown table's body rows (header and rule skipped)."""
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


def recipe():
    """The functions of the doc's Python block, defined as printed."""
    block = re.search(r"```python\n(.*?)```", section("8. Seeds"), re.S).group(1)
    names = {}
    exec(block, names)  # noqa: S102 - our own documentation
    return names


class SeedRecipeTest(unittest.TestCase):
    def test_recipe_gives_the_known_values_it_lists(self):
        r = recipe()
        self.assertEqual(r["splitmix64"](0)[1], 0xE220A8397B1DCDAF)
        self.assertEqual(r["mix_u64"](0, 0), 12035550249420947055)
        self.assertEqual(r["mix_str"](0, ""), 12035550249420947055)
        self.assertEqual(r["mix_str"](0, "abc"), 5289437080273351086)
        self.assertEqual(r["mix_str"](7, "tokens"), 958959768963603753)
        ps = r["point_seed"](7, "tokens", "rotation", "orthogonal=false,factors=[]", 4, 0)
        self.assertEqual(ps, 3860597692270683945)
        self.assertEqual([r["mix_u64"](ps, h) for h in range(3)],
                         [3511062112856046479, 1907978774026041403, 368900977022685689])
        first = [next(r["stream"](r["mix_u64"](ps, h))) for h in range(3)]
        self.assertEqual(first, [0xA899E85DCAC70713, 0xE3591FE2849FBF20, 0x4C10D08C6DA5ECD0])
        v = next(r["stream"](0))
        self.assertEqual(v, 0x99EC5F36CB75F2B4)
        self.assertEqual((v >> 11) * 2.0 ** -53, 0.60126299941790484)  # uniform()
        # Every number the text quotes is one of these.
        for v in ("0xE220A8397B1DCDAF", "12035550249420947055", "5289437080273351086",
                  "958959768963603753", "3860597692270683945", "3511062112856046479",
                  "0xA899E85DCAC70713", "0x99EC5F36CB75F2B4", "0.60126299941790484"):
            self.assertIn(v, TEXT)

    def test_splitmix64_steps_are_the_published_ones(self):
        # splitmix64 from state 0: the reference implementation's first three outputs.
        r = recipe()
        s, out = 0, []
        for _ in range(3):
            s, z = r["splitmix64"](s)
            out.append(z)
        self.assertEqual(out, [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F])


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
class AgainstLshlabTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lshlab-defs-")
        cls.path = os.path.join(cls.tmp, "seed.h5")
        subprocess.run([EXE, "run", os.path.join(SOURCE_ROOT, "experiments", "configs",
                                                 "seed-example.yaml"),
                        "-o", cls.path, "-q", "-j", "1"], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_seeds_in_the_file_follow_the_recipe(self):
        r = recipe()
        with h5py.File(self.path, "r") as f:
            run = f["runs"][0]
            ds = f["datasets/tokens"]
            self.assertEqual(int(ds.attrs["seed"]), r["mix_str"](7, "tokens"))
            self.assertEqual(int(run["seed"]),
                             r["point_seed"](7, run["dataset"].decode(),
                                             run["strategy"].decode(), run["params"].decode(),
                                             int(run["n_buckets"]), int(run["repeat"])))

    def test_runs_fields_are_the_documented_ones(self):
        want = []
        for name, typ, _ in table_rows(section("`/runs` (sweep)")):
            name = name.strip("`")
            if name == "topk_recall_K":
                name = "topk_recall_1"  # the seed example's topk: [1]
            m = re.fullmatch(r"string, (\d+) bytes", typ)
            numeric = {"int32": "<i4", "uint32": "<u4", "uint64": "<u8", "float64": "<f8"}
            want.append((name, f"S{m.group(1)}" if m else numeric[typ]))
        with h5py.File(self.path, "r") as f:
            dt = f["runs"].dtype
            got = [(n, dt[n].str.lstrip("|")) for n in dt.names]
            self.assertEqual(f["runs"].chunks, (64,))
            self.assertEqual(f["runs"].maxshape, (None,))
        self.assertEqual(got, want)

    def test_root_attributes_are_the_documented_ones(self):
        want = {row[0].strip("`"): row[1] for row in table_rows(section("Root attributes"))}
        with h5py.File(self.path, "r") as f:
            self.assertEqual(set(f.attrs), set(want))
            for name, typ in want.items():
                v = f.attrs[name]
                if typ == "string":
                    self.assertIsInstance(v, str, name)
                else:
                    self.assertEqual(np.asarray(v).dtype, np.int32, name)
            self.assertEqual(f.attrs["format"], "lshlab-results")
            self.assertEqual(int(f.attrs["format_version"]), 2)


if __name__ == "__main__":
    unittest.main()
