"""lshlab.plot - every figure an lshlab results file allows, as PDF and PNG
(run it through tools/plot, which picks a Python with h5py and matplotlib)."""

import argparse
import math
import os
import re
import sys
import textwrap
import zlib

import matplotlib

matplotlib.use("Agg")  # files only, never a window: before pyplot is imported
import h5py  # noqa: E402
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from . import results as lr  # noqa: E402

DESCRIPTION = """\
Draw every figure that an lshlab results file allows, as PDF and PNG, into
the output folder (file names: <file stem>_<figure>.<format>):

  <metric>_vs_n_hashes  out_rel_err (and every --metric) against n_hashes, one
                        panel per n_buckets, one line per strategy (and its
                        settings), mean +- standard error over repeats
  cost                  gram_recovery and mass_recall against density (the share
                        of pairs computed), with each line's Pareto front
  oracle_mass_recall    (runs with attention: {oracle: true}) mass_recall against
                        density, every point of each line, with the budget-matched
                        oracle (the best candidate set of each row's own size) at
                        the same points dashed in the line's colour: how far each
                        strategy is from the best set of its size
  oracle_out_rel_err    the same for out_rel_err and oracle_out_rel_err
  heatmap_<metric>      out_rel_err (and every --metric) over n_hashes x n_buckets,
                        one panel per strategy (and its settings)
  balance               bucket_max and bucket_entropy against n_buckets
  bucket_sizes          histograms of bucket sizes (files with dump: [buckets])
  collision             p_round against the angle, one panel per n_buckets, with
                        each strategy's published collision_prob (has_law, p_law)
                        dashed in its colour (files without law columns: SimHash's
                        (1 - theta/pi)^k in black)
  collision_any         p_any against the angle, with 1 - (1 - p_law)^H
  heads_<metric>        (a dataset with several (layer, head): real attention heads)
                        a layer x head heatmap of mass_recall (and every
                        --head-metric) at one n_hashes and n_buckets, the values
                        in the cells, one panel per strategy (and its settings)
  head_spread_<metric>  the same metric across heads, a box and a dot per
                        (layer, head), per strategy and n_buckets at that n_hashes

The head figures show the point --n-hashes / --n-buckets (default: the largest
n_hashes and the middle n_buckets), averaging over repeats only; the title says
which point it is.  When another key (say min_collisions) varies at that point,
they are not drawn and the note names the --where that picks one.  The other
figures of a multi-head dataset show the mean over its heads (their subtitle
says so; their standard errors then spread over heads too).

A file with several datasets gets one set of figures per dataset
(<stem>_<dataset>_<figure>).  A strategy has the same colour and marker in
every figure (kmeans with balanced=true its own); its settings (parameters,
mode, combine, min_collisions, sink, local) get line styles, and the legend
names what varies.  Points that failed or were skipped are left out, and each
/runs figure's title says how many (and why, for a single reason).
Figures are sized for a paper: 7 in wide (two columns) by default, 3.3 in
with --width single."""

EPILOG = """\
examples:
  tools/plot results/quickstart.h5 -o figures/
  tools/plot results/quickstart.h5 --metric gram_recovery,mass_recall --format png
  tools/plot results/collision.h5 -o figures/ --width single
  tools/plot results/real-heads.h5 --only heads,head_spread --head-metric mass_recall,gram_recovery
  tools/plot results/real-heads.h5 --only heads --n-hashes 4 --n-buckets 32 --strategy kmeans

exit codes: 0 ok (figures written), 1 unreadable file or nothing to draw,
2 bad command line, 69 no Python with h5py + matplotlib + numpy (tools/plot)"""

# Colour-blind-safe (Okabe-Ito) colours and markers, fixed per strategy name (and
# for kmeans with balanced=true, Routing Transformer's equal clusters, its own).
STRATEGY_STYLE = {
    "rotation": ("#0072B2", "o"),
    "hyperplane": ("#D55E00", "s"),
    "kmeans": ("#009E73", "^"),
    "crosspolytope": ("#CC79A7", "D"),
    "sortlsh": ("#E69F00", "v"),
    "smyrf": ("#56B4E9", "P"),
    "random": ("#999999", "X"),
    "window": ("#000000", "<"),
    "kmeans balanced": ("#8C564B", "p"),
}
OTHER_COLOURS = ["#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999", "#F0E442"]
OTHER_MARKERS = ["D", "v", "P", "X", "<", ">", "h", "*"]
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]

LABELS = {
    "out_rel_err": "output error ‖O − Ô‖/‖O‖",
    "attn_rel_err": "attention error ‖A − Â‖/‖A‖",
    "mass_recall": "softmax mass recall (share)",
    "kl": "KL(Â ‖ A) (nats)",
    "empty_rows": "empty rows (queries)",
    "gram_recovery": "Gram recovery (share of ‖QKᵀ‖²)",
    "density": "density (share of pairs computed)",
    "mean_candidates": "candidates per query (keys)",
    "bucket_max": "largest bucket / (n/B)",
    "bucket_entropy": "bucket entropy / log B",
    "hash_seconds": "hashing time (s)",
    "eval_seconds": "evaluation time (s)",
    "p_round": "P(same bucket) in one round",
    "p_any": "P(same bucket in ≥ 1 round)",
}
SHORT = {
    "out_rel_err": "output error",
    "attn_rel_err": "attention error",
    "gram_recovery": "Gram recovery",
    "mass_recall": "mass recall",
}


def label_of(metric):
    m = re.fullmatch(r"topk_recall_(\d+)", metric)
    if m:
        return f"top-{m.group(1)} recall (share)"
    return LABELS.get(metric, metric)


def style_name(name, params=""):
    """The STRATEGY_STYLE entry of a rule: the strategy's name, or "kmeans balanced"
    for kmeans with balanced=true among its parameters."""
    if name == "kmeans" and params and ("balanced", "true") in lr.split_params(params):
        return "kmeans balanced"
    return name


def strategy_style(name, params=""):
    name = style_name(name, params)
    if name in STRATEGY_STYLE:
        return STRATEGY_STYLE[name]
    h = zlib.crc32(name.encode())  # stable across runs and machines
    return OTHER_COLOURS[h % len(OTHER_COLOURS)], OTHER_MARKERS[(h // 7) % len(OTHER_MARKERS)]


def setup_matplotlib():
    plt.rcParams.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2,
        "lines.markersize": 4, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
        "savefig.dpi": 200, "pdf.fonttype": 42, "ps.fonttype": 42, "axes.spines.top": False,
        "axes.spines.right": False, "legend.frameon": False,
    })


# ---- series: one line = a strategy and its settings ------------------------------

SETTING_COLUMNS = ["mode", "chunk_size", "look_back", "window", "combine"]
# The candidate rule (SPEC 13): swept keys that make lines of their own in the
# n_hashes, cost, heatmap and oracle figures.  (The head figures do not fix them:
# when one varies at their point they name the --where that picks one.)
RULE_COLUMNS = ["min_collisions", "sink", "local"]
SERIES_COLUMNS = ["strategy", "params"] + SETTING_COLUMNS + RULE_COLUMNS


class Series:
    """The rows of one line: a strategy, its parameters and the mode settings."""

    def __init__(self, key, label, strategy, linestyle, params=""):
        self.key, self.label, self.strategy, self.linestyle = key, label, strategy, linestyle
        self.colour, self.marker = strategy_style(strategy, params)

    def style(self, **kw):
        out = dict(color=self.colour, marker=self.marker, linestyle=self.linestyle,
                   label=self.label)
        out.update(kw)
        return out


def build_series(table, columns):
    """Series keyed on the given columns (strategy first); labels show only what
    varies: the parameters that differ within a strategy, the settings that
    differ within the file."""
    cols = [c for c in columns if c in table]
    varying = {c for c in cols if len(lr.unique_in_order(table[c])) > 1}
    if "mode" in table:  # chunk settings vary only if they do among chunked rows
        chunked = table["mode"] == "chunked"
        for c in ("chunk_size", "look_back", "window"):
            if c in varying and len(set(table[c][chunked])) <= 1:
                varying.discard(c)
    params_by_strategy = {}
    if "params" in table:
        for s, p in zip(table["strategy"], table["params"]):
            params_by_strategy.setdefault(s, []).append(p)
    vary_params = {}
    for s, plist in params_by_strategy.items():
        parsed = [lr.split_params(p) for p in dict.fromkeys(plist)]
        names = list(dict.fromkeys(n for pl in parsed for n, _ in pl))
        dicts = [dict(pl) for pl in parsed]
        vary_params[s] = [n for n in names if len({d.get(n) for d in dicts}) > 1]
    series, per_strategy = {}, {}
    for key, _ in lr.group_rows(table, cols):
        rec = dict(zip(cols, key))
        s = rec["strategy"]
        parts = [s]
        if "params" in rec and vary_params.get(s):
            d = dict(lr.split_params(rec["params"]))
            parts += [f"{k}={d.get(k, 'false')}" for k in vary_params[s]]  # left out: a false trailing flag
        if "mode" in varying:
            parts.append(f"mode={rec['mode']}")
        if rec.get("mode") == "chunked":  # bucket mode has no chunk settings
            parts += [f"{c}={rec[c]}" for c in ("chunk_size", "look_back", "window")
                      if c in varying]
        if "combine" in varying:
            parts.append(f"combine={rec['combine']}")
        parts += [f"{c}={rec[c]}" for c in RULE_COLUMNS if c in varying]
        style = style_name(s, rec.get("params", ""))  # kmeans balanced: its own count
        n = per_strategy.get(style, 0)
        per_strategy[style] = n + 1
        series[key] = Series(key, " ".join(parts), s, LINESTYLES[n % len(LINESTYLES)],
                             rec.get("params", ""))
    return cols, series


def series_rows(table, cols, key):
    mask = np.ones(len(table), dtype=bool)
    for c, v in zip(cols, key):
        mask &= table[c] == v
    return table.select(mask)


# ---- layout ------------------------------------------------------------------------

def grid(n_panels, width, max_cols=None):
    """A figure of n_panels axes for a page width (inches): at most 4 panels a
    row at 7 in, 2 at 3.3 in."""
    if max_cols is None:
        max_cols = 4 if width >= 5 else 2
    cols = max(1, min(n_panels, max_cols))
    rows = int(math.ceil(n_panels / cols))
    panel_w = width / cols
    panel_h = min(2.6, max(1.7, 0.8 * panel_w))
    fig, axes = plt.subplots(rows, cols, figsize=(width, panel_h * rows + 0.2), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def legend_below(fig, handles, labels, width):
    """One legend for the figure, under the panels, in as many columns as fit."""
    if not handles:
        return
    longest = max(len(lab) for lab in labels)
    per_col = 0.6 + 0.058 * longest  # inches per legend column at 7 pt
    ncol = max(1, min(len(labels), int(width / per_col)))
    rows = int(math.ceil(len(labels) / ncol))
    ncol = int(math.ceil(len(labels) / rows))  # balanced rows: 2 + 2, not 3 + 1
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
               handlelength=2.6, columnspacing=1.2)


def unique_handles(axes):
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen)


# The kinds of figure --only selects; a figure's name is its kind, or the
# kind with a metric (heatmap_kl, mass_recall_vs_n_hashes).
FIGURE_KINDS = ("vs_n_hashes", "cost", "oracle", "heatmap", "heads", "head_spread", "balance",
                "bucket_sizes", "collision", "collision_any")


def figure_base(name):
    base = re.sub(r"^(heatmap|heads|head_spread|oracle)_.*", r"\1", name)
    return re.sub(r".*_vs_n_hashes$", "vs_n_hashes", base)


class Writer:
    def __init__(self, outdir, stem, formats, dpi, drawn=None, keep=None):
        self.outdir, self.stem, self.formats, self.dpi = outdir, stem, formats, dpi
        self.keep = keep  # the results file read: a figure never replaces it
        self.written = []
        self.subtitle = None  # what the rows of a split figure share (split_settings)
        self.heads_note = None  # "mean over N heads" for a multi-head dataset's figures
        self.left_note = None  # "left out: N failed points (...)" for /runs figures
        # What the head figures drew (matrices, values), by file name without the
        # extension: for tests and for callers that want the numbers behind a figure.
        self.drawn = {} if drawn is None else drawn

    def save(self, fig, name, tight=True, title=None, heads_note=True):
        if tight:
            fig.tight_layout(pad=0.4)
        lines = [t for t in (title, self.subtitle, self.heads_note if heads_note else None,
                             self.left_note) if t]
        if lines:
            fig.suptitle("\n".join(lines), fontsize=8, y=1.0, va="bottom")
        for fmt in self.formats:
            path = os.path.join(self.outdir, f"{self.stem}_{name}.{fmt}")
            if os.path.islink(path):
                sys.exit(f"tools/plot: error: {path} is a symbolic link; refusing to write "
                         "through it")
            if self.keep and os.path.exists(path) and os.path.samefile(path, self.keep):
                sys.exit(f"tools/plot: error: {path} is the results file being plotted; "
                         "refusing to replace it (choose another -o or --stem)")
            fig.savefig(path, dpi=self.dpi, bbox_inches="tight", pad_inches=0.03,
                        metadata={"Creator": "lshlab tools/plot"} if fmt == "pdf" else None)
            self.written.append(path)
        plt.close(fig)


def note(msg):
    print(f"tools/plot: {msg}", file=sys.stderr)


def mean_se_of(rows, metric):
    se_col = rows[metric + "_se"] if metric + "_se" in rows else None
    return lr.mean_se(rows[metric], se_col)


def errorbar(ax, x, y, se, st, **kw):
    yerr = None
    if any(s is not None for s in se):
        yerr = [0.0 if s is None else s for s in se]
    ax.errorbar(x, y, yerr=yerr, capsize=2, elinewidth=0.8, **st.style(**kw))


def log2_ticks(ax, values, axis="x"):
    values = sorted(set(int(v) for v in values))
    if axis == "x":
        ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.set_xticklabels([str(v) for v in values])
        ax.minorticks_off()
    else:
        ax.set_yscale("log", base=2)
        ax.set_yticks(values)
        ax.set_yticklabels([str(v) for v in values])


# ---- /runs figures -------------------------------------------------------------------

def fig_vs_hashes(w, runs, metric, width, name):
    hs = lr.unique_in_order(runs["n_hashes"])
    if len(hs) < 2:
        return f"{name}: only one n_hashes ({hs[0]})"
    cols, series = build_series(runs, SERIES_COLUMNS)
    bs = lr.unique_in_order(runs["n_buckets"])
    fig, axes = grid(len(bs), width)
    for ax, b in zip(axes, bs):
        rb = runs.select(runs["n_buckets"] == b)
        for key, st in series.items():
            rows = series_rows(rb, cols, key)
            if not len(rows):
                continue
            x, y, se = [], [], []
            for (h,), idx in lr.group_rows(rows, ["n_hashes"]):
                m, s = mean_se_of(rows.select(idx), metric)
                x.append(h)
                y.append(m)
                se.append(s)
            errorbar(ax, x, y, se, st)
        ax.set_title(f"n_buckets = {b}")
        if all(h > 0 and (h & (h - 1)) == 0 for h in hs):
            log2_ticks(ax, hs)  # 1, 2, 4, 8: evenly spaced
        else:
            ax.set_xticks(hs)
        ax.set_xlabel("n_hashes (hash rounds)")
    if metric in ("out_rel_err", "attn_rel_err", "kl"):  # errors spanning decades: log
        ys = [v for ax in axes for ln in ax.get_lines() for v in ln.get_ydata()]
        pos = [v for v in ys if v > 0]
        if pos and len(pos) == len(ys) and max(pos) / min(pos) > 20:
            for ax in axes:
                log_y(ax, max(pos) / min(pos))
    axes[0].set_ylabel(label_of(metric))
    for ax in axes[1:]:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(label_of(metric))
    _share_y(axes)
    legend_below(fig, *unique_handles(axes), width)
    w.save(fig, name)
    return None


def log_axis(axis, set_scale, span):
    """A log axis whose ticks are labelled (1, 2, 5 x 10^k) even when it spans
    few decades."""
    set_scale("log")
    if span < 300:
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def log_y(ax, span):
    log_axis(ax.yaxis, ax.set_yscale, span)


def _share_y(axes):
    """The same y range in every panel, so panels compare at a glance."""
    lo = min(ax.get_ylim()[0] for ax in axes)
    hi = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(lo, hi)


def fig_cost(w, runs, width, name):
    metrics = [m for m in ("gram_recovery", "mass_recall") if m in runs]
    if not metrics or "density" not in runs:
        return f"{name}: no density / recovery columns"
    cols, series = build_series(runs, SERIES_COLUMNS)
    fig, axes = grid(len(metrics), width, max_cols=2)
    for ax, metric in zip(axes, metrics):
        for key, st in series.items():
            rows = series_rows(runs, cols, key)
            pts = []
            for _, idx in lr.group_rows(rows, ["n_hashes", "n_buckets"]):
                r = rows.select(idx)
                dx, _ = mean_se_of(r, "density")
                my, sy = mean_se_of(r, metric)
                pts.append((dx, my, sy))
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            ax.scatter(x, y, s=9, color=st.colour, marker=st.marker, alpha=0.35,
                       linewidths=0)
            front = lr.pareto_front(x, y)
            fx, fy = [x[i] for i in front], [y[i] for i in front]
            fse = [pts[i][2] for i in front]
            errorbar(ax, fx, fy, fse, st)
        ax.set_xlabel(label_of("density"))
        ax.set_ylabel(label_of(metric))
        xs = runs["density"][runs["density"] > 0]
        if len(xs) and xs.max() / xs.min() > 8:
            log_axis(ax.xaxis, ax.set_xscale, xs.max() / xs.min())
        ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]), top=min(1.02, ax.get_ylim()[1]) if
                    ax.get_ylim()[1] > 0.5 else ax.get_ylim()[1])
    handles, labels = unique_handles(axes)
    handles.append(Line2D([], [], color="0.4", marker="o", linestyle="none", alpha=0.35,
                          markersize=3))
    labels.append("every (n_hashes, n_buckets); lines: Pareto fronts")
    legend_below(fig, handles, labels, width)
    w.save(fig, name)
    return None


def fig_oracle(w, runs, metric, width, name):
    """metric (mass_recall or out_rel_err) against density in one panel: every
    (n_hashes, n_buckets) point of each line (mean over repeats), with
    the budget-matched oracle (SPEC 13: the best candidate set of each row's own
    size) at the same points drawn dashed with open markers in the line's colour."""
    oracle = lr.ORACLE_COLUMNS[metric]
    if oracle not in runs or metric not in runs or "density" not in runs:
        return f"{name}: no {oracle} column (runs with attention: {{oracle: true}})"
    cols, series = build_series(runs, SERIES_COLUMNS)
    fig, axes = grid(1, width if width < 5 else width * 0.62, max_cols=1)
    ax = axes[0]
    record = {"metric": metric, "oracle": oracle, "lines": []}
    for key, st in series.items():
        rows = series_rows(runs, cols, key)
        pts = []
        for _, idx in lr.group_rows(rows, ["n_hashes", "n_buckets"]):
            r = rows.select(idx)
            dx, _ = mean_se_of(r, "density")
            my, sy = mean_se_of(r, metric)
            oy, so = mean_se_of(r, oracle)
            pts.append((dx, my, sy, oy, so))
        pts.sort(key=lambda p: p[0])
        x = [p[0] for p in pts]
        # Dashes mean the oracle here: a dashed series line becomes dash-dot.
        ls = (0, (8, 2, 2, 2)) if st.linestyle == "--" else st.linestyle
        errorbar(ax, x, [p[1] for p in pts], [p[2] for p in pts], st, markersize=3.5,
                 linestyle=ls, linewidth=1.0)
        oerr = None
        if any(p[4] is not None for p in pts):
            oerr = [0.0 if p[4] is None else p[4] for p in pts]
        ax.errorbar(x, [p[3] for p in pts], yerr=oerr, capsize=2, elinewidth=0.6,
                    color=st.colour, marker=st.marker, markerfacecolor="none",
                    markersize=3.5, linestyle=(0, (3, 2)), linewidth=0.9, alpha=0.85)
        record["lines"].append({"label": st.label, "colour": st.colour, "marker": st.marker,
                                "linestyle": st.linestyle, "density": x,
                                "value": [p[1] for p in pts], "oracle": [p[3] for p in pts]})
    ax.set_xlabel(label_of("density"))
    ax.set_ylabel(label_of(metric))
    xs = runs["density"][runs["density"] > 0]
    if len(xs) and xs.max() / xs.min() > 8:
        log_axis(ax.xaxis, ax.set_xscale, xs.max() / xs.min())
    if metric == "mass_recall":
        ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]), top=min(1.02, ax.get_ylim()[1])
                    if ax.get_ylim()[1] > 0.5 else ax.get_ylim()[1])
    else:
        ys = np.concatenate([runs[metric], runs[oracle]])
        pos = ys[ys > 0]
        if len(pos) and len(pos) == len(ys) and pos.max() / pos.min() > 20:
            log_y(ax, pos.max() / pos.min())
    handles, labels = unique_handles(axes)
    handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                          linestyle=(0, (3, 2)), linewidth=0.9, markersize=3.5))
    labels.append("dashed, open: the oracle (best set of the same size) at the same points")
    legend_below(fig, handles, labels, width)
    w.drawn[f"{w.stem}_{name}"] = record
    w.save(fig, name, title="every (n_hashes, n_buckets): the strategy (solid) and the "
           "budget-matched oracle (dashed)")
    return None


def fig_heatmap(w, runs, metric, width, name):
    hs = lr.unique_in_order(runs["n_hashes"])
    bs = lr.unique_in_order(runs["n_buckets"])
    if len(hs) < 2 and len(bs) < 2:
        return f"{name}: one n_hashes and one n_buckets"
    cols, series = build_series(runs, SERIES_COLUMNS)
    mats = []
    for key, st in series.items():
        rows = series_rows(runs, cols, key)
        m = np.full((len(bs), len(hs)), np.nan)
        for (h, b), idx in lr.group_rows(rows, ["n_hashes", "n_buckets"]):
            m[bs.index(b), hs.index(h)] = mean_se_of(rows.select(idx), metric)[0]
        mats.append((st, m))
    vals = np.concatenate([m[np.isfinite(m)] for _, m in mats])
    vmin, vmax = float(vals.min()), float(vals.max())
    if vmin == vmax:
        vmax = vmin + 1e-12
    # Errors spanning decades read better on a log colour scale.
    log = vmin > 0 and vmax / vmin > 30
    norm = (matplotlib.colors.LogNorm(vmin, vmax) if log
            else matplotlib.colors.Normalize(vmin, vmax))
    # Wide grids (many n_hashes) get wider panels, so that the numbers fit.
    max_cols = (4 if len(hs) <= 5 else 2) if width >= 5 else (2 if len(hs) <= 5 else 1)
    fig, axes = grid(len(mats), width, max_cols=max_cols)
    cols = min(len(mats), max_cols)
    cell_in = width / cols * 0.8 / len(hs)
    cmap = "viridis_r" if metric in ("out_rel_err", "attn_rel_err", "kl", "empty_rows",
                                     "bucket_max") else "viridis"
    annotate = cell_in >= 0.27 and len(bs) <= 12
    for ax, (st, m) in zip(axes, mats):
        ax.grid(False)
        im = ax.imshow(m, origin="lower", aspect="auto", cmap=cmap, norm=norm)
        ax.set_xticks(range(len(hs)))
        ax.set_xticklabels([str(h) for h in hs])
        ax.set_yticks(range(len(bs)))
        ax.set_yticklabels([str(b) for b in bs])
        ax.set_xlabel("n_hashes (hash rounds)")
        chars = max(12, int(width / cols * 11))
        ax.set_title(textwrap.fill(st.label, chars), color=st.colour)
        if annotate:
            for i in range(len(bs)):
                for j in range(len(hs)):
                    if np.isfinite(m[i, j]):
                        frac = float(norm(m[i, j]))
                        dark = frac > 0.55 if cmap == "viridis_r" else frac < 0.45
                        ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=6,
                                color="white" if dark else "black")
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("n_buckets")
        else:
            ax.set_yticklabels([])
    fig.tight_layout(pad=0.4)
    cb = fig.colorbar(im, ax=axes, shrink=0.9, pad=0.02, aspect=30)
    cb.set_label(label_of(metric))
    w.save(fig, name, tight=False)
    return None


def fig_balance(w, runs, width, name):
    if "bucket_max" not in runs or "bucket_entropy" not in runs:
        return f"{name}: no bucket_max / bucket_entropy columns"
    # Balance depends on the hashing only: one row per hash group, its largest n_hashes.
    hmax = max(runs["n_hashes"])
    r = runs.select(runs["n_hashes"] == hmax)
    first = {}
    for i, s in enumerate(r["seed"]):
        first.setdefault(s, i)
    r = r.select(np.array(sorted(first.values())))
    bs = lr.unique_in_order(r["n_buckets"])
    cols, series = build_series(r, ["strategy", "params"])
    fig, axes = grid(2, width, max_cols=2)
    for ax, metric in zip(axes, ("bucket_max", "bucket_entropy")):
        for key, st in series.items():
            rows = series_rows(r, cols, key)
            x, y, se = [], [], []
            for (b,), idx in lr.group_rows(rows, ["n_buckets"]):
                m, s = mean_se_of(rows.select(idx), metric)
                x.append(b)
                y.append(m)
                se.append(s)
            errorbar(ax, x, y, se, st)
        if all(b > 0 for b in bs) and len(bs) > 1:
            log2_ticks(ax, bs)
        ax.set_xlabel("n_buckets")
        ax.set_ylabel(label_of(metric))
    axes[0].axhline(1.0, color="0.5", lw=0.8, ls=":")
    axes[1].axhline(1.0, color="0.5", lw=0.8, ls=":")
    axes[0].set_title(f"largest bucket over {hmax} round{'s' if hmax > 1 else ''} "
                      "(1 = balanced)")
    axes[1].set_title("bucket entropy (1 = uniform)")
    legend_below(fig, *unique_handles(axes), width)
    w.save(fig, name)
    return None


def fig_bucket_sizes(w, path, runs, width, name):
    """Histograms of bucket size / (n/B) over every dumped round."""
    with h5py.File(path, "r") as f:
        if "points" not in f:
            return f"{name}: no /points (dump: [buckets] writes them)"
        dumped = {int(k): f["points"][k]["buckets"][()] for k in f["points"]
                  if k.isdigit() and "buckets" in f["points"][k]}
    if not dumped:
        return f"{name}: no /points/*/buckets (dump: [buckets] writes them)"
    ids = list(runs["point_id"])
    rows = [i for i, p in enumerate(ids) if int(p) in dumped]
    if not rows:
        return f"{name}: the dumped points are not ok rows of /runs"
    r = runs.select(np.array(rows))
    # One histogram per hash group (seed): the point with the most rounds dumped.
    best = {}
    for i in range(len(r)):
        s = r["seed"][i]
        if s not in best or r["n_hashes"][i] > r["n_hashes"][best[s]]:
            best[s] = i
    r = r.select(np.array(sorted(best.values())))
    bs = lr.unique_in_order(r["n_buckets"])
    cols, series = build_series(r, ["strategy", "params"])
    fig, axes = grid(len(bs), width)
    for ax, b in zip(axes, bs):
        rb = r.select(r["n_buckets"] == b)
        sizes_by = {}
        for key in series:
            rows = series_rows(rb, cols, key)
            sizes = []
            for p in rows["point_id"]:
                buckets = dumped[int(p)]
                n = buckets.shape[1]
                for h in range(buckets.shape[0]):
                    counts = np.bincount(buckets[h], minlength=int(b))
                    sizes.append(counts / (n / float(b)))
            if sizes:
                sizes_by[key] = np.concatenate(sizes)
        if not sizes_by:
            continue
        top = max(float(v.max()) for v in sizes_by.values())
        edges = np.linspace(0.0, max(top, 2.0) * 1.0001, 25)
        for key, v in sizes_by.items():
            st = series[key]
            hist, _ = np.histogram(v, bins=edges)
            ax.stairs(hist / len(v), edges, color=st.colour, linestyle=st.linestyle,
                      label=st.label, linewidth=1.2)
        ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"n_buckets = {b}")
        ax.set_xlabel("bucket size / (n/B)")
    axes[0].set_ylabel("share of buckets")
    for ax in axes[1:]:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("share of buckets")
    # Legend entries as lines with the strategy's marker, like every other figure.
    handles = [Line2D([], [], **series[k].style()) for k in series]
    legend_below(fig, handles, [series[k].label for k in series], width)
    w.save(fig, name)
    return None


# ---- per-head figures (results format 2: layer and head) ------------------------------

# Key columns that a head figure fixes itself or averages over; any other key that
# varies within one series at the chosen point makes the selection ambiguous.
HEAD_FIXED = {"point_id", "repeat", "seed", "status", "message", "dataset", "layer", "head",
              "n_hashes", "n_buckets", "strategy", "params"} | set(SETTING_COLUMNS)


def head_units(runs):
    """The distinct (layer, head) pairs of the rows, ascending."""
    if "layer" not in runs or "head" not in runs:
        return [(-1, -1)]
    return sorted({(int(a), int(b)) for a, b in zip(runs["layer"], runs["head"])})


def default_point(runs, n_hashes=None, n_buckets=None):
    """(n_hashes, n_buckets) of the head heatmap: the given ones, else the largest
    n_hashes and the middle n_buckets (the lower of the two middle ones)."""
    hs = lr.unique_in_order(runs["n_hashes"])
    h = max(hs) if n_hashes is None else n_hashes
    bs = lr.unique_in_order(runs["n_buckets"][runs["n_hashes"] == h])
    if n_buckets is not None:
        return int(h), int(n_buckets)
    if not bs:
        return int(h), None
    return int(h), int(bs[(len(bs) - 1) // 2])


def ambiguity(rows):
    """None, or why the rows (one series at one point) are not repeats of one
    (layer, head) each: a key column other than those the figure fixes varies.
    The reason names the column, its values and the --where that picks one."""
    for c in rows.keys():
        if c in HEAD_FIXED:
            continue
        values = lr.unique_in_order(rows[c])
        if len(values) > 1:
            shown = ", ".join(str(v) for v in values)
            return (f"{c} takes the values {shown} at this point; pick one with "
                    f"--where {c}=VALUE (e.g. --where {c}={values[0]})")
    return None


def unit_name(unit):
    """(1, 3) -> "L1 H3"; an absent axis (-1) is left out."""
    layer, head = unit
    return " ".join(([f"L{layer}"] if layer >= 0 else []) + ([f"H{head}"] if head >= 0 else []))


def failed_cells(failed, cols, key, h, b=None):
    """The (layer, head) pairs with a failed row of series key at n_hashes h (and
    n_buckets b, when given): the heads whose points failed there."""
    if failed is None or not len(failed):
        return set()
    mask = failed["n_hashes"] == h
    if b is not None:
        mask &= failed["n_buckets"] == b
    rows = series_rows(failed.select(mask), cols, key)
    if not len(rows) or "layer" not in rows:
        return set()
    return {(int(a), int(c)) for a, c in zip(rows["layer"], rows["head"])}


def head_grid(rows, metric, layers, heads):
    """(matrix, repeats): the mean of metric over the rows of each (layer, head),
    layers down, heads across (NaN where there is no row), and the row count of
    each cell."""
    m = np.full((len(layers), len(heads)), np.nan)
    n = np.zeros((len(layers), len(heads)), dtype=int)
    li = {v: i for i, v in enumerate(layers)}
    hi = {v: i for i, v in enumerate(heads)}
    for (a, b), idx in lr.group_rows(rows, ["layer", "head"]):
        i, j = li[int(a)], hi[int(b)]
        m[i, j] = mean_se_of(rows.select(idx), metric)[0]
        n[i, j] = len(idx)
    return m, n


def _failed_text(units, how):
    """"; 2 heads failed (grey): L1 H0, L1 H1", or "" without failed heads."""
    if not units:
        return ""
    k = len(units)
    return (f"; {k} head{'s' if k > 1 else ''} failed{how}: "
            + ", ".join(unit_name(u) for u in sorted(units)))


def _repeats_text(counts):
    counts = [int(c) for c in np.ravel(counts) if c > 0]
    if not counts:
        return ""
    lo, hi = min(counts), max(counts)
    if hi == 1:
        return "one run each"
    return f"mean over {lo} repeats" if lo == hi else f"mean over {lo}–{hi} repeats"


def _axis_labels(values, word):
    if list(values) == [-1]:
        return ["–"], f"({'no ' + word + ' axis'})"
    return [str(v) for v in values], word


def fig_heads(w, runs, metric, width, name, n_hashes, n_buckets, dataset_attrs=None,
              failed=None):
    """The layer x head heatmap of metric at one (n_hashes, n_buckets): one panel per
    series (strategy and its settings), values in the cells, one colour scale.
    failed, when given, are the dataset's failed rows: a head without ok rows whose
    points failed keeps its cell, grey and marked "failed", and the title names it."""
    units = sorted(set(head_units(runs)) | (set(head_units(failed))
                                            if failed is not None and len(failed) else set()))
    if len(units) < 2:
        return f"{name}: one (layer, head) only"
    h, b = default_point(runs, n_hashes, n_buckets)
    if b is None:
        return f"{name}: no rows at n_hashes = {h}"
    at = runs.select((runs["n_hashes"] == h) & (runs["n_buckets"] == b))
    if not len(at):
        return f"{name}: no ok rows at n_hashes = {h}, n_buckets = {b}"
    cols, series = build_series(runs, ["strategy", "params"] + SETTING_COLUMNS)
    layers = sorted({a for a, _ in units})
    heads = sorted({c for _, c in units})
    panels, counts, fails = [], [], []
    for key, st in series.items():
        rows = series_rows(at, cols, key)
        why = ambiguity(rows)
        if why:
            return f"{name}: {st.label}: {why}"
        m, n = head_grid(rows, metric, layers, heads)
        panels.append((st, m))
        counts.append(n)
        fails.append({u for u in failed_cells(failed, cols, key, h, b)
                      if n[layers.index(u[0]), heads.index(u[1])] == 0})
    vals = np.concatenate([m[np.isfinite(m)] for _, m in panels])
    if not len(vals):
        return f"{name}: no finite {metric} at n_hashes = {h}, n_buckets = {b}"
    vmin, vmax = float(vals.min()), float(vals.max())
    if vmin == vmax:
        vmax = vmin + 1e-12
    norm = matplotlib.colors.Normalize(vmin, vmax)
    cmap = matplotlib.colormaps["viridis_r" if metric in (
        "out_rel_err", "attn_rel_err", "kl", "empty_rows", "bucket_max") else "viridis"].copy()
    cmap.set_bad("0.85")
    nl, nh = len(layers), len(heads)
    max_cols = max(1, min(len(panels), int(width // max(1.6, 0.32 * nh + 0.6))))
    ncols = min(len(panels), max_cols)
    nrows = int(math.ceil(len(panels) / ncols))
    panel_w = width / ncols
    cell_in = panel_w * 0.78 / nh
    # cells at most about as tall as a wide heatmap's: one head selected
    # (--where head=2) must not stretch its column into a poster
    panel_h = min(4.0, max(1.2, min(cell_in, 0.45) * nl + 0.75))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel_h * nrows + 0.3),
                             squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    axes = flat[:len(panels)]
    annotate = cell_in >= 0.24 and nl <= 40
    hlabels, hword = _axis_labels(heads, "head")
    llabels, lword = _axis_labels(layers, "layer")
    kv = (dataset_attrs or {}).get("kv_heads")
    try:
        kv = int(np.ravel(kv)[0]) if kv is not None else None
    except (TypeError, ValueError, IndexError):
        kv = None
    if kv is not None and 0 < kv < nh and hword == "head":
        hword = f"query head ({kv} key/value heads)"
    record = {"metric": metric, "n_hashes": h, "n_buckets": b, "layers": layers,
              "heads": heads, "panels": [], "size": tuple(fig.get_size_inches())}
    for ax, (st, m), n, bad in zip(axes, panels, counts, fails):
        ax.grid(False)
        im = ax.imshow(np.ma.masked_invalid(m), origin="upper", aspect="auto", cmap=cmap,
                       norm=norm, interpolation="nearest")
        ax.set_xticks(range(nh))
        ax.set_xticklabels(hlabels)
        ax.set_yticks(range(nl))
        ax.set_yticklabels(llabels)
        ax.tick_params(length=0)
        ax.set_xlabel(hword)
        ax.set_title(textwrap.fill(st.label, max(12, int(panel_w * 11))), color=st.colour)
        texts = []
        if annotate:
            for i in range(nl):
                for j in range(nh):
                    if np.isfinite(m[i, j]):
                        frac = float(norm(m[i, j]))
                        dark = frac > 0.55 if cmap.name.endswith("_r") else frac < 0.45
                        t = f"{m[i, j]:.2f}" if abs(m[i, j]) < 100 else f"{m[i, j]:.3g}"
                        ax.text(j, i, t, ha="center", va="center", fontsize=6,
                                color="white" if dark else "black")
                        texts.append((i, j, t))
                    elif (layers[i], heads[j]) in bad:
                        ax.text(j, i, "failed", ha="center", va="center", fontsize=5,
                                color="#a00000")
                        texts.append((i, j, "failed"))
                    elif n[i, j] == 0:
                        ax.text(j, i, "n/a", ha="center", va="center", fontsize=5,
                                color="0.4")
        record["panels"].append({"label": st.label, "strategy": st.strategy,
                                 "colour": st.colour, "matrix": m, "repeats": n,
                                 "image": np.ma.filled(im.get_array().astype(float), np.nan),
                                 "texts": texts})
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(lword)
        else:
            ax.set_yticklabels([])
    fig.tight_layout(pad=0.4)
    cb = fig.colorbar(im, ax=axes, shrink=0.9, pad=0.02, aspect=30)
    cb.set_label(SHORT.get(metric, metric))
    title = (f"{SHORT.get(metric, metric)} per head at n_hashes = {h}, n_buckets = {b}; "
             f"{_repeats_text(np.concatenate([c.ravel() for c in counts]))}")
    title += _failed_text(set().union(*fails), " (grey)")
    record["title"] = title
    w.drawn[f"{w.stem}_{name}"] = record
    w.save(fig, name, tight=False, title=textwrap.fill(title, int(width * 16)),
           heads_note=False)
    return None


def fig_head_spread(w, runs, metric, width, name, n_hashes, baseline=None, failed=None):
    """The spread over heads of metric, per series and n_buckets at one n_hashes:
    a box (quartiles, whiskers to 1.5 IQR) and a dot per (layer, head).  baseline,
    when given, is (dataset name, its rows): the mean of metric over all its rows
    (heads and repeats) at the same series, n_hashes and n_buckets is drawn as a
    black dashed bar across each box (say, Gaussian data of the same shape)."""
    units = head_units(runs)
    if len(units) < 2:
        return f"{name}: one (layer, head) only"
    h, _ = default_point(runs, n_hashes, None)
    at = runs.select(runs["n_hashes"] == h)
    if not len(at):
        return f"{name}: no ok rows at n_hashes = {h}"
    bs = lr.unique_in_order(at["n_buckets"])
    cols, series = build_series(runs, ["strategy", "params"] + SETTING_COLUMNS)
    layers = sorted({a for a, _ in units})
    heads = sorted({c for _, c in units})
    groups, counts, lost = [], [], set()
    for bi, b in enumerate(bs):
        ab = at.select(at["n_buckets"] == b)
        for si, (key, st) in enumerate(series.items()):
            rows = series_rows(ab, cols, key)
            if not len(rows):
                continue
            why = ambiguity(rows)
            if why:
                return f"{name}: {st.label}, n_buckets = {b}: {why}"
            m, n = head_grid(rows, metric, layers, heads)
            keep = np.isfinite(m)
            lost |= {u for u in failed_cells(failed, cols, key, h, b)
                     if u not in units or not keep[layers.index(u[0]), heads.index(u[1])]}
            groups.append((bi, si, b, st, m[keep], [(layers[i], heads[j])
                                                   for i, j in zip(*np.nonzero(keep))]))
            counts.append(n)
    if not groups:
        return f"{name}: no ok rows at n_hashes = {h}"
    base_name, base_rows = baseline if baseline else (None, None)
    if base_rows is not None:
        base_rows = base_rows.select(base_rows["n_hashes"] == h)
    ns = len(series)
    slot = 0.8 / ns
    fig_w = width
    fig, ax = plt.subplots(figsize=(fig_w, 2.6))
    record = {"metric": metric, "n_hashes": h, "n_buckets": list(bs), "groups": []}
    for bi, si, b, st, values, which in groups:
        x0 = bi + (si - (ns - 1) / 2.0) * slot
        if len(values) >= 2:
            bp = ax.boxplot([values], positions=[x0], widths=slot * 0.7, patch_artist=True,
                            showfliers=False, manage_ticks=False)
            for patch in bp["boxes"]:
                patch.set_facecolor(matplotlib.colors.to_rgba(st.colour, 0.18))
                patch.set_edgecolor(st.colour)
            for part in ("whiskers", "caps", "medians"):
                for ln in bp[part]:
                    ln.set_color(st.colour)
                    ln.set_linewidth(1.0)
        # The dots: heads in (layer, head) order, spread evenly across the box.
        k = len(values)
        offs = np.linspace(-slot * 0.28, slot * 0.28, k) if k > 1 else np.zeros(k)
        pc = ax.scatter(x0 + offs, values, s=10, color=st.colour, marker=st.marker,
                        edgecolors="white", linewidths=0.3, zorder=3, label=st.label)
        base = None
        if base_rows is not None:
            br = series_rows(base_rows.select(base_rows["n_buckets"] == b), cols, st.key)
            if len(br):
                base = mean_se_of(br, metric)[0]
                ax.plot([x0 - slot * 0.45, x0 + slot * 0.45], [base, base], color="black",
                        linestyle=(0, (3, 1.5)), linewidth=1.1, zorder=4)
        record["groups"].append({"label": st.label, "strategy": st.strategy, "baseline": base,
                                 "colour": st.colour, "n_buckets": b, "units": which,
                                 "values": np.array(values),
                                 "points": np.array(pc.get_offsets())[:, 1].copy(),
                                 "point_colour": matplotlib.colors.to_hex(
                                     pc.get_facecolor()[0])})
    ax.set_xticks(range(len(bs)))
    ax.set_xticklabels([str(b) for b in bs])
    ax.set_xlim(-0.5, len(bs) - 0.5)
    ax.set_xlabel("n_buckets")
    ax.set_ylabel(label_of(metric))
    ax.grid(True, axis="y")
    ax.grid(False, axis="x")
    handles = [Line2D([], [], color=st.colour, marker=st.marker, linestyle="none",
                      label=st.label) for st in series.values()]
    labels = [st.label for st in series.values()]
    if any(g["baseline"] is not None for g in record["groups"]):
        handles.append(Line2D([], [], color="black", linestyle=(0, (3, 1.5)), linewidth=1.1))
        labels.append(f"{base_name}: mean over its rows")
    legend_below(fig, handles, labels, width)
    title = (f"{SHORT.get(metric, metric)} across {len(units)} heads at n_hashes = {h}: "
             "a dot per (layer, head), "
             f"{_repeats_text(np.concatenate([c.ravel() for c in counts]))}; "
             "boxes: quartiles, whiskers to 1.5 IQR")
    title += _failed_text(lost, ", left out")
    record["title"] = title
    w.drawn[f"{w.stem}_{name}"] = record
    w.save(fig, name, title=textwrap.fill(title, int(width * 16)), heads_note=False)
    return None


# ---- /collision figures --------------------------------------------------------------

def simhash_law(theta_deg, b):
    k = math.log2(b)
    return (1.0 - np.asarray(theta_deg) / 180.0) ** k


def fig_collision(w, col, width, name, which):
    hmax = max(col["n_hashes"])
    c = col.select(col["n_hashes"] == hmax)
    bs = lr.unique_in_order(c["n_buckets"])
    cols, series = build_series(c, ["strategy", "params"])
    fig, axes = grid(len(bs), width, max_cols=3 if width >= 5 else 2)
    theta = np.linspace(0.0, 180.0, 181)
    # Files with law columns draw each rule's own law; older ones SimHash's in black.
    laws = "has_law" in col.order
    record = {"which": which, "laws": [], "simhash": not laws}
    for ax, b in zip(axes, bs):
        cb = c.select(c["n_buckets"] == b)
        for key, st in series.items():
            rows = series_rows(cb, cols, key)
            if not len(rows):
                continue
            order = np.argsort(rows["angle"])
            x = rows["angle"][order]
            y = rows[which][order]
            se = rows[which + "_se"][order]
            if which == "p_round":  # a log axis: zeros (no pair collided) cannot show
                keep = y > 0
                x, y, se = x[keep], y[keep], se[keep]
            ax.errorbar(x, y, yerr=se, capsize=2, elinewidth=0.8, **st.style())
            lr_rows = rows.select(rows["has_law"] != 0)
            if len(lr_rows):  # the published collision_prob at the measured angles
                o = np.argsort(lr_rows["angle"])
                lx, ly = lr_rows["angle"][o], lr_rows["p_law"][o]
                if which == "p_any":
                    ly = 1.0 - (1.0 - ly) ** hmax
                else:
                    lx, ly = lx[ly > 0], ly[ly > 0]
                ax.plot(lx, ly, color=st.colour, lw=0.9, ls=(0, (4, 2)), zorder=1,
                        label=f"{st.label}: law")
                record["laws"].append({"label": st.label, "n_buckets": int(b),
                                       "colour": st.colour, "angle": list(lx),
                                       "p": list(ly)})
        if not laws and b > 0 and (b & (b - 1)) == 0:
            law = simhash_law(theta, b)
            if which == "p_any":
                law = 1.0 - (1.0 - law) ** hmax
            ax.plot(theta, law, color="black", lw=0.8, ls=(0, (4, 2)), zorder=0,
                    label="SimHash law " + (r"$(1 - \theta/\pi)^k$" if which == "p_round"
                                            else r"$1 - (1 - (1 - \theta/\pi)^k)^H$"))
        ax.set_title(f"n_buckets = {b}" + (f" (k = {int(math.log2(b))})"
                                           if b > 0 and (b & (b - 1)) == 0 else ""))
        ax.set_xlabel("angle θ (degrees)")
        ax.set_xticks([0, 45, 90, 135, 180])
        ax.set_xlim(0, 180)
        if which == "p_round":
            ax.set_yscale("log")
            lo = min((v for ln in ax.get_lines() for v in np.atleast_1d(ln.get_ydata())
                      if v > 0), default=1e-3)
            ax.set_ylim(max(lo * 0.5, 1e-6), 1.3)
        else:
            ax.set_ylim(-0.02, 1.02)
    label = label_of(which) + (f", H = {hmax}" if which == "p_any" else "")
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(label)
    handles, labels = unique_handles(axes)
    # The law last, series first.
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("SimHash"))
    if laws:
        handles = [h for h, lab in zip(handles, labels) if not lab.endswith(": law")]
        labels = [lab for lab in labels if not lab.endswith(": law")]
        order = list(range(len(labels)))
        if (c["has_law"] != 0).any():
            handles.append(Line2D([], [], color="0.3", lw=0.9, ls=(0, (4, 2))))
            labels.append("dashed: the rule's published collision_prob"
                          + (r" $p$" if which == "p_round" else r", $1 - (1 - p)^H$"))
            order.append(len(labels) - 1)
    none = [st.label for key, st in series.items()
            if laws and not (series_rows(c, cols, key)["has_law"] != 0).any()]
    extra = ("\nno published collision_prob: " + textwrap.shorten(", ".join(none), 120)
             if none else "")
    pairs = int(col["pairs"][0])
    legend_below(fig, [handles[i] for i in order],
                 [labels[i] for i in order], width)
    fig.suptitle((f"{pairs} pairs per angle, d = {_collision_d(col)}, mean ± se over "
                  f"{hmax} rounds" if which == "p_round" else
                  f"{pairs} pairs per angle, d = {_collision_d(col)}") + extra, fontsize=7,
                 y=1.0)
    record["no_law"] = none
    w.drawn[f"{w.stem}_{name}"] = record
    w.save(fig, name)
    return None


def _collision_d(col):
    m = re.search(r"collision:\s*\n\s*d:\s*(\d+)", col.attrs.get("resolved_config", ""))
    return m.group(1) if m else "?"


# ---- main ------------------------------------------------------------------------------

MAX_SERIES = 10


def split_settings(runs):
    """[(file name suffix, rows)]: the whole table, or, when strategies x settings
    would draw more than MAX_SERIES lines, one table per setting (mode, chunk_size,
    look_back, window, combine), so that every figure stays readable."""
    settings = [c for c in SETTING_COLUMNS + RULE_COLUMNS
                if c in runs and len(lr.unique_in_order(runs[c])) > 1]
    _, series = build_series(runs, SERIES_COLUMNS)
    if not settings or len(series) <= MAX_SERIES:
        return [("", runs, None)]
    out = []
    for key, idx in lr.group_rows(runs, settings):
        rec = dict(zip(settings, key))
        i = idx[0]
        parts, words = [], []
        if set(settings) - {"combine"} - set(RULE_COLUMNS):
            if runs["mode"][i] == "chunked":
                parts.append(f"chunked-c{runs['chunk_size'][i]}-lb{runs['look_back'][i]}"
                             f"-{runs['window'][i]}")
                words.append(f"mode chunked, chunk_size {runs['chunk_size'][i]}, look_back "
                             f"{runs['look_back'][i]}, window {runs['window'][i]}")
            else:
                parts.append("bucket")
                words.append("mode bucket")
        if "combine" in rec:
            parts.append(rec["combine"])
            words.append(f"combine {rec['combine']}")
        for c, short in (("min_collisions", "t"), ("sink", "sink"), ("local", "local")):
            if c in rec:
                parts.append(f"{short}{rec[c]}")
                words.append(f"{c} {rec[c]}")
        out.append(("_" + "_".join(parts), runs.select(idx), "; ".join(words)))
    return out


def left_out_note(runs):
    """None when every row is ok, else what the figures leave out: "left out: 3
    failed points (the reason, when they share one), 2 skipped points"."""
    if runs is None or "status" not in runs or not len(runs):
        return None
    parts = []
    for status in lr.unique_in_order(runs["status"]):
        if status == "ok":
            continue
        rows = runs.select(runs["status"] == status)
        what = f"{len(rows)} {status} point{'s' if len(rows) != 1 else ''}"
        reasons = lr.unique_in_order(rows["message"]) if "message" in rows else []
        if len(reasons) == 1 and reasons[0]:
            r = reasons[0] if len(reasons[0]) <= 90 else reasons[0][:87] + "..."
            what += f" ({r})"
        elif len(reasons) > 1:
            what += f" ({len(reasons)} different reasons)"
        parts.append(what)
    return "left out: " + ", ".join(parts) if parts else None


def main(argv=None, drawn=None):
    """Run tools/plot; drawn, when a dict, receives what the head, oracle and
    collision figures drew (Writer.drawn) by output file name without extension."""
    ap = argparse.ArgumentParser(prog="tools/plot", description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="results file (HDF5) written by lshlab run")
    ap.add_argument("-o", "--output", default="figures", metavar="DIR",
                    help="folder for the figures (created; default: figures/)")
    ap.add_argument("-m", "--metric", action="append", default=[], metavar="M",
                    help="more metrics for the n_hashes and heatmap figures "
                         "(repeat or comma-separate, e.g. gram_recovery,mass_recall)")
    ap.add_argument("-f", "--format", default="pdf,png", metavar="FMTS",
                    help="comma-separated formats (default: pdf,png)")
    ap.add_argument("-w", "--width", default="double", metavar="W",
                    help="figure width: double (7 in), single (3.3 in) or inches (1 to 40)")
    ap.add_argument("--dpi", type=int, default=200,
                    help="PNG resolution, 10 to 2400 (default: 200)")
    ap.add_argument("--only", metavar="NAMES",
                    help="draw only these figures (comma-separated, e.g. cost,collision "
                         "or heads,head_spread)")
    ap.add_argument("--dataset", metavar="NAMES",
                    help="draw the /runs figures of these datasets only (comma-separated)")
    ap.add_argument("--stem", help="file name prefix, without '/' (default: the results "
                                   "file's stem); a figure never replaces the results file")
    heads = ap.add_argument_group("per-head figures (files whose datasets have several "
                                  "(layer, head))")
    heads.add_argument("--head-metric", action="append", default=[], metavar="M",
                       help="metrics of the heads and head_spread figures (repeat or "
                            "comma-separate; default: mass_recall)")
    heads.add_argument("--n-hashes", type=int, metavar="H",
                       help="n_hashes of the head figures (default: the largest)")
    heads.add_argument("--n-buckets", type=int, metavar="B",
                       help="n_buckets of the heads heatmap (default: the middle one)")
    heads.add_argument("--baseline", metavar="DATASET",
                       help="another dataset of the file (e.g. Gaussian data of the same "
                            "shape) whose mean the head_spread figure marks on each box")
    rows = ap.add_argument_group("row selection (every /runs figure)")
    rows.add_argument("--strategy", metavar="NAMES",
                      help="draw only these strategies (comma-separated)")
    rows.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                      help="keep only rows whose key column COL equals VALUE (repeatable, "
                           "e.g. --where combine=union --where params=orthogonal=true)")
    args = ap.parse_args(argv)

    width = {"double": 7.0, "single": 3.3}.get(args.width)
    if width is None:
        try:
            width = float(args.width)
        except ValueError:
            width = math.nan
        if not 1.0 <= width <= 40.0:
            ap.error(f"--width: double, single or a number of inches from 1 to 40, got "
                     f"'{args.width}'")
    if not 10 <= args.dpi <= 2400 or width * args.dpi > 60000:
        ap.error(f"--dpi: from 10 to 2400, and width x dpi at most 60000 pixels, got "
                 f"{args.dpi} at width {width:g}")
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    if not formats:
        ap.error(f"--format: pdf, png or svg (comma-separated), got '{args.format}'")
    for f in formats:
        if f not in ("pdf", "png", "svg"):
            ap.error(f"--format: pdf, png or svg, got '{f}'")
    if args.stem is not None and (not args.stem or "/" in args.stem or "\0" in args.stem
                                  or args.stem in (".", "..")):
        ap.error(f"--stem: a file name prefix without '/', got '{args.stem}'")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        ap.error(f"-o: '{args.output}' exists and is not a folder")
    extra = [m.strip() for ms in args.metric for m in ms.split(",") if m.strip()]
    head_metrics = [m.strip() for ms in args.head_metric for m in ms.split(",")
                    if m.strip()] or ["mass_recall"]
    head_metrics = list(dict.fromkeys(head_metrics))
    only = {s.strip() for s in args.only.split(",") if s.strip()} if args.only else None
    for x in sorted(only or ()):
        if figure_base(x) not in FIGURE_KINDS:
            ap.error(f"--only: no figure '{x}'; figures: {', '.join(FIGURE_KINDS)} (or a "
                     "metric's, e.g. heatmap_kl or mass_recall_vs_n_hashes)")
    if only is not None and not only:
        ap.error(f"--only: no figure named in '{args.only}'")

    try:
        runs = lr.read_table(args.file, "runs")
        col = lr.read_table(args.file, "collision")
        ds_attrs = lr.read_datasets(args.file)
    except lr.FormatError as e:
        print(f"tools/plot: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"tools/plot: error: cannot read '{args.file}': {lr.why_unreadable(args.file, e)}",
              file=sys.stderr)
        return 1
    if runs is None and col is None:
        print(f"tools/plot: error: '{args.file}' has neither /runs nor /collision",
              file=sys.stderr)
        return 1
    metrics = ["out_rel_err"] + [m for m in extra if m != "out_rel_err"]
    if runs is not None:
        for m in extra:
            if m not in runs or runs[m].dtype.kind not in "fiu":
                ap.error(f"--metric: no numeric column '{m}' in /runs; metrics: "
                         + ", ".join(runs.metrics()))
        for m in head_metrics:
            if m not in runs.metrics():
                ap.error(f"--head-metric: no numeric column '{m}' in /runs; metrics: "
                         + ", ".join(runs.metrics()))
        try:
            runs = lr.where(runs, lr.parse_where(args.where, runs))
        except ValueError as e:
            ap.error(str(e))
        if args.strategy:
            names = lr.unique_in_order(runs["strategy"])
            chosen = [x.strip() for x in args.strategy.split(",") if x.strip()]
            for x in chosen:
                if x not in names:
                    ap.error(f"--strategy: no rows of strategy '{x}'; strategies: "
                             + ", ".join(names))
            runs = runs.select(np.isin(runs["strategy"], chosen))
        ok_all = lr.ok_runs(runs)
        for opt, colname, v in (("--n-hashes", "n_hashes", args.n_hashes),
                                ("--n-buckets", "n_buckets", args.n_buckets)):
            if v is not None:
                have = lr.unique_in_order(ok_all[colname])
                if v not in have:
                    ap.error(f"{opt}: no ok rows with {colname} = {v}; {colname}: "
                             + ", ".join(str(x) for x in have))
        if args.baseline is not None:
            names = lr.unique_in_order(ok_all["dataset"])
            if args.baseline not in names:
                ap.error(f"--baseline: no ok rows of dataset '{args.baseline}'; datasets: "
                         + ", ".join(names))
    elif (args.where or args.strategy or args.head_metric or args.n_hashes or args.n_buckets
          or args.baseline):
        ap.error("--where, --strategy, --head-metric, --n-hashes, --n-buckets and --baseline "
                 "select rows "
                 f"of /runs, and '{args.file}' has none (a collision experiment)")
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        print(f"tools/plot: error: cannot create the folder '{args.output}': {e.strerror}",
              file=sys.stderr)
        return 1
    setup_matplotlib()
    stem = args.stem or os.path.splitext(os.path.basename(args.file))[0]
    skipped = []

    def want(name):
        return only is None or name in only or figure_base(name) in only

    written = []
    if runs is not None:
        ok = lr.ok_runs(runs)
        if len(ok) < len(runs):
            note(f"{len(runs) - len(ok)} rows of /runs are not ok (skipped or failed) and "
                 "are left out")
        datasets = lr.unique_in_order(ok["dataset"]) if len(ok) else []
        if args.dataset:
            chosen = [d.strip() for d in args.dataset.split(",") if d.strip()]
            for d in chosen:
                if d not in datasets:
                    ap.error(f"--dataset: no ok rows of dataset '{d}'; datasets: "
                             + ", ".join(datasets))
            named = len(datasets) > 1
            datasets = chosen
        else:
            named = len(datasets) > 1
        def baseline(ds):
            if args.baseline is None or args.baseline == ds:
                return None
            return args.baseline, ok.select(ok["dataset"] == args.baseline)

        for ds in datasets:
            r = ok.select(ok["dataset"] == ds)
            bad = (runs.select((runs["dataset"] == ds) & (runs["status"] == "failed"))
                   if "status" in runs else None)
            w = Writer(args.output, f"{stem}_{ds}" if named else stem, formats, args.dpi,
                       drawn, keep=args.file)
            w.left_note = left_out_note(runs.select(runs["dataset"] == ds))
            units = head_units(r)
            lost = sorted(set(head_units(bad)) - set(units)) if bad is not None and len(bad) \
                else []
            if len(units) > 1:
                nl = len({a for a, _ in units})
                nh = len({b for _, b in units})
                w.heads_note = (f"mean over the {len(units)} heads of {ds}"
                                + (f" ({nl} layers × {nh} heads)" if nl > 1 else "")
                                + _failed_text(lost, ", left out")
                                + "; error bars, where drawn, spread over heads and repeats")
            elif lost:
                w.heads_note = f"{unit_name(units[0])} of {ds}" + _failed_text(lost, ", left out")
            units = units + lost
            jobs = []
            for suffix, rs, subtitle in split_settings(r):
                jobs.append((None, lambda t=subtitle: setattr(w, "subtitle", t)))
                jobs += [(f"{m}_vs_n_hashes", lambda m=m, rs=rs, n=f"{m}_vs_n_hashes{suffix}":
                          fig_vs_hashes(w, rs, m, width, n)) for m in metrics]
                jobs.append(("cost", lambda rs=rs, n=f"cost{suffix}": fig_cost(w, rs, width, n)))
                for om in lr.ORACLE_COLUMNS:
                    if lr.has_oracle(rs, om) or (only and f"oracle_{om}" in only):
                        jobs.append((f"oracle_{om}", lambda om=om, rs=rs,
                                     n=f"oracle_{om}{suffix}": fig_oracle(w, rs, om, width, n)))
                jobs += [(f"heatmap_{m}", lambda m=m, rs=rs, n=f"heatmap_{m}{suffix}":
                          fig_heatmap(w, rs, m, width, n)) for m in metrics]
                if len(units) > 1 or (only and ({"heads", "head_spread"} & only)):
                    jobs += [(f"heads_{m}", lambda m=m, rs=rs, n=f"heads_{m}{suffix}":
                              fig_heads(w, rs, m, width, n, args.n_hashes, args.n_buckets,
                                        ds_attrs.get(ds), bad)) for m in head_metrics]
                    jobs += [(f"head_spread_{m}", lambda m=m, rs=rs,
                              n=f"head_spread_{m}{suffix}":
                              fig_head_spread(w, rs, m, width, n, args.n_hashes,
                                              baseline(ds), bad))
                             for m in head_metrics]
            jobs.append((None, lambda: setattr(w, "subtitle", None)))
            jobs.append(("balance", lambda: fig_balance(w, r, width, "balance")))
            jobs.append(("bucket_sizes",
                         lambda: fig_bucket_sizes(w, args.file, r, width, "bucket_sizes")))
            for name, job in jobs:
                if name is None or want(name):
                    why = job()
                    if why:
                        skipped.append(f"{ds}: {why}" if named else why)
            written += w.written
        if not datasets:
            skipped.append("/runs figures: no ok rows")
    if col is not None:
        w = Writer(args.output, stem, formats, args.dpi, drawn, keep=args.file)
        for name, which in (("collision", "p_round"), ("collision_any", "p_any")):
            if want(name) and len(col):
                fig_collision(w, col, width, name, which)
        written += w.written
    for s in skipped:
        note(f"not drawn: {s}")
    for p in written:
        print(p)
    if not written:
        print("tools/plot: error: nothing to draw", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
