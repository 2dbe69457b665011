"""test_reader_layouts.py - the layouts researchers dump heads in, read by lshlab's
tensor reader (docs/definitions.md section 2.1): per-layer files of [heads, n, d] (a
template with only {layer}), in .npy and in HDF5, must give exactly the data of the
same values stored as one [layers, heads, n, d] array.  The values are made here with
numpy and compared with what `lshlab run` dumps (dump: [data]).  Needs LSHLAB_EXE
(meson test sets it)."""

import os
import shutil
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

EXE = os.environ.get("LSHLAB_EXE")

L, H, HKV, N, D = 2, 4, 2, 12, 5


def config(name, kind, q, k, v, extra=""):
    file_line = "    file: data.h5\n" if kind == "hdf5" else ""
    return f"""name: {name}
seed: 3
datasets:
  - name: m
    kind: {kind}
{file_line}    q: {q}
    k: {k}
    v: {v}
{extra}attention: {{keys: separate, causal: true}}
strategies:
  - name: hyperplane
sweep:
  n_buckets: [2]
dump: [data]
"""


@unittest.skipUnless(EXE, "needs LSHLAB_EXE (run through meson test)")
class PerLayerFilesTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lshlab-layouts-")
        rng = np.random.default_rng(5)
        # float16 values, so every layout stores them exactly
        self.q = rng.standard_normal((L, H, N, D)).astype(np.float16)
        self.k = rng.standard_normal((L, HKV, N, D)).astype(np.float16)
        self.v = rng.standard_normal((L, HKV, N, 3)).astype(np.float16)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_config(self, text, expect=0):
        path = os.path.join(self.dir, "c.yaml")
        with open(path, "w") as f:
            f.write(text)
        out = os.path.join(self.dir, "out.h5")
        if os.path.exists(out):
            os.remove(out)
        p = subprocess.run([EXE, "run", path, "-o", out, "-q", "-j", "1"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, expect, p.stdout + p.stderr)
        return out, p.stdout + p.stderr

    def dumped(self, out):
        got = {}
        with h5py.File(out, "r") as f:
            for l in range(L):
                for h in range(H):
                    g = f[f"datasets/m/layer{l}/head{h}"]
                    got[(l, h)] = (g["Q"][()], g["K"][()], g["V"][()])
        return got

    def check(self, got):
        for (l, h), (q, k, v) in got.items():
            kv = h * HKV // H  # grouped-query: query head h reads kv head h*H_kv/H_q
            np.testing.assert_array_equal(q, self.q[l, h].astype(np.float64))
            np.testing.assert_array_equal(k, self.k[l, kv].astype(np.float64))
            np.testing.assert_array_equal(v, self.v[l, kv].astype(np.float64))

    def test_npy_per_layer_files_of_heads_read_as_the_rank4_array(self):
        for l in range(L):
            np.save(os.path.join(self.dir, f"q_{l}.npy"), self.q[l].astype(">f4"))
            np.save(os.path.join(self.dir, f"k_{l}.npy"), self.k[l])
            np.save(os.path.join(self.dir, f"v_{l}.npy"), self.v[l].astype("<f8"))
        out, _ = self.run_config(config("t", "npy", "q_{layer}.npy", "k_{layer}.npy",
                                        "v_{layer}.npy"))
        self.check(self.dumped(out))
        # the same values as rank-4 arrays give the same rows, metrics and all
        for name, a in (("q", self.q), ("k", self.k), ("v", self.v)):
            np.save(os.path.join(self.dir, f"{name}4.npy"), a)
        with h5py.File(out, "r") as f:
            runs_per_layer = f["runs"][()]
        out4, _ = self.run_config(config("t", "npy", "q4.npy", "k4.npy", "v4.npy"))
        self.check(self.dumped(out4))
        with h5py.File(out4, "r") as f:
            runs4 = f["runs"][()]
        for col in ("layer", "head", "seed", "out_rel_err", "mass_recall", "density"):
            np.testing.assert_array_equal(np.sort(runs_per_layer, order="point_id")[col],
                                          np.sort(runs4, order="point_id")[col], col)

    def test_hdf5_per_layer_datasets_of_heads_and_a_layer_selection(self):
        with h5py.File(os.path.join(self.dir, "data.h5"), "w") as f:
            for l in range(L):
                f[f"layer{l}/q"] = self.q[l].astype("<f2")
                f[f"layer{l}/k"] = self.k[l].astype(">f8")
                f[f"layer{l}/v"] = self.v[l].astype("<f4")
        out, _ = self.run_config(config("t", "hdf5", "/layer{layer}/q", "/layer{layer}/k",
                                        "/layer{layer}/v"))
        self.check(self.dumped(out))
        extra = "    layers: [1]\n    heads: [3]\n"
        out, _ = self.run_config(config("t", "hdf5", "/layer{layer}/q", "/layer{layer}/k",
                                        "/layer{layer}/v", extra))
        with h5py.File(out, "r") as f:
            self.assertEqual(sorted(f["datasets/m"].keys()), ["layer1"])
            runs = f["runs"][()]
            np.testing.assert_array_equal(f["datasets/m/layer1/head3/K"][()],
                                          self.k[1, 1].astype(np.float64))
        self.assertEqual(set(zip(runs["layer"], runs["head"])), {(1, 3)})

    def test_per_layer_files_of_different_shapes_are_refused_naming_both(self):
        np.save(os.path.join(self.dir, "q_0.npy"), self.q[0])
        np.save(os.path.join(self.dir, "q_1.npy"), self.q[1, :3])  # 3 heads, not 4
        np.save(os.path.join(self.dir, "k_0.npy"), self.k[0])
        np.save(os.path.join(self.dir, "k_1.npy"), self.k[1])
        np.save(os.path.join(self.dir, "v_0.npy"), self.v[0])
        np.save(os.path.join(self.dir, "v_1.npy"), self.v[1])
        _, said = self.run_config(config("t", "npy", "q_{layer}.npy", "k_{layer}.npy",
                                         "v_{layer}.npy"), expect=3)
        self.assertIn("q_1.npy", said)
        self.assertIn("3 x 12 x 5", said)
        self.assertIn("4 x 12 x 5", said)


if __name__ == "__main__":
    unittest.main()
