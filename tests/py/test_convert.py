"""test_convert.py - tools/convert (lshlab.convert) on hand-made .npz,
.safetensors (bytes written here, byte by byte) and .pt files: the values in
the HDF5 layout against numpy, each rank and template, grouped-query heads,
bfloat16, and every error path (bad header, truncated, bad dtype, overlapping
and out-of-range offsets, bad shapes).  Run by tests/py/run.sh."""

import contextlib
import io
import json
import os
import shutil
import struct
import tempfile
import unittest

import h5py
import numpy as np

from lshlab import convert

try:
    import torch
except ImportError:
    torch = None


def safetensors_bytes(tensors, header_extra=None, raw_header=None):
    """A .safetensors file from {name: (dtype string, shape, bytes)}, laid out in
    order; header_extra overrides header fields per name."""
    hdr, data = {}, b""
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    for name, fields in (header_extra or {}).items():
        hdr.setdefault(name, {}).update(fields)
    h = raw_header if raw_header is not None else json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + data


class ConvertBase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.rng = np.random.default_rng(11)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run_convert(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = convert.main([str(a) for a in args])
            except SystemExit as e:
                rc = e.code
        return rc, out.getvalue(), err.getvalue()

    def convert_ok(self, *args):
        rc, out, err = self.run_convert(*args)
        self.assertEqual(rc, 0, err)
        return h5py.File(self.path("o.h5"), "r")

    def convert_fails(self, *args, says=()):
        rc, out, err = self.run_convert(*args)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("convert: error:", err)
        for s in says:
            self.assertIn(s, err)
        self.assertFalse(os.path.exists(self.path("o.h5")))
        return err


class ConvertNpz(ConvertBase):
    def test_rank4_float64_values_and_attributes(self):
        q = self.rng.normal(size=(2, 3, 7, 5)) * 2.385
        k = self.rng.normal(size=(2, 3, 7, 5))
        v = self.rng.normal(size=(2, 3, 7, 4))
        np.savez(self.path("a.npz"), q=q, k=k, v=v)
        with self.convert_ok(self.path("a.npz"), "-o", self.path("o.h5"), "--causal", "0",
                             "--model", "m", "--text", "t") as f:
            self.assertEqual(int(f.attrs["layers"]), 2)
            self.assertAlmostEqual(float(f.attrs["scale"]), 5 ** -0.5, places=14)
            self.assertEqual(int(f.attrs["causal"]), 0)
            self.assertEqual(list(f.attrs["positions"]), list(range(7)))
            self.assertEqual((f.attrs["model"], f.attrs["text"]), ("m", "t"))
            for L in range(2):
                for h in range(3):
                    np.testing.assert_array_equal(f[f"layer{L}/head{h}/q"][...], q[L, h].astype(np.float32))
                    np.testing.assert_array_equal(f[f"layer{L}/head{h}/v"][...], v[L, h].astype(np.float32))
            self.assertNotIn("layer2", f)

    def test_rank3_big_endian_float16_out_and_scale(self):
        q = self.rng.normal(size=(2, 6, 4)).astype(">f4")
        k = self.rng.normal(size=(2, 6, 4)).astype(">f2")
        np.savez(self.path("b.npz"), Q=q, K=k, V=q)
        with self.convert_ok(self.path("b.npz"), "--q", "Q", "--k", "K", "--v", "V", "--scale", "0.3",
                             "--dtype", "float16", "-o", self.path("o.h5")) as f:
            self.assertEqual(f["layer0/head1/k"].dtype, np.float16)
            np.testing.assert_array_equal(f["layer0/head1/k"][...], k[1].astype(np.float16))
            np.testing.assert_array_equal(f["layer0/head0/q"][...], q[0].astype(np.float16))
            self.assertEqual(float(f.attrs["scale"]), 0.3)

    def test_rank2_is_one_layer_one_head(self):
        q = self.rng.normal(size=(5, 3))
        np.savez(self.path("c.npz"), q=q, k=q[::-1], v=q)
        with self.convert_ok(self.path("c.npz"), "-o", self.path("o.h5")) as f:
            np.testing.assert_array_equal(f["layer0/head0/k"][...], q[::-1].astype(np.float32))
            self.assertEqual(int(f.attrs["heads"]), 1)

    def test_templates_with_grouped_query_heads(self):
        arrs = {}
        for L in range(2):
            for h in range(4):
                arrs[f"l{L}.h{h}.q"] = self.rng.normal(size=(6, 3))
            for h in range(2):
                arrs[f"l{L}.h{h}.k"] = self.rng.normal(size=(6, 3))
                arrs[f"l{L}.h{h}.v"] = self.rng.normal(size=(6, 3))
        np.savez(self.path("t.npz"), **arrs)
        with self.convert_ok(self.path("t.npz"), "--q", "l{layer}.h{head}.q", "--k", "l{layer}.h{head}.k",
                             "--v", "l{layer}.h{head}.v", "-o", self.path("o.h5")) as f:
            self.assertEqual((int(f.attrs["heads"]), int(f.attrs["kv_heads"])), (4, 2))
            np.testing.assert_array_equal(f["layer1/head3/q"][...], arrs["l1.h3.q"].astype(np.float32))
            np.testing.assert_array_equal(f["layer1/head1/k"][...], arrs["l1.h1.k"].astype(np.float32))
            self.assertNotIn("k", f["layer1/head2"])

    def test_errors_name_file_array_and_shape(self):
        q = self.rng.normal(size=(2, 6, 4))
        np.savez(self.path("e.npz"), q=q, k=q[:, :5], v=q, i=np.arange(24).reshape(6, 4),
                 r5=np.zeros((1, 1, 1, 6, 4)), k3=q[:1], nan=np.full((2, 6, 4), np.nan))
        p = self.path("e.npz")
        o = self.path("o.h5")
        self.convert_fails(p, "-o", o, says=("layer 0 k has shape (2, 5, 4)",))
        self.convert_fails(p, "--k", "i", "-o", o, says=("e.npz", "'i'", "int64", "allowed"))
        self.convert_fails(p, "--k", "r5", "-o", o, says=("'r5'", "(1, 1, 1, 6, 4)"))
        self.convert_fails(p, "--k", "nope", "-o", o, says=("no array 'nope'",))
        self.convert_fails(p, "--q", "x{layer}", "-o", o, says=("template 'x{layer}'", "'x0'"))
        self.convert_fails(p, "--k", "nan", "--v", "nan", "-o", o, says=("head 0 row 0 column 0", "nan"))
        # 2 query heads, 1 kv head is fine; 3 would not be a multiple (here: 2 vs 1 ok).
        self.assertEqual(self.run_convert(p, "--k", "k3", "--v", "k3", "-o", o)[0], 0)
        os.unlink(o)
        np.savez(self.path("g.npz"), q=np.zeros((3, 6, 4)), k=np.zeros((2, 6, 4)), v=np.zeros((2, 6, 4)))
        self.convert_fails(self.path("g.npz"), "-o", o, says=("3 heads", "2", "multiple"))
        with open(self.path("bad.npz"), "wb") as f:
            f.write(b"PK\x03\x04 not really")
        self.convert_fails(self.path("bad.npz"), "-o", o, says=("bad.npz",))
        self.convert_fails(self.path("x.h5"), "-o", o, says=("unknown kind",))

    def test_symlink_output_is_refused(self):
        np.savez(self.path("s.npz"), q=np.ones((2, 2)), k=np.ones((2, 2)), v=np.ones((2, 2)))
        target = self.path("target")
        os.symlink(target, self.path("o.h5"))
        rc, _, err = self.run_convert(self.path("s.npz"), "-o", self.path("o.h5"))
        self.assertEqual(rc, 1)
        self.assertIn("symbolic link", err)
        self.assertFalse(os.path.exists(target))

    def test_output_that_is_the_input_is_refused_and_the_input_kept(self):
        src = self.path("s.npz")
        np.savez(src, q=np.ones((2, 2)), k=np.ones((2, 2)), v=np.ones((2, 2)))
        before = open(src, "rb").read()
        os.link(src, self.path("hard.npz"))
        for out in (src, self.path("hard.npz"), os.path.join(self.tmp, ".", "s.npz")):
            rc, _, err = self.run_convert(src, "-o", out)
            self.assertEqual(rc, 1, err)
            self.assertIn("is the input", err)
            self.assertEqual(open(src, "rb").read(), before)


class ConvertSafetensors(ConvertBase):
    def write(self, name, blob):
        with open(self.path(name), "wb") as f:
            f.write(blob)
        return self.path(name)

    def test_f32_f16_f64_bf16_values(self):
        q = self.rng.normal(size=(2, 5, 4)).astype("<f4")
        k = self.rng.normal(size=(2, 5, 4)).astype("<f2")
        v = self.rng.normal(size=(2, 5, 4))
        # bfloat16 by hand: the top 16 bits of float32 values that bf16 holds exactly.
        vb = np.array([1.0, -2.5, 0.15625, 2.0 ** 127, -0.0, 7.0], dtype="<f4")
        vb_bits = (vb.view("<u4") >> 16).astype("<u2")
        self.assertTrue(np.all((vb.view("<u4") & 0xFFFF) == 0))
        p = self.write("a.safetensors", safetensors_bytes({
            "q": ("F32", q.shape, q.tobytes()), "k": ("F16", k.shape, k.tobytes()),
            "v": ("F64", v.shape, v.astype("<f8").tobytes()),
            "bq": ("BF16", (1, 6, 1), vb_bits.tobytes())}))
        with self.convert_ok(p, "-o", self.path("o.h5")) as f:
            np.testing.assert_array_equal(f["layer0/head1/q"][...], q[1])
            np.testing.assert_array_equal(f["layer0/head1/k"][...], k[1].astype(np.float32))
            np.testing.assert_array_equal(f["layer0/head0/v"][...], v[0].astype(np.float32))
        os.unlink(self.path("o.h5"))
        st = convert.SafeTensors(p)
        self.addCleanup(st.close)
        got = st.get("bq")
        self.assertEqual(got.dtype, np.float32)
        np.testing.assert_array_equal(got.ravel(), vb)
        self.assertEqual(np.signbit(got.ravel()[4]), True)

    def test_metadata_and_empty_arrays_are_allowed(self):
        q = np.arange(6, dtype="<f4").reshape(3, 2)
        blob = safetensors_bytes({"q": ("F32", (3, 2), q.tobytes()), "e": ("F32", (0, 2), b"")},
                                 header_extra={"__metadata__": {"format": "pt"}})
        st = convert.SafeTensors(self.write("m.safetensors", blob))
        self.addCleanup(st.close)
        np.testing.assert_array_equal(st.get("q"), q)
        self.assertEqual(st.get("e").shape, (0, 2))

    def test_list_prints_names_dtypes_shapes(self):
        p = self.write("l.safetensors", safetensors_bytes({"q": ("F16", (2, 3), bytes(12))}))
        rc, out, _ = self.run_convert(p, "--list")
        self.assertEqual((rc, out), (0, "q\tF16\t[2, 3]\n"))

    def test_hostile_headers(self):
        good = {"q": ("F32", (2, 2), bytes(16)), "k": ("F32", (2, 2), bytes(16)),
                "v": ("F32", (2, 2), bytes(16))}
        o = self.path("o.h5")
        cases = [
            ("short", b"\x05\x00\x00", ("truncated", "8-byte")),
            ("huge", struct.pack("<Q", 2 ** 64 - 1) + b"{}", ("header length", "at most")),
            ("past-end", struct.pack("<Q", 1000) + b"{}", ("truncated", "header length 1000")),
            ("not-json", safetensors_bytes({}, raw_header=b"{not json"), ("bad header", "JSON")),
            ("not-utf8", safetensors_bytes({}, raw_header=b'{"\xff": 1}'), ("bad header",)),
            ("a-list", safetensors_bytes({}, raw_header=b"[1, 2]"), ("expected an object",)),
            ("extra-key", safetensors_bytes(good, {"q": {"x": 1}}), ("'q'", "exactly")),
            ("bad-dtype-name", safetensors_bytes(good, {"q": {"dtype": "F17"}}), ("unknown dtype 'F17'",)),
            ("neg-shape", safetensors_bytes(good, {"q": {"shape": [-2, -2]}}), ("shape [-2, -2]",)),
            ("float-shape", safetensors_bytes(good, {"q": {"shape": [2.0, 2]}}), ("shape",)),
            ("big-shape", safetensors_bytes(good, {"q": {"shape": [2 ** 62, 2 ** 62]}}),
             ("needs", str(2 ** 124 * 4))),
            ("out-of-range", safetensors_bytes(good, {"v": {"data_offsets": [32, 64]}}),
             ("out of range", "48 bytes")),
            ("reversed", safetensors_bytes(good, {"v": {"data_offsets": [48, 32]}}), ("out of range",)),
            ("negative", safetensors_bytes(good, {"q": {"data_offsets": [-16, 0]}}), ("out of range",)),
            ("bad-offsets", safetensors_bytes(good, {"q": {"data_offsets": [0]}}), ("data_offsets [0]",)),
            ("size-mismatch", safetensors_bytes(good, {"q": {"data_offsets": [0, 12]}}), ("needs 16",)),
            ("overlap", safetensors_bytes(good, {"k": {"data_offsets": [8, 24]}}), ("overlap", "'q'", "'k'")),
            ("truncated-data", safetensors_bytes(good)[:-4], ("out of range",)),
        ]
        for name, blob, says in cases:
            with self.subTest(case=name):
                p = self.write(name + ".safetensors", blob)
                err = self.convert_fails(p, "-o", o, says=says)
                self.assertIn(name + ".safetensors", err)

    def test_refused_dtypes_name_the_array(self):
        for dt, size in (("I32", 4), ("U8", 1), ("BOOL", 1), ("F8_E4M3", 1), ("I64", 8)):
            with self.subTest(dtype=dt):
                blob = safetensors_bytes({"q": ("F32", (2, 2), bytes(16)), "k": (dt, (2, 2), bytes(4 * size)),
                                          "v": ("F32", (2, 2), bytes(16))})
                p = self.write(f"d{dt}.safetensors", blob)
                self.convert_fails(p, "-o", self.path("o.h5"), says=("'k'", f"dtype {dt}", "allowed"))


@unittest.skipIf(torch is None, "torch is not installed (apt-get install python3-torch)")
class ConvertPt(ConvertBase):
    def test_nested_dict_bf16_and_rank4(self):
        q = torch.randn(1, 2, 5, 4, generator=torch.Generator().manual_seed(1))
        kb = torch.randn(1, 1, 5, 4).to(torch.bfloat16)
        torch.save({"attn": {"q": q, "k": kb, "v": kb.float()}}, self.path("a.pt"))
        with self.convert_ok(self.path("a.pt"), "--q", "attn.q", "--k", "attn.k", "--v", "attn.v",
                             "-o", self.path("o.h5")) as f:
            np.testing.assert_array_equal(f["layer0/head1/q"][...], q[0, 1].numpy())
            np.testing.assert_array_equal(f["layer0/head0/k"][...], kb[0, 0].float().numpy())
            self.assertEqual(int(f.attrs["kv_heads"]), 1)

    def test_integer_tensor_and_pickled_object_are_refused(self):
        torch.save({"q": torch.zeros(3, 2), "k": torch.zeros(3, 2, dtype=torch.int32),
                    "v": torch.zeros(3, 2)}, self.path("i.pt"))
        self.convert_fails(self.path("i.pt"), "-o", self.path("o.h5"), says=("'k'", "int32"))
        torch.save({"q": object()}, self.path("obj.pt"))
        self.convert_fails(self.path("obj.pt"), "-o", self.path("o.h5"), says=("obj.pt", "not a loadable"))


if __name__ == "__main__":
    unittest.main()
