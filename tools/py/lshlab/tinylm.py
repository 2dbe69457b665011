"""lshlab.tinylm - train a small character-level transformer on text that every
Debian system has, then capture the Q, K, V of one held-out sequence with
lshlab.capture (run it through tools/tinylm).

The model is a tool for getting *learned* attention heads, not a language
model: a few layers, 4 heads, rotary positions, causal, trained for minutes on
one CPU thread.  Its heads are local and peaked; it has none of the structure
of a large model (no attention sinks, no long-range retrieval heads)."""

import argparse
import glob
import hashlib
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DESCRIPTION = """\
Train a small character-level (byte-level) transformer with rotary positions
and causal attention on /usr/share/common-licenses/* and
/usr/share/doc/*/copyright (files read in sorted name order, identical files
kept once, the corpus' sha256 recorded), on the CPU with one thread and a
fixed seed.  The last tenth of the corpus is held out: the validation loss is
measured on it and the captured sequence is taken from it.  Then capture Q, K,
V of every layer and head on one held-out sequence of --capture-len bytes into
an HDF5 file in lshlab's layout (/layer{L}/head{H}/{q,k,v}; SPEC 11.3), with
the provenance as root attributes."""

EPILOG = """\
examples:
  tools/tinylm --out experiments/data/tinylm.h5 --weights experiments/data/tinylm.pt
  tools/tinylm --steps 20 --out /tmp/t.h5            (a quick trial)
  tools/tinylm --capture-only --weights experiments/data/tinylm.pt --out /tmp/t.h5

exit codes: 0 ok, 1 training or capture failed (incl. the capture self-check),
2 bad command line"""

CORPUS_GLOBS = ("/usr/share/common-licenses/*", "/usr/share/doc/*/copyright")


def corpus_files():
    files = []
    for g in CORPUS_GLOBS:
        files.extend(sorted(glob.glob(g)))
    return files


def load_corpus():
    """The corpus bytes (sorted files, duplicates by content dropped, each file
    followed by a NUL) and its sha256."""
    seen = set()
    parts = []
    for path in corpus_files():
        if not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                b = f.read()
        except OSError:
            continue
        h = hashlib.sha256(b).digest()
        if h in seen:
            continue
        seen.add(h)
        parts.append(b)
        parts.append(b"\0")
    data = b"".join(parts)
    return data, hashlib.sha256(data).hexdigest(), len(seen)


# ---- the model -------------------------------------------------------------

def rotary_tables(n, head_dim, base=10000.0, device=None):
    """cos, sin of shape [n, head_dim] (each frequency used for a pair (i, i+d/2))."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    t = torch.arange(n, dtype=torch.float32)
    ang = torch.outer(t, inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(device), ang.sin().to(device)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rotary(q, k, cos, sin):
    """The model's rotary embedding (Llama's convention): q, k [B, H, n, d]."""
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class Attention(nn.Module):
    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.scale = self.head_dim ** -0.5
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, cos, sin, mask):
        B, n, _ = x.shape
        split = lambda t: t.view(B, n, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        # A module global, looked up at call time: lshlab.capture intercepts it.
        q, k = apply_rotary(q, k, cos, sin)
        s = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        s = s.masked_fill(mask, float("-inf"))
        p = F.softmax(s, dim=-1)
        y = torch.matmul(p, v).transpose(1, 2).reshape(B, n, -1)
        return self.o_proj(y)


class Block(nn.Module):
    def __init__(self, d_model, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.ln1(x), cos, sin, mask)
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, layers=3, d_model=128, heads=4, vocab=256):
        super().__init__()
        self.config = dict(layers=layers, d_model=d_model, heads=heads, vocab=vocab)
        self.embed = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx):
        n = idx.shape[1]
        hd = self.config["d_model"] // self.config["heads"]
        cos, sin = rotary_tables(n, hd, device=idx.device)
        mask = torch.ones(n, n, dtype=torch.bool, device=idx.device).triu(1)
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        return self.head(self.ln_f(x))


def capture_spec(model):
    """How lshlab.capture finds this model's attention (separate projections,
    rotary applied by this module's apply_rotary, probabilities by F.softmax)."""
    from . import capture
    return capture.AttentionSpec(
        layers="blocks.{layer}.attn", shape="separate",
        q="q_proj", k="k_proj", v="v_proj",
        heads=model.config["heads"], kv_heads=model.config["heads"],
        head_dim=model.config["d_model"] // model.config["heads"],
        rotary=(sys.modules[__name__], "apply_rotary"),
        scale=model.blocks[0].attn.scale, causal=True, probs="softmax")


# ---- training ----------------------------------------------------------------

def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        c = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (c + ("-dirty" if dirty else "")) if c else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def batches(data, n, batch, gen):
    hi = len(data) - n - 1
    while True:
        starts = torch.randint(0, hi, (batch,), generator=gen)
        x = torch.stack([data[s:s + n] for s in starts.tolist()])
        y = torch.stack([data[s + 1:s + n + 1] for s in starts.tolist()])
        yield x.long(), y.long()


@torch.no_grad()
def evaluate(model, data, n, count):
    """Mean loss over `count` evenly spaced windows of the held-out data."""
    model.eval()
    step = max(1, (len(data) - n - 1) // count)
    losses = []
    for i in range(count):
        s = i * step
        x = data[s:s + n].long()[None]
        y = data[s + 1:s + n + 1].long()[None]
        losses.append(F.cross_entropy(model(x).view(-1, 256), y.view(-1)).item())
    model.train()
    return float(np.mean(losses))


def train(args, log):
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    raw, sha, nfiles = load_corpus()
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    cut = int(len(data) * 0.9)
    tr, va = data[:cut], data[cut:]
    log(f"corpus: {nfiles} files, {len(raw)} bytes, sha256 {sha}; train {len(tr)}, held out {len(va)}")
    model = TinyLM(args.layers, args.d_model, args.heads)
    log(f"model: {sum(p.numel() for p in model.parameters())} parameters, {model.config}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    # Two phases: most steps at --short-context (cheap: attention is quadratic),
    # the last --long-steps at --context, so that the model is trained at the
    # length it is captured at.  --short-seconds cuts phase 1 (never phase 2).
    total = args.steps + args.long_steps
    short_it = batches(tr, args.short_context, args.short_batch, gen)
    long_it = batches(tr, args.context, args.batch, gen)
    t0 = time.time()
    loss_ema = None
    step = done = 0
    phase_steps = [(1, s) for s in range(1, args.steps + 1)] + \
                  [(2, args.steps + s) for s in range(1, args.long_steps + 1)]
    cut = False
    for phase, step in phase_steps:
        if phase == 1 and cut:
            continue
        lr = args.lr * min(1.0, step / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(short_it if phase == 1 else long_it)
        loss = F.cross_entropy(model(x).view(-1, 256), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done += 1
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        el = time.time() - t0
        if step % 25 == 0 or step == 1 or phase == 2 and step % 5 == 0:
            log(f"step {step}/{total} (context {x.shape[1]}) loss {loss.item():.4f} (ema {loss_ema:.4f}) "
                f"lr {lr:.2e} {el:.1f}s")
        if phase == 1 and args.short_seconds and el > args.short_seconds and not cut:
            log(f"phase 1 cut at step {step}: --short-seconds {args.short_seconds} reached")
            cut = True
    step = done
    train_time = time.time() - t0
    val = evaluate(model, va, args.context, args.eval_windows)
    log(f"trained {step} steps in {train_time:.1f}s; train loss (ema) {loss_ema:.4f}, validation loss {val:.4f} nats/byte")
    meta = dict(steps=step, train_seconds=train_time, train_loss=float(loss_ema), val_loss=val,
                corpus_sha256=sha, corpus_files=nfiles, corpus_bytes=len(raw),
                torch_version=torch.__version__, git_commit=git_commit(),
                command=" ".join(["tools/tinylm"] + sys.argv[1:]), seed=args.seed,
                context=args.context, batch=args.batch, short_context=args.short_context,
                short_batch=args.short_batch, long_steps=args.long_steps)
    return model, meta, va


def held_out_sequence(va, n):
    """A fixed held-out window starting at a file boundary-free offset (the middle)."""
    s = (len(va) - n) // 2
    return va[s:s + n].long()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/tinylm", description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the captured HDF5 file to write")
    ap.add_argument("--weights", help="save the trained weights here (or read them with --capture-only)")
    ap.add_argument("--capture-only", action="store_true", help="no training: load --weights and capture")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=1024, help="training context (default 1024)")
    ap.add_argument("--batch", type=int, default=2, help="batch at --context (default 2)")
    ap.add_argument("--long-steps", type=int, default=60, help="steps at --context, at the end (default 60)")
    ap.add_argument("--short-context", type=int, default=256, help="context of phase 1 (default 256)")
    ap.add_argument("--short-batch", type=int, default=8, help="batch of phase 1 (default 8)")
    ap.add_argument("--steps", type=int, default=1200, help="steps of phase 1 (default 1200)")
    ap.add_argument("--short-seconds", type=float, default=600,
                    help="end phase 1 after this long (0: never; default 600)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--capture-len", type=int, default=1024)
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    args = ap.parse_args(argv)
    log = lambda m: print(f"tinylm: {m}", flush=True)
    torch.set_num_threads(1)
    if args.capture_only:
        if not args.weights:
            ap.error("--capture-only needs --weights")
        ck = torch.load(args.weights, map_location="cpu", weights_only=True)
        model = TinyLM(**ck["config"])
        model.load_state_dict(ck["state_dict"])
        meta = json.loads(ck["meta_json"])
        raw, sha, _ = load_corpus()
        if sha != meta["corpus_sha256"]:
            log(f"warning: this system's corpus (sha256 {sha}) differs from the training corpus ({meta['corpus_sha256']})")
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        va = data[int(len(data) * 0.9):]
    else:
        model, meta, va = train(args, log)
        if args.weights:
            # meta as JSON: torch 1.13's weights_only loader refuses pickled floats.
            torch.save(dict(config=model.config, state_dict=model.state_dict(),
                            meta_json=json.dumps(meta)), args.weights)
            log(f"weights written to {args.weights}")
    from . import capture
    model.eval()
    ids = held_out_sequence(va, args.capture_len)
    text = bytes(ids.tolist()).decode("utf-8", "replace")
    attrs = dict(meta)  # the provenance: command, val_loss, corpus_sha256, git_commit, ...
    attrs["capture_command"] = " ".join(["tools/tinylm"] + (sys.argv[1:] if argv is None else list(argv)))
    attrs["tokens"] = np.asarray(ids.numpy(), dtype=np.uint8)  # the bytes, exactly
    rc = capture.capture_to_file(model, capture_spec(model), ids[None], args.out,
                                 model_name=f"lshlab tinylm {model.config}", text=text,
                                 dtype=args.dtype, attrs=attrs, log=log)
    return rc


if __name__ == "__main__":
    sys.exit(main())
