"""lshlab.capture - record Q, K, V of a PyTorch model, as its softmax sees them
(after rotary embeddings), into lshlab's HDF5 layout /layer{L}/head{H}/{q,k,v}
(SPEC 11.3), and check them against the model's own attention probabilities
(run it through tools/capture; the recipes are in docs/real-data.md).

The Python API is capture(model, spec, input_ids) -> Captured and
capture_to_file(...); an AttentionSpec says where the attention is:

  shape "separate"  q/k/v projections are submodules (Llama q_proj/k_proj/v_proj,
                    BERT query/key/value): forward hooks read their outputs.
  shape "fused"     one qkv projection (GPT-2 c_attn): its output is split into
                    q [H*d], k [H_kv*d], v [H_kv*d].
  shape "mha"       torch.nn.MultiheadAttention: Q, K, V are its own in-projection
                    of its inputs, the probabilities its own weights
                    (need_weights=True, average_attn_weights=False).

Rotary embeddings are applied by the model's own function: spec.rotary =
(owner, "name") makes capture wrap owner.name (a module-level function such as
transformers' apply_rotary_pos_emb, or this package's tinylm.apply_rotary) for
the duration of the forward pass and take Q and K from what it returns.

The model's own probabilities come from torch.nn.functional.softmax /
torch.softmax called inside each attention module (probs="softmax"), from the
model's outputs (probs=callable, e.g. Hugging Face output_attentions), or from
nn.MultiheadAttention's weights (shape "mha")."""

import argparse
import importlib
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from . import h5layout

DESCRIPTION = """\
Capture Q, K, V of every attention layer and head of a PyTorch model on one
text into an HDF5 file /layer{L}/head{H}/{q,k,v} ([n, d] each; with grouped-
query attention k and v only for the key/value heads), as the softmax sees
them (after rotary embeddings, applied by the model's own function), with the
root attributes model, text, positions, scale and causal.  Then recompute
softmax(Q K^T scale (+ causal mask)) from the captured tensors for every head
and compare it with the model's own attention probabilities: the largest
difference is printed, and a difference beyond float32 rounding fails.

Sources (one of):
  --tinylm WEIGHTS.pt     the model of tools/tinylm
  --factory MOD:FUNC      your own model: FUNC(text) in module MOD (found on
                          --path) returns (model, AttentionSpec, input_ids);
                          see docs/real-data.md
  --hf NAME_OR_DIR        a Hugging Face model (needs transformers; a local
                          directory or a cached name: nothing is downloaded
                          unless your transformers set-up allows it)"""

EPILOG = """\
examples:
  tools/capture --tinylm experiments/data/tinylm.pt --text-file README.md --max-len 1024 -o tiny.h5
  tools/capture --factory mymodel:build --path ~/src/mymodel --text "..." -o mine.h5
  tools/capture --hf ./llama-dir --text-file prompt.txt --dtype float32 -o llama.h5

exit codes: 0 ok, 1 capture or self-check failed, 2 bad command line"""

F32_EPS = float(np.finfo(np.float32).eps)


class CaptureError(Exception):
    """Capture could not find or check the attention; the message says why."""


class AttentionSpec:
    """Where a model's attention is and what it does.

    layers   a module path with {layer} ("blocks.{layer}.attn": 0, 1, ... until
             one is missing) or a list of module paths, one per layer
    shape    "separate", "fused" or "mha"
    q, k, v  the projection submodules of an attention module (shape separate)
    qkv      the fused projection submodule (shape fused)
    heads, kv_heads, head_dim   H_q, H_kv and d (kv_heads defaults to heads;
             shape mha reads them from the module)
    rotary   None, or (owner, "function name"): the model's own rotary function,
             wrapped while capturing; it must return (q, k) as [B, H, n, d]
    scale    the score scale; None: the module's `scaling` or `scale` attribute
             when it is a number, else 1/sqrt(head_dim)
    causal   whether the model masks future keys
    probs    "softmax" (F.softmax/torch.softmax inside the attention module;
             the last call of shape [B, H_q, n, n]), "mha", or a callable
             taking the model's outputs and returning one [B, H_q, n, n]
             tensor per layer
    forward_kwargs  extra keyword arguments of model(input_ids, ...)"""

    def __init__(self, layers, shape, q="q_proj", k="k_proj", v="v_proj", qkv="c_attn",
                 heads=None, kv_heads=None, head_dim=None, rotary=None, scale=None,
                 causal=True, probs="softmax", forward_kwargs=None):
        if shape not in ("separate", "fused", "mha"):
            raise CaptureError(f"AttentionSpec: shape {shape!r}; allowed: separate, fused, mha")
        self.layers, self.shape = layers, shape
        self.q, self.k, self.v, self.qkv = q, k, v, qkv
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads or heads, head_dim
        self.rotary, self.scale, self.causal = rotary, scale, bool(causal)
        self.probs = "mha" if shape == "mha" and probs == "softmax" else probs
        self.forward_kwargs = dict(forward_kwargs or {})


class Captured:
    """What capture() returns: per layer q [H_q, n, d], k, v [H_kv, n, d(_v)]
    (float32 numpy), the model's probabilities [H_q, n, n] (float32), and the
    scale, causality and the self-check's errors."""

    def __init__(self):
        self.q, self.k, self.v, self.probs = [], [], [], []
        self.scale = None
        self.causal = None
        self.max_err = None       # largest |recomputed - model| over every head
        self.head_err = []        # per layer, per query head
        self.tolerance = None


def _attention_modules(model, layers):
    if isinstance(layers, (list, tuple)):
        names = list(layers)
    else:
        names = []
        while True:
            name = layers.format(layer=len(names))
            try:
                model.get_submodule(name)
            except AttributeError:
                break
            names.append(name)
            if "{layer}" not in layers:
                break
    if not names:
        raise CaptureError(f"no attention module found at {layers!r} (for layer 0)")
    mods = []
    for name in names:
        try:
            mods.append((name, model.get_submodule(name)))
        except AttributeError:
            raise CaptureError(f"the model has no module {name!r}") from None
    return mods


def _sub(module, name, mname):
    try:
        return module.get_submodule(name)
    except AttributeError:
        raise CaptureError(f"attention module {mname!r} has no submodule {name!r} "
                           f"(its children: {', '.join(n for n, _ in module.named_children())})") from None


def _heads(x, heads, head_dim, what):
    """[B, n, H*d] -> [B, H, n, d]."""
    B, n, width = x.shape
    if width != heads * head_dim:
        raise CaptureError(f"{what} has width {width}; expected heads*head_dim = {heads}*{head_dim}")
    return x.reshape(B, n, heads, head_dim).transpose(1, 2)


def capture(model, spec, input_ids, positions=None):
    """Run model(input_ids, **spec.forward_kwargs) once (batch of 1) with hooks,
    and return a Captured with the self-check done (it does not raise when the
    check fails: look at max_err against tolerance, or use capture_to_file)."""
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.shape[0] != 1:
        raise CaptureError(f"input_ids has shape {tuple(input_ids.shape)}; capture takes one sequence")
    mods = _attention_modules(model, spec.layers)
    nl = len(mods)
    state = {"layer": None}
    rec = [dict() for _ in range(nl)]
    handles, restore = [], []

    def enter(L):
        def pre(_m, _inp):
            state["layer"] = L
        return pre

    def leave(_m, _inp, _out):
        state["layer"] = None

    heads, kv_heads, hd = spec.heads, spec.kv_heads, spec.head_dim
    for L, (mname, m) in enumerate(mods):
        if spec.shape == "mha":
            if not isinstance(m, torch.nn.MultiheadAttention):
                raise CaptureError(f"{mname!r} is a {type(m).__name__}, not nn.MultiheadAttention")
            heads = kv_heads = m.num_heads
            hd = m.head_dim
            _wrap_mha(m, L, rec, restore)
            continue
        handles.append(m.register_forward_pre_hook(enter(L)))
        handles.append(m.register_forward_hook(leave))
        if spec.shape == "separate":
            for key, sub in (("q", spec.q), ("k", spec.k), ("v", spec.v)):
                handles.append(_sub(m, sub, mname).register_forward_hook(_store(rec[L], key)))
        else:
            handles.append(_sub(m, spec.qkv, mname).register_forward_hook(_store(rec[L], "qkv")))
    if heads is None or hd is None:
        raise CaptureError("AttentionSpec needs heads and head_dim for shapes separate and fused")
    kv_heads = kv_heads or heads

    if spec.rotary is not None:
        owner, fname = spec.rotary
        if isinstance(owner, str):
            owner = importlib.import_module(owner)
        orig = getattr(owner, fname)

        def rotary_wrapper(*a, **kw):
            out = orig(*a, **kw)
            if state["layer"] is not None:
                rec[state["layer"]]["rot"] = (out[0].detach(), out[1].detach())
            return out
        setattr(owner, fname, rotary_wrapper)
        restore.append(lambda: setattr(owner, fname, orig))

    if spec.probs == "softmax":
        for owner, fname in ((F, "softmax"), (torch, "softmax")):
            orig_sm = getattr(owner, fname)

            def sm_wrapper(*a, _orig=orig_sm, **kw):
                out = _orig(*a, **kw)
                L = state["layer"]
                if L is not None and out.dim() == 4 and out.shape[-1] == out.shape[-2]:
                    rec[L]["probs"] = out.detach()
                return out
            setattr(owner, fname, sm_wrapper)
            restore.append(lambda o=owner, n=fname, f=orig_sm: setattr(o, n, f))

    try:
        with torch.no_grad():
            outputs = model(input_ids, **spec.forward_kwargs)
    finally:
        for h in handles:
            h.remove()
        for r in reversed(restore):
            r()

    cap = Captured()
    cap.causal = spec.causal
    n = input_ids.shape[1]
    ext_probs = spec.probs(outputs) if callable(spec.probs) else None
    for L, (mname, m) in enumerate(mods):
        r = rec[L]
        if spec.shape == "mha":
            q, k, v = r.get("q"), r.get("k"), r.get("v")
            if q is None:
                raise CaptureError(f"{mname!r} was not called by the forward pass")
        else:
            if spec.shape == "separate":
                missing = [x for x in ("q", "k", "v") if x not in r]
                if missing:
                    raise CaptureError(f"{mname!r}: projection(s) {', '.join(missing)} were not "
                                       "called during the forward pass")
                q = _heads(r["q"], heads, hd, f"{mname}.{spec.q} output")
                k = _heads(r["k"], kv_heads, hd, f"{mname}.{spec.k} output")
                v = _heads(r["v"], kv_heads, r["v"].shape[-1] // kv_heads, f"{mname}.{spec.v} output")
            else:
                if "qkv" not in r:
                    raise CaptureError(f"{mname!r}: {spec.qkv} was not called during the forward pass")
                x = r["qkv"]
                sizes = [heads * hd, kv_heads * hd, x.shape[-1] - heads * hd - kv_heads * hd]
                if sizes[2] <= 0 or sizes[2] % kv_heads:
                    raise CaptureError(f"{mname}.{spec.qkv} output has width {x.shape[-1]}; cannot "
                                       f"split into q {heads}x{hd}, k {kv_heads}x{hd} and v")
                qx, kx, vx = torch.split(x, sizes, dim=-1)
                q, k = _heads(qx, heads, hd, "q"), _heads(kx, kv_heads, hd, "k")
                v = _heads(vx, kv_heads, sizes[2] // kv_heads, "v")
            if spec.rotary is not None:
                if "rot" not in r:
                    raise CaptureError(f"{mname!r}: the rotary function {spec.rotary[1]!r} was not "
                                       "called inside it")
                q, k = r["rot"]
                if q.shape != (1, heads, n, hd) or k.shape != (1, kv_heads, n, hd):
                    raise CaptureError(f"{mname!r}: the rotary function returned q {tuple(q.shape)}, "
                                       f"k {tuple(k.shape)}; expected [1, {heads}, {n}, {hd}] and "
                                       f"[1, {kv_heads}, {n}, {hd}]")
        if ext_probs is not None:
            p = ext_probs[L]
        else:
            p = r.get("probs")
        if p is None:
            raise CaptureError(f"{mname!r}: no attention probabilities of shape [1, H, n, n] were seen "
                               "(softmax not called through F.softmax/torch.softmax? give probs=callable)")
        if tuple(p.shape) != (1, heads, n, n):
            raise CaptureError(f"{mname!r}: attention probabilities have shape {tuple(p.shape)}; "
                               f"expected [1, {heads}, {n}, {n}]")
        scale = spec.scale
        if scale is None:
            for attr in ("scaling", "scale"):
                s = getattr(m, attr, None)
                if isinstance(s, (int, float)) and not isinstance(s, bool):
                    scale = float(s)
                    break
            else:
                scale = 1.0 / math.sqrt(q.shape[-1])
        if cap.scale is not None and abs(cap.scale - scale) > 0:
            raise CaptureError(f"layer {L} has scale {scale}, layer 0 {cap.scale}; one file has one scale")
        cap.scale = float(scale)
        cap.q.append(q[0].float().numpy())
        cap.k.append(k[0].float().numpy())
        cap.v.append(v[0].float().numpy())
        cap.probs.append(p[0].float().numpy())
    self_check(cap)
    return cap


def _store(rec, key):
    def hook(_m, _inp, out):
        rec[key] = (out[0] if isinstance(out, tuple) else out).detach()
    return hook


def _wrap_mha(m, L, rec, restore):
    """Replace m.forward (instance attribute) by one that records Q, K, V (its own
    in-projection of its inputs) and asks for per-head weights."""
    orig = m.forward

    def forward(query, key, value, *a, **kw):
        kw["need_weights"] = True
        kw["average_attn_weights"] = False
        out = orig(query, key, value, *a, **kw)
        qi, ki, vi = (t.detach() for t in (query, key, value))
        if not m.batch_first:          # [n, B, E] -> [B, n, E]
            qi, ki, vi = (t.transpose(0, 1) for t in (qi, ki, vi))
        E = m.embed_dim
        if m._qkv_same_embed_dim:
            wq, wk, wv = m.in_proj_weight.split(E)
        else:
            wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
        bq = bk = bv = None
        if m.in_proj_bias is not None:
            bq, bk, bv = m.in_proj_bias.split(E)
        H, d = m.num_heads, m.head_dim
        rec[L]["q"] = _heads(F.linear(qi, wq, bq), H, d, "MultiheadAttention q")
        rec[L]["k"] = _heads(F.linear(ki, wk, bk), H, d, "MultiheadAttention k")
        rec[L]["v"] = _heads(F.linear(vi, wv, bv), H, d, "MultiheadAttention v")
        rec[L]["probs"] = out[1].detach()
        return out
    m.forward = forward
    restore.append(lambda: delattr(m, "forward"))


def recompute(q, k, scale, causal):
    """softmax(q k^T scale (+ causal mask)) in float64: q [n, d], k [n, d]."""
    s = (q.astype(np.float64) @ k.astype(np.float64).T) * scale
    if causal:
        s[np.triu_indices(s.shape[0], 1, s.shape[1])] = -np.inf
    s -= s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def self_check(cap):
    """Compare the recomputed probabilities with the model's own, for every
    head (query head h against key head floor(h H_kv / H_q)).  The tolerance is
    float32 rounding of the scores: 16 eps32 (1 + max |q_i||k_j| scale) + 1e-6."""
    cap.head_err, cap.max_err, worst_tol = [], 0.0, 0.0
    for L in range(len(cap.q)):
        hq, hkv = cap.q[L].shape[0], cap.k[L].shape[0]
        errs = []
        for h in range(hq):
            kh = h * hkv // hq
            p = recompute(cap.q[L][h], cap.k[L][kh], cap.scale, cap.causal)
            errs.append(float(np.max(np.abs(p - cap.probs[L][h]))))
            qn = np.linalg.norm(cap.q[L][h], axis=1).max()
            kn = np.linalg.norm(cap.k[L][kh], axis=1).max()
            worst_tol = max(worst_tol, 16 * F32_EPS * (1 + qn * kn * cap.scale) + 1e-6)
        cap.head_err.append(errs)
        cap.max_err = max(cap.max_err, max(errs))
    cap.tolerance = worst_tol
    return cap.max_err <= cap.tolerance


def peakedness(q, k, scale, causal):
    """(share of rows with > half their mass on one key, mean |i - j| under the
    attention) for one head: a description of the captured data."""
    p = recompute(q, k, scale, causal)
    n = p.shape[0]
    dist = np.abs(np.arange(n)[:, None] - np.arange(p.shape[1])[None, :])
    return float(np.mean(p.max(axis=1) > 0.5)), float(np.mean((p * dist).sum(axis=1)))


def capture_to_file(model, spec, input_ids, out, model_name, text, positions=None,
                    dtype="float16", attrs=None, log=print, inputs=()):
    """capture() then write `out`; prints the self-check and each head's
    peakedness; returns 0, or 1 when the self-check fails (nothing written)."""
    try:
        cap = capture(model, spec, input_ids, positions)
    except CaptureError as e:
        log(f"error: {e}")
        return 1
    n = cap.q[0].shape[1]
    pos = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
    if pos.shape != (n,):
        log(f"error: {len(pos)} positions for {n} tokens")
        return 1
    for L, errs in enumerate(cap.head_err):
        log(f"layer {L}: max |softmax(QK^T scale) - model| per head: "
            + " ".join(f"{e:.2e}" for e in errs))
    ok = cap.max_err <= cap.tolerance
    log(f"self-check: max error {cap.max_err:.3e}, tolerance {cap.tolerance:.3e}: "
        + ("ok" if ok else "FAILED"))
    if not ok:
        log("error: the captured tensors do not reproduce the model's attention; nothing written")
        return 1
    for L in range(len(cap.q)):
        hq, hkv = cap.q[L].shape[0], cap.k[L].shape[0]
        for h in range(hq):
            share, dist = peakedness(cap.q[L][h], cap.k[L][h * hkv // hq], cap.scale, cap.causal)
            log(f"layer {L} head {h}: rows with > 0.5 of their mass on one key {share:.3f}, "
                f"mean attention distance {dist:.1f}")
    a = {"model": model_name, "text": text.replace("\0", "\u2400"), "positions": pos,
         "scale": np.float64(cap.scale), "causal": np.int8(cap.causal),
         "capture_max_error": np.float64(cap.max_err), "dtype": dtype}
    a.update(attrs or {})
    try:
        h5layout.write_layout(out, cap.q, cap.k, cap.v, a, dtype, inputs=inputs)
    except h5layout.LayoutError as e:
        log(f"error: {e}")
        return 1
    log(f"wrote {out}: {len(cap.q)} layers, {cap.q[0].shape[0]} heads, "
        f"{cap.k[0].shape[0]} kv heads, n {n}, d {cap.q[0].shape[2]}, {dtype}")
    return 0


# ---- sources for the command line ------------------------------------------------

def hf_source(name, text, max_len):
    """A Hugging Face model: eager attention, output_attentions for the
    probabilities, the layout found from the module names."""
    try:
        import transformers
    except ImportError:
        raise CaptureError("--hf needs the transformers package (not a Debian 12 package: "
                           "pip install transformers in a venv that can see python3-torch)") from None
    tok = transformers.AutoTokenizer.from_pretrained(name)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(name, attn_implementation="eager")
    except (ValueError, TypeError):
        model = transformers.AutoModel.from_pretrained(name, attn_implementation="eager")
    model.eval().float()
    ids = tok(text, return_tensors="pt")["input_ids"][:, :max_len]
    spec = hf_spec(model)
    return model, spec, ids, tok.decode(ids[0])


def hf_spec(model):
    """The AttentionSpec of a transformers model: separate projections
    (q_proj/k_proj/v_proj or query/key/value), GPT-2's fused c_attn; rotary
    through the modeling module's apply_rotary_pos_emb when it has one."""
    cfg = model.config
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head")
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd")
    hd = getattr(cfg, "head_dim", None) or hidden // heads
    names, shape, proj = [], None, {}
    for name, m in model.named_modules():
        kids = dict(m.named_children())
        if {"q_proj", "k_proj", "v_proj"} <= kids.keys():
            names.append(name); shape = "separate"; proj = dict(q="q_proj", k="k_proj", v="v_proj")
        elif {"query", "key", "value"} <= kids.keys():
            names.append(name); shape = "separate"; proj = dict(q="query", k="key", v="value")
        elif "c_attn" in kids and "q_attn" not in kids:
            names.append(name); shape = "fused"; proj = dict(qkv="c_attn")
    if not names:
        raise CaptureError(f"{type(model).__name__}: no attention module with q_proj/k_proj/v_proj, "
                           "query/key/value or c_attn; write an AttentionSpec (docs/real-data.md)")
    mod = sys.modules[type(model.get_submodule(names[0])).__module__]
    rotary = (mod, "apply_rotary_pos_emb") if hasattr(mod, "apply_rotary_pos_emb") else None
    causal = not getattr(cfg, "is_encoder_decoder", False) and proj.get("q") != "query"
    return AttentionSpec(names, shape, heads=heads, kv_heads=kv, head_dim=hd, rotary=rotary,
                         causal=causal, probs=lambda out: out.attentions,
                         forward_kwargs=dict(output_attentions=True), **proj)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/capture", description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tinylm", metavar="WEIGHTS", help="weights written by tools/tinylm --weights")
    src.add_argument("--factory", metavar="MOD:FUNC", help="FUNC(text) -> (model, spec, input_ids)")
    src.add_argument("--hf", metavar="NAME_OR_DIR", help="a Hugging Face model (needs transformers)")
    ap.add_argument("--path", action="append", default=[], help="a folder added to sys.path (for --factory)")
    txt = ap.add_mutually_exclusive_group(required=True)
    txt.add_argument("--text", help="the text to run the model on")
    txt.add_argument("--text-file", help="a file holding it")
    ap.add_argument("--max-len", type=int, default=1024, help="keep the first N tokens (default 1024)")
    ap.add_argument("-o", "--out", required=True, help="the HDF5 file to write")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float32")
    args = ap.parse_args(argv)
    log = lambda m: print(f"capture: {m}", file=sys.stderr if m.startswith("error") else sys.stdout,
                          flush=True)
    if args.text_file:
        try:
            with open(args.text_file, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            log(f"error: {args.text_file}: {e.strerror}")
            return 1
    else:
        text = args.text
    torch.set_grad_enabled(False)
    try:
        if args.tinylm:
            from . import tinylm
            ck = torch.load(args.tinylm, map_location="cpu", weights_only=True)
            model = tinylm.TinyLM(**ck["config"])
            model.load_state_dict(ck["state_dict"])
            model.eval()
            raw = text.encode("utf-8")[:args.max_len]
            ids = torch.tensor(list(raw), dtype=torch.long)[None]
            spec, name = tinylm.capture_spec(model), f"lshlab tinylm {ck['config']}"
            text = raw.decode("utf-8", "replace")
        elif args.factory:
            sys.path[:0] = args.path
            modname, _, fname = args.factory.partition(":")
            if not fname:
                ap.error("--factory wants MODULE:FUNCTION")
            try:
                build = getattr(importlib.import_module(modname), fname)
            except (ImportError, AttributeError) as e:
                raise CaptureError(f"--factory {args.factory}: {e}") from None
            model, spec, ids = build(text)
            ids = ids[..., :args.max_len]
            name = args.factory
        else:
            model, spec, ids, text = hf_source(args.hf, text, args.max_len)
            name = args.hf
    except CaptureError as e:
        log(f"error: {e}")
        return 1
    return capture_to_file(model, spec, ids, args.out, model_name=name, text=text,
                           dtype=args.dtype, log=log,
                           inputs=(args.tinylm, args.text_file, args.hf))


if __name__ == "__main__":
    sys.exit(main())
