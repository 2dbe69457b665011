"""lshlab.h5layout - write Q, K, V of several layers and heads into the HDF5
layout lshlab reads (SPEC 11.3): /layer{L}/head{H}/{q,k,v}, each [n, d], with
the root attributes model, text, positions, scale and causal.  Shared by
lshlab.capture and lshlab.convert; needs only h5py and numpy."""

import os

import h5py
import numpy as np


class LayoutError(Exception):
    """A problem with the tensors or the output file; the message says which."""


def check_heads(q, k, v, where="input"):
    """q: list over layers of arrays [H_q, n, d]; k, v: lists of [H_kv, n, d(_v)].
    Checks the shapes of SPEC 11.1 (n and d agree, H_q a multiple of H_kv, finite
    values) and returns (layers, H_q, H_kv, n, d)."""
    if not (len(q) == len(k) == len(v)) or not q:
        raise LayoutError(f"{where}: q, k, v have {len(q)}, {len(k)}, {len(v)} layers; "
                          "they must have the same number, at least 1")
    hq, n, d = q[0].shape
    hkv = k[0].shape[0]
    for L in range(len(q)):
        for name, a in (("q", q[L]), ("k", k[L]), ("v", v[L])):
            if a.ndim != 3:
                raise LayoutError(f"{where}: layer {L} {name} has shape {tuple(a.shape)}; "
                                  "expected [heads, n, d]")
        if q[L].shape != (hq, n, d):
            raise LayoutError(f"{where}: layer {L} q has shape {tuple(q[L].shape)}, layer 0 q "
                              f"{(hq, n, d)}; every layer must have the same shape")
        if k[L].shape != (hkv, n, d):
            raise LayoutError(f"{where}: layer {L} k has shape {tuple(k[L].shape)} and q "
                              f"{tuple(q[L].shape)}; k must be [{hkv}, {n}, {d}] (n and d as q's)")
        if v[L].shape[:2] != (hkv, n):
            raise LayoutError(f"{where}: layer {L} v has shape {tuple(v[L].shape)} and k "
                              f"{tuple(k[L].shape)}; v must have k's heads and n")
        for name, a in (("q", q[L]), ("k", k[L]), ("v", v[L])):
            bad = np.argwhere(~np.isfinite(a))
            if len(bad):
                h, i, j = bad[0]
                raise LayoutError(f"{where}: layer {L} {name} head {h} row {i} column {j} is "
                                  f"{a[h, i, j]}; values must be finite")
    if hkv == 0 or hq % hkv:
        raise LayoutError(f"{where}: q has {hq} heads and k/v {hkv}; the query heads must be "
                          "a multiple of the key/value heads (grouped-query attention)")
    return len(q), hq, hkv, n, d


def write_layout(path, q, k, v, attrs, dtype="float32", where="input", inputs=()):
    """Write the layout to `path` (through a temporary file renamed into place;
    an existing symlink at `path` is refused, and so is a path that is one of
    the files in `inputs`, which the caller read).  float16 output refuses
    values beyond float16's range instead of writing Inf."""
    if dtype not in ("float16", "float32"):
        raise LayoutError(f"{path}: dtype {dtype!r}; allowed: float16, float32")
    nl, hq, hkv, n, d = check_heads(q, k, v, where)
    if os.path.islink(path):
        raise LayoutError(f"{path}: is a symbolic link; refusing to write through it")
    for inp in inputs:
        if inp and os.path.exists(path) and os.path.exists(inp) and os.path.samefile(path, inp):
            raise LayoutError(f"{path}: is the input {inp}; refusing to replace it (choose "
                              "another -o)")
    if dtype == "float16":
        lim = float(np.finfo(np.float16).max)
        for L in range(nl):
            for name, a in (("q", q[L]), ("k", k[L]), ("v", v[L])):
                m = float(np.max(np.abs(a))) if a.size else 0.0
                if m > lim:
                    raise LayoutError(f"{path}: layer {L} {name} has |value| {m:.6g} > {lim:g}, "
                                      "beyond float16; use float32")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for key, val in attrs.items():
                if val is None:
                    continue
                if isinstance(val, bool):
                    val = np.int8(val)
                elif isinstance(val, str):
                    val = str(val)  # a str subclass (torch's version) is not an HDF5 type
                f.attrs[key] = val
            for L in range(nl):
                for h in range(hq):
                    g = f.require_group(f"layer{L}/head{h}")
                    g.create_dataset("q", data=np.asarray(q[L][h], dtype=dtype))
                    if h < hkv:
                        g.create_dataset("k", data=np.asarray(k[L][h], dtype=dtype))
                        g.create_dataset("v", data=np.asarray(v[L][h], dtype=dtype))
            f.attrs["layers"] = np.int32(nl)
            f.attrs["heads"] = np.int32(hq)
            f.attrs["kv_heads"] = np.int32(hkv)
        os.replace(tmp, path)
    except OSError as e:
        raise LayoutError(f"{path}: cannot write: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return nl, hq, hkv, n, d
