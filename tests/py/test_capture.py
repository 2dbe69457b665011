"""test_capture.py - the capture tool (lshlab.capture) on tiny randomly
initialised models built here, one per shape found in practice (separate q/k/v
projections with rotary and grouped-query attention, a fused qkv projection,
nn.MultiheadAttention): the captured tensors against the test's own numpy
computation from the weights, the file layout, and the self-check failing when
it should.  Also the shipped file experiments/data/tinylm.h5 (layout and
attributes, without torch).  Run by tests/py/run.sh (meson test python)."""

import os
import sys
import tempfile
import unittest

import h5py
import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    torch = None

try:
    import transformers
except ImportError:
    transformers = None

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
SHIPPED = os.path.join(SOURCE_ROOT, "experiments", "data", "tinylm.h5")

NO_TORCH = "torch is not installed (apt-get install python3-torch)"


def np_rotary(x, pos):
    """Llama's rotary convention, written again in numpy: x [H, n, d]."""
    d = x.shape[-1]
    inv = 1.0 / (10000.0 ** (np.arange(0, d, 2) / d))
    ang = np.outer(pos, inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def np_softmax_rows(s):
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


if torch is not None:
    def rope(q, k, pos):
        """The test model's own rotary function (a module global capture wraps)."""
        d = q.shape[-1]
        inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        ang = torch.outer(pos.float(), inv)
        ang = torch.cat([ang, ang], -1)
        cos, sin = ang.cos(), ang.sin()
        half = lambda x: torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
        return q * cos + half(q) * sin, k * cos + half(k) * sin

    class LlamaLikeAttention(nn.Module):
        """Separate projections, rotary, grouped-query attention (H_q 4, H_kv 2)."""

        def __init__(self, D=24, H=4, Hkv=2):
            super().__init__()
            self.H, self.Hkv, self.d = H, Hkv, D // H
            self.q_proj = nn.Linear(D, H * self.d, bias=False)
            self.k_proj = nn.Linear(D, Hkv * self.d, bias=False)
            self.v_proj = nn.Linear(D, Hkv * self.d, bias=False)
            self.scaling = 0.7 / self.d ** 0.5   # not 1/sqrt(d): the model's own scale

        def forward(self, x):
            B, n, _ = x.shape
            sp = lambda t, h: t.view(B, n, h, self.d).transpose(1, 2)
            q, k, v = sp(self.q_proj(x), self.H), sp(self.k_proj(x), self.Hkv), sp(self.v_proj(x), self.Hkv)
            q, k = sys.modules[__name__].rope(q, k, torch.arange(n))
            rep = self.H // self.Hkv
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            s = q @ k.transpose(-1, -2) * self.scaling
            s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            p = F.softmax(s, dim=-1)
            return (p @ v).transpose(1, 2).reshape(B, n, -1)

    class GPT2LikeAttention(nn.Module):
        """One fused projection c_attn -> [q | k | v], no rotary, causal."""

        def __init__(self, D=24, H=3):
            super().__init__()
            self.H, self.d = H, D // H
            self.c_attn = nn.Linear(D, 3 * D)

        def forward(self, x):
            B, n, D = x.shape
            q, k, v = self.c_attn(x).split(D, dim=-1)
            sp = lambda t: t.view(B, n, self.H, self.d).transpose(1, 2)
            q, k, v = sp(q), sp(k), sp(v)
            s = q @ k.transpose(-1, -2) / self.d ** 0.5
            s = s + torch.full((n, n), float("-inf")).triu(1)
            p = torch.softmax(s, dim=-1)
            return (p @ v).transpose(1, 2).reshape(B, n, D)

    class MHABlock(nn.Module):
        def __init__(self, D=24, H=4, batch_first=False):
            super().__init__()
            self.bf = batch_first
            self.mha = nn.MultiheadAttention(D, H, batch_first=batch_first)

        def forward(self, x):
            n = x.shape[1]
            y = x if self.bf else x.transpose(0, 1)
            mask = torch.ones(n, n, dtype=torch.bool).triu(1)
            out, _ = self.mha(y, y, y, attn_mask=mask)
            return out if self.bf else out.transpose(0, 1)

    class Toy(nn.Module):
        def __init__(self, make, layers=2, D=24):
            super().__init__()
            torch.manual_seed(7)
            self.embed = nn.Embedding(50, D)
            self.layers = nn.ModuleList(make() for _ in range(layers))
            for p in self.parameters():   # larger weights: peaked, non-trivial softmax
                nn.init.normal_(p, std=0.6)

        def forward(self, ids):
            x = self.embed(ids)
            for m in self.layers:
                x = x + m(x)
            return x


@unittest.skipIf(torch is None, NO_TORCH)
class CaptureShapes(unittest.TestCase):
    n = 19

    def setUp(self):
        from lshlab import capture
        self.capture = capture
        self.tmp = tempfile.mkdtemp()
        torch.manual_seed(3)
        self.ids = torch.randint(0, 50, (1, self.n))

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp)

    def run_capture(self, model, spec, dtype="float32"):
        out = os.path.join(self.tmp, "c.h5")
        logs = []
        rc = self.capture.capture_to_file(model.eval(), spec, self.ids, out, "toy", "some text",
                                          dtype=dtype, log=logs.append)
        return rc, out, logs

    def layer_input(self, model, L):
        """The input x of layer L, computed here from the weights."""
        with torch.no_grad():
            x = model.embed(self.ids)
            for m in model.layers[:L]:
                x = x + m(x)
        return x[0].double().numpy()

    def test_separate_projections_with_rotary_and_gqa_match_numpy(self):
        model = Toy(LlamaLikeAttention)
        spec = self.capture.AttentionSpec("layers.{layer}", "separate", heads=4, kv_heads=2,
                                          head_dim=6, rotary=(sys.modules[__name__], "rope"),
                                          causal=True)
        rc, out, logs = self.run_capture(model, spec)
        self.assertEqual(rc, 0, logs)
        with h5py.File(out, "r") as f:
            self.assertAlmostEqual(float(f.attrs["scale"]), 0.7 / 6 ** 0.5, places=12)
            self.assertEqual(int(f.attrs["causal"]), 1)
            self.assertEqual(list(f.attrs["positions"]), list(range(self.n)))
            self.assertEqual(f.attrs["model"], "toy")
            self.assertEqual(f.attrs["text"], "some text")
            for L in range(2):
                x = self.layer_input(model, L)
                a = model.layers[L]
                wq = a.q_proj.weight.detach().double().numpy()
                wk = a.k_proj.weight.detach().double().numpy()
                wv = a.v_proj.weight.detach().double().numpy()
                q = np_rotary((x @ wq.T).reshape(self.n, 4, 6).transpose(1, 0, 2), np.arange(self.n))
                k = np_rotary((x @ wk.T).reshape(self.n, 2, 6).transpose(1, 0, 2), np.arange(self.n))
                v = (x @ wv.T).reshape(self.n, 2, 6).transpose(1, 0, 2)
                for h in range(4):
                    g = f[f"layer{L}/head{h}"]
                    np.testing.assert_allclose(g["q"][...], q[h], rtol=1e-4, atol=1e-4)
                    if h < 2:
                        self.assertEqual(g["k"].shape, (self.n, 6))
                        self.assertEqual(g["k"].dtype, np.float32)
                        np.testing.assert_allclose(g["k"][...], k[h], rtol=1e-4, atol=1e-4)
                        np.testing.assert_allclose(g["v"][...], v[h], rtol=1e-4, atol=1e-4)
                    else:
                        self.assertNotIn("k", g)   # GQA: key/value heads only
                        self.assertNotIn("v", g)
            self.assertNotIn("layer2", f)
            self.assertEqual(int(f.attrs["kv_heads"]), 2)

    def test_separate_without_rotary_fails_the_self_check(self):
        model = Toy(LlamaLikeAttention)
        spec = self.capture.AttentionSpec("layers.{layer}", "separate", heads=4, kv_heads=2,
                                          head_dim=6, causal=True)
        rc, out, logs = self.run_capture(model, spec)
        self.assertEqual(rc, 1)
        self.assertFalse(os.path.exists(out))
        self.assertTrue(any("FAILED" in m for m in logs), logs)

    def test_fused_qkv_matches_numpy_and_a_wrong_scale_fails(self):
        model = Toy(lambda: GPT2LikeAttention(24, 3))
        spec = self.capture.AttentionSpec("layers.{layer}", "fused", qkv="c_attn", heads=3,
                                          head_dim=8, causal=True)
        rc, out, logs = self.run_capture(model, spec)
        self.assertEqual(rc, 0, logs)
        with h5py.File(out, "r") as f:
            self.assertAlmostEqual(float(f.attrs["scale"]), 8 ** -0.5, places=12)
            x = self.layer_input(model, 1)
            w = model.layers[1].c_attn.weight.detach().double().numpy()
            b = model.layers[1].c_attn.bias.detach().double().numpy()
            y = x @ w.T + b
            for h in range(3):
                for j, name in enumerate("qkv"):
                    np.testing.assert_allclose(f[f"layer1/head{h}/{name}"][...],
                                               y[:, 24 * j + 8 * h:24 * j + 8 * h + 8], rtol=1e-4, atol=1e-4)
        spec.scale = 0.9 * 8 ** -0.5
        rc, _, logs = self.run_capture(model, spec)
        self.assertEqual(rc, 1, logs)

    def test_fused_not_causal_fails_the_self_check(self):
        model = Toy(lambda: GPT2LikeAttention(24, 3))
        spec = self.capture.AttentionSpec("layers.{layer}", "fused", qkv="c_attn", heads=3,
                                          head_dim=8, causal=False)
        self.assertEqual(self.run_capture(model, spec)[0], 1)

    def test_multihead_attention_both_layouts_match_numpy(self):
        for bf in (False, True):
            with self.subTest(batch_first=bf):
                model = Toy(lambda: MHABlock(24, 4, bf))
                spec = self.capture.AttentionSpec("layers.{layer}.mha", "mha", causal=True)
                rc, out, logs = self.run_capture(model, spec, dtype="float16")
                self.assertEqual(rc, 0, logs)
                with h5py.File(out, "r") as f:
                    self.assertAlmostEqual(float(f.attrs["scale"]), 6 ** -0.5, places=12)
                    self.assertEqual(f["layer0/head3/v"].dtype, np.float16)
                    x = self.layer_input(model, 0)
                    w = model.layers[0].mha.in_proj_weight.detach().double().numpy()
                    b = model.layers[0].mha.in_proj_bias.detach().double().numpy()
                    q = x @ w[:24].T + b[:24]
                    k = x @ w[24:48].T + b[24:48]
                    for h in range(4):
                        np.testing.assert_allclose(f[f"layer0/head{h}/q"][...], q[:, 6 * h:6 * h + 6],
                                                   rtol=2e-3, atol=2e-3)
                        np.testing.assert_allclose(f[f"layer0/head{h}/k"][...], k[:, 6 * h:6 * h + 6],
                                                   rtol=2e-3, atol=2e-3)

    def test_recompute_against_a_hand_worked_example(self):
        # 2 keys, causal, scale 0.5: row 0 sees key 0 only; row 1 has scores
        # (0.5*2 + 2*1)*0.5 = 1.5 and (0.5*0 + 2*1)*0.5 = 1.0.
        q = np.array([[1.0, 0.0], [0.5, 2.0]])
        k = np.array([[2.0, 1.0], [0.0, 1.0]])
        p = self.capture.recompute(q, k, 0.5, True)
        p1 = 1.0 / (1.0 + np.exp(-0.5))
        np.testing.assert_allclose(p, [[1.0, 0.0], [p1, 1.0 - p1]], rtol=1e-14)

    def test_capture_command_line_help(self):
        import subprocess
        r = subprocess.run([os.path.join(SOURCE_ROOT, "tools", "capture"), "--help"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--factory", r.stdout)


@unittest.skipIf(torch is None, NO_TORCH)
@unittest.skipIf(transformers is None, "transformers is not installed (not a Debian 12 package)")
class CaptureHuggingFace(unittest.TestCase):
    def test_tiny_random_llama_and_gpt2(self):
        from lshlab import capture
        cfgs = [transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2),
                transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4)]
        for cfg in cfgs:
            with self.subTest(model=type(cfg).__name__):
                torch.manual_seed(0)
                cfg._attn_implementation = "eager"
                model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
                spec = capture.hf_spec(model)
                cap = capture.capture(model, spec, torch.randint(0, 64, (1, 17)))
                self.assertLessEqual(cap.max_err, cap.tolerance)
                self.assertEqual(len(cap.q), 2)


class ShippedFile(unittest.TestCase):
    """experiments/data/tinylm.h5: the layout and attributes the tools rely on."""

    def test_layout_and_attributes(self):
        if not os.path.exists(SHIPPED):
            self.skipTest(f"{SHIPPED} is not there")
        self.assertLessEqual(os.path.getsize(SHIPPED), 8 * 1024 * 1024)
        with h5py.File(SHIPPED, "r") as f:
            a = f.attrs
            for key in ("model", "text", "positions", "scale", "causal", "command", "val_loss",
                        "corpus_sha256", "git_commit", "train_seconds", "torch_version"):
                self.assertIn(key, a)
            n = len(a["positions"])
            self.assertGreaterEqual(n, 1024)
            self.assertEqual(list(a["positions"]), list(range(n)))
            self.assertEqual(int(a["causal"]), 1)
            self.assertEqual(len(a["corpus_sha256"]), 64)
            L, H = int(a["layers"]), int(a["heads"])
            self.assertGreaterEqual(L, 2)
            self.assertEqual(H, 4)
            d = f["layer0/head0/q"].shape[1]
            self.assertAlmostEqual(float(a["scale"]), d ** -0.5, places=6)
            for layer in range(L):
                for h in range(H):
                    for name in "qkv":
                        ds = f[f"layer{layer}/head{h}/{name}"]
                        self.assertEqual(ds.shape, (n, d))
                        self.assertEqual(ds.dtype, np.float16)
                        self.assertTrue(np.all(np.isfinite(ds[...])))
            self.assertNotIn(f"layer{L}", f)
            # The heads are learned: causal softmax of layer 0 head 0 is not uniform.
            q = f["layer0/head0/q"][...].astype(np.float64)
            k = f["layer0/head0/k"][...].astype(np.float64)
            s = q @ k.T * float(a["scale"])
            s[np.triu_indices(n, 1)] = -np.inf
            p = np_softmax_rows(s)
            self.assertGreater(np.mean(p.max(axis=1)), 0.2)


if __name__ == "__main__":
    unittest.main()
