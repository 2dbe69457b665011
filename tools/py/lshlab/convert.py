"""lshlab.convert - turn Q, K, V tensors saved as .npz, .safetensors or .pt into
lshlab's HDF5 layout /layer{L}/head{H}/{q,k,v} (SPEC 11.3; run it through
tools/convert).  .safetensors is parsed here with numpy (header and raw bytes,
every offset checked); .pt needs torch and is loaded with weights_only."""

import argparse
import json
import math
import os
import re
import struct
import sys
import zipfile

import numpy as np

from . import h5layout

DESCRIPTION = """\
Convert Q, K, V arrays into lshlab's HDF5 layout: /layer{L}/head{H}/{q,k,v},
each [n, d] (with fewer key/value heads, k and v only for those), with the
root attributes model, text, positions, scale and causal.

--q, --k and --v each name one array of the input (rank 2 [n, d], rank 3
[heads, n, d] or rank 4 [layers, heads, n, d]) or a name template holding
{layer} and/or {head}, each expansion naming a rank-2 array; a template's
indices run 0, 1, 2, ... up to the first name that is missing.  Array names
in .pt files are the dotted paths of nested dicts.

Element types: float16, float32, float64 (either byte order) and bfloat16 of
.safetensors/.pt (converted to float32 exactly); anything else is refused."""

EPILOG = """\
examples:
  tools/convert dump.npz -o dump.h5                         (arrays q, k, v)
  tools/convert attn.safetensors --q 'l{layer}.h{head}.q' --k 'l{layer}.h{head}.k' \\
      --v 'l{layer}.h{head}.v' --scale 0.125 --causal 1 -o attn.h5
  tools/convert qkv.pt --q query --k key --v value -o qkv.h5
  tools/convert attn.safetensors --list                      (the arrays and shapes)

exit codes: 0 ok, 1 unreadable or unusable input (the message names the file,
the array and what was found), 2 bad command line"""

# safetensors: the header is at most 100 MB (the reference implementation's limit).
MAX_HEADER = 100 * 1000 * 1000
MAX_RANK = 8
ST_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
             "BF16": np.dtype("<u2")}
ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class ConvertError(Exception):
    """The input cannot be converted; the message names the file and array."""


def bf16_to_f32(u16):
    """bfloat16 bits (uint16) -> float32, exactly (bf16 is float32's top half)."""
    return (u16.astype(np.uint32) << 16).view(np.float32)


class SafeTensors:
    """A .safetensors file: 8-byte little-endian header length N, N bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
    then the data, offsets relative to its start.  Everything is checked
    before any data is read."""

    def __init__(self, path):
        self.path = path
        try:
            self.f = open(path, "rb")
            size = os.fstat(self.f.fileno()).st_size
        except OSError as e:
            raise ConvertError(f"{path}: cannot open: {e.strerror}") from None
        try:
            self._parse(path, size)
        except BaseException:
            self.f.close()
            raise

    def close(self):
        self.f.close()

    def _parse(self, path, size):
        head = self.f.read(8)
        if len(head) < 8:
            raise ConvertError(f"{path}: truncated: {size} bytes, a safetensors file starts with an "
                               "8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise ConvertError(f"{path}: header length {n} bytes; at most {MAX_HEADER} allowed")
        if n > size - 8:
            raise ConvertError(f"{path}: truncated: header length {n} but only {size - 8} bytes "
                               "follow the length")
        raw = self.f.read(n)
        try:
            hdr = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConvertError(f"{path}: bad header: not UTF-8 JSON ({e})") from None
        if not isinstance(hdr, dict):
            raise ConvertError(f"{path}: bad header: a JSON {type(hdr).__name__}; expected an object")
        self.data_start = 8 + n
        self.data_len = size - self.data_start
        self.meta = hdr.pop("__metadata__", None)
        if self.meta is not None and not isinstance(self.meta, dict):
            raise ConvertError(f"{path}: bad header: __metadata__ is not an object")
        self.entries = {}
        spans = []
        for name, e in hdr.items():
            where = f"{path}: bad header: array {name!r}"
            if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
                raise ConvertError(f"{where}: expected exactly dtype, shape, data_offsets; found "
                                   f"{sorted(e) if isinstance(e, dict) else type(e).__name__}")
            dt, shape, off = e["dtype"], e["shape"], e["data_offsets"]
            if not isinstance(dt, str) or dt not in ST_ITEMSIZE:
                raise ConvertError(f"{where}: unknown dtype {dt!r}")
            if (not isinstance(shape, list) or len(shape) > MAX_RANK
                    or any(type(s) is not int or s < 0 for s in shape)):
                raise ConvertError(f"{where}: shape {shape!r}; expected a list of at most "
                                   f"{MAX_RANK} non-negative integers")
            if (not isinstance(off, list) or len(off) != 2
                    or any(type(o) is not int for o in off)):
                raise ConvertError(f"{where}: data_offsets {off!r}; expected [begin, end] integers")
            b, en = off
            if not 0 <= b <= en <= self.data_len:
                raise ConvertError(f"{where}: data_offsets [{b}, {en}] out of range: the data is "
                                   f"{self.data_len} bytes")
            # Python integers do not overflow; the product is compared, not allocated.
            nbytes = math.prod(shape) * ST_ITEMSIZE[dt]
            if en - b != nbytes:
                raise ConvertError(f"{where}: data_offsets [{b}, {en}] hold {en - b} bytes; shape "
                                   f"{shape} of {dt} needs {nbytes}")
            self.entries[name] = (dt, tuple(shape), b, en)
            if en > b:
                spans.append((b, en, name))
        spans.sort()
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise ConvertError(f"{path}: bad header: arrays {n0!r} [{b0}, {e0}] and {n1!r} "
                                   f"[{b1}, {e1}] overlap")

    def names(self):
        return list(self.entries)

    def shape(self, name):
        return self.entries[name][1]

    def dtype_name(self, name):
        return self.entries[name][0]

    def get(self, name):
        dt, shape, b, en = self.entries[name]
        if dt not in ST_DTYPES:
            raise ConvertError(f"{self.path}: array {name!r} has dtype {dt}; allowed: F16, F32, "
                               "F64, BF16")
        self.f.seek(self.data_start + b)
        raw = self.f.read(en - b)
        if len(raw) != en - b:
            raise ConvertError(f"{self.path}: truncated while reading array {name!r}")
        a = np.frombuffer(raw, dtype=ST_DTYPES[dt]).reshape(shape)
        return bf16_to_f32(a) if dt == "BF16" else a


class Npz:
    def __init__(self, path):
        self.path = path
        try:
            self.z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ConvertError(f"{path}: not a readable .npz file ({e})") from None
        if not hasattr(self.z, "files"):
            raise ConvertError(f"{path}: a single .npy array, not an .npz archive")
        self.cache = {}

    def close(self):
        self.z.close()

    def names(self):
        return list(self.z.files)

    def _arr(self, name):
        if name not in self.cache:
            try:
                self.cache[name] = self.z[name]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
                raise ConvertError(f"{self.path}: array {name!r} cannot be read ({e})") from None
        return self.cache[name]

    def shape(self, name):
        return self._arr(name).shape

    def dtype_name(self, name):
        return str(self._arr(name).dtype)

    def get(self, name):
        a = self._arr(name)
        if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
            raise ConvertError(f"{self.path}: array {name!r} has type {a.dtype}; allowed: float16, "
                               "float32, float64")
        return a


class TorchFile:
    def __init__(self, path):
        self.path = path
        try:
            import torch
        except ImportError:
            raise ConvertError(f"{path}: reading .pt needs torch (apt-get install python3-torch)") from None
        self.torch = torch
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds on a bad file
            raise ConvertError(f"{path}: not a loadable .pt file of tensors ({type(e).__name__}: {e})") from None
        self.t = {}
        self._flatten("", obj)
        if not self.t:
            raise ConvertError(f"{path}: holds no tensors (a dict of tensors is expected)")

    def _flatten(self, prefix, obj):
        if isinstance(obj, self.torch.Tensor):
            self.t[prefix or "tensor"] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                self._flatten(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self._flatten(f"{prefix}.{i}" if prefix else str(i), v)

    def close(self):
        pass

    def names(self):
        return list(self.t)

    def shape(self, name):
        return tuple(self.t[name].shape)

    def dtype_name(self, name):
        return str(self.t[name].dtype).replace("torch.", "")

    def get(self, name):
        x = self.t[name]
        if x.dtype == self.torch.bfloat16:
            return x.float().numpy()
        if x.dtype not in (self.torch.float16, self.torch.float32, self.torch.float64):
            raise ConvertError(f"{self.path}: array {name!r} has type {self.dtype_name(name)}; "
                               "allowed: float16, float32, float64, bfloat16")
        return x.detach().numpy()


def open_source(path):
    low = path.lower()
    if low.endswith(".safetensors"):
        return SafeTensors(path)
    if low.endswith(".npz"):
        return Npz(path)
    if low.endswith((".pt", ".pth", ".bin")):
        return TorchFile(path)
    raise ConvertError(f"{path}: unknown kind of file; allowed: .npz, .safetensors, .pt")


def _expand(src, template, what):
    """A {layer}/{head} template -> list over layers of lists over heads of names."""
    if not re.search(r"\{(layer|head)\}", template):
        return None
    names = set(src.names())
    has_l, has_h = "{layer}" in template, "{head}" in template
    layers = []
    for L in range(10 ** 6 if has_l else 1):
        heads = []
        for h in range(10 ** 6 if has_h else 1):
            name = template.replace("{layer}", str(L)).replace("{head}", str(h))
            if name not in names:
                break
            heads.append(name)
        if not heads:
            break
        layers.append(heads)
    if not layers:
        raise ConvertError(f"{src.path}: {what} template {template!r}: no array "
                           f"{template.replace('{layer}', '0').replace('{head}', '0')!r}")
    return layers


def load_tensor(src, spec, what):
    """list over layers of float arrays [heads, n, d]."""
    tmpl = _expand(src, spec, what)
    if tmpl is not None:
        out = []
        for L, heads in enumerate(tmpl):
            arrs = []
            for name in heads:
                a = src.get(name)
                if a.ndim != 2:
                    raise ConvertError(f"{src.path}: {what} array {name!r} has shape {tuple(a.shape)}; "
                                       "a template's arrays must be [n, d]")
                arrs.append(a)
            if len(arrs) != len(tmpl[0]):
                raise ConvertError(f"{src.path}: {what} template {spec!r}: layer {L} has {len(arrs)} "
                                   f"heads, layer 0 {len(tmpl[0])}")
            shapes = {a.shape for a in arrs}
            if len(shapes) != 1:
                raise ConvertError(f"{src.path}: {what} template {spec!r}: layer {L} heads have "
                                   f"shapes {sorted(shapes)}; they must agree")
            out.append(np.stack([np.asarray(a) for a in arrs]))
        return out
    if spec not in src.names():
        raise ConvertError(f"{src.path}: no array {spec!r} (for {what}); it has: "
                           f"{', '.join(sorted(src.names())[:20])}")
    a = src.get(spec)
    if a.ndim == 2:
        return [a[None]]
    if a.ndim == 3:
        return [a]
    if a.ndim == 4:
        return [a[L] for L in range(a.shape[0])]
    raise ConvertError(f"{src.path}: {what} array {spec!r} has shape {tuple(a.shape)}; allowed: "
                       "[n, d], [heads, n, d], [layers, heads, n, d]")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/convert", description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="a .npz, .safetensors or .pt file")
    ap.add_argument("-o", "--out", help="the HDF5 file to write")
    ap.add_argument("--list", action="store_true", help="list the input's arrays and stop")
    ap.add_argument("--q", default="q", help="array name or template for Q (default q)")
    ap.add_argument("--k", default="k", help="array name or template for K (default k)")
    ap.add_argument("--v", default="v", help="array name or template for V (default v)")
    ap.add_argument("--scale", type=float, help="the model's score scale (default 1/sqrt(d))")
    ap.add_argument("--causal", type=int, choices=[0, 1], default=1, help="1 (default) or 0")
    ap.add_argument("--model", default="", help="the model's name (attribute model)")
    ap.add_argument("--text", default="", help="the text the tensors come from (attribute text)")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float32")
    args = ap.parse_args(argv)
    if not args.list and not args.out:
        ap.error("-o/--out is required (or --list)")
    src = None
    try:
        src = open_source(args.input)
        if args.list:
            for name in src.names():
                print(f"{name}\t{src.dtype_name(name)}\t{list(src.shape(name))}")
            return 0
        q = load_tensor(src, args.q, "q")
        k = load_tensor(src, args.k, "k")
        v = load_tensor(src, args.v, "v")
        for name, t in (("q", q), ("k", k), ("v", v)):
            if len(t) != len(q):
                raise ConvertError(f"{args.input}: q has {len(q)} layers and {name} {len(t)}; they "
                                   "must agree")
        d = q[0].shape[2]
        scale = args.scale if args.scale is not None else 1.0 / math.sqrt(d)
        if not (math.isfinite(scale) and scale > 0):
            raise ConvertError(f"--scale {args.scale}: must be a positive finite number")
        n = q[0].shape[1]
        attrs = {"model": args.model or os.path.basename(args.input), "text": args.text,
                 "positions": np.arange(n, dtype=np.int64), "scale": np.float64(scale),
                 "causal": np.int8(args.causal), "source": os.path.basename(args.input),
                 "dtype": args.dtype}
        q = [np.asarray(x, dtype=np.float64) for x in q]
        k = [np.asarray(x, dtype=np.float64) for x in k]
        v = [np.asarray(x, dtype=np.float64) for x in v]
        nl, hq, hkv, n, d = h5layout.write_layout(args.out, q, k, v, attrs, args.dtype,
                                                  where=args.input, inputs=(args.input,))
    except ConvertError as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1
    except h5layout.LayoutError as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1
    finally:
        if src is not None:
            src.close()
    print(f"convert: wrote {args.out}: {nl} layers, {hq} heads, {hkv} kv heads, n {n}, d {d}, "
          f"{args.dtype}, scale {scale:.6g}, causal {args.causal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
