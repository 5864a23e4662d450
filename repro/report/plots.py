"""Plots the notebooks show (learning curves, metric-vs-p); each returns its matplotlib figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from repro.names import CODES, METRIC_NAME, P_VALUES
from repro.names import PAPER_TAUS
from repro.report.claims import interval
from repro.report.results import PAPER_CLASS
from repro.report.tables import table4, table5


def learning_curves(results: dict[str, dict[str, Any]], title: str = ""):
    """Training loss and validation score per epoch, one line per run; the restored epoch is marked."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, res in results.items():
        hist = res.get("history", [])
        if not hist:
            continue
        ep = [h["epoch"] for h in hist]
        line, = ax_loss.plot(ep, [h.get("train/total", float("nan")) for h in hist], marker=".", label=name)
        ax_val.plot(ep, [h["val/score"] for h in hist], marker=".", color=line.get_color(), label=name)
        best = res.get("best_epoch")
        if best:
            ax_val.plot([best], [res["best_val_score"]], marker="*", markersize=12, color=line.get_color())
    ax_loss.set(xlabel="epoch", ylabel="training loss (total)", title="training loss")
    ax_val.set(xlabel="epoch", ylabel="validation score (mean primary metric)", title="validation (★ restored)")
    ax_val.legend(fontsize=8, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def setup_plots(dpi: int = 90) -> None:
    """Modest figure resolution and font sizes (keeps the HTML report small)."""
    import matplotlib as mpl

    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9, "axes.titlesize": 10,
                         "legend.fontsize": 8})


def _empty(ax, text="no results yet"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")


def plot_metric_vs_p(df: pd.DataFrame, models=("M1 (T1+T2+T3)", "M2", "M3", "M3+ensemble")):
    """Metric vs labeled fraction p per task: ours (mean ± std over seeds, solid), the paper (dashed) and
    the baselines (grey) where the results have them."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    t5 = table5(df, ps=P_VALUES)
    for ax, tt in zip(axes, CODES):
        drawn = False
        for i, label in enumerate(models):
            if label not in t5.index.get_level_values(0):
                continue
            drawn |= _ours_vs_paper(ax, t5.loc[label], tt, colors[i % len(colors)], label)
        for label, ls in (("Majority class", ":"), ("Most frequent caption", ":"), ("LR probe (frozen features)", "-.")):
            if label in t5.index.get_level_values(0):  # baselines: grey, no paper counterpart
                b = t5.loc[label]
                b = b[b[(tt, "n")] > 0]
                if len(b):
                    ax.plot(b.index, b[(tt, "mean")], ls=ls, color="0.45", lw=1.2, label=label)
        if not drawn:
            _empty(ax, "no results of ours yet")
        ax.set(title=f"{tt}: {METRIC_NAME[tt]}", xlabel="labeled fraction p (%)", xticks=list(P_VALUES))
    axes[0].set_ylabel("test score")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14 if handles else 0, 1, 1))
    return fig


def _ours_vs_paper(ax, rows: pd.DataFrame, tt: str, color, label: str) -> bool:
    """Our mean ± std over seeds (solid, error bars) and the paper's values (dashed) of task ``tt``."""
    ours = rows[rows[(tt, "n")] > 0]
    if len(ours):
        ax.errorbar(ours.index, ours[(tt, "mean")], yerr=ours[(tt, "std")].fillna(0), marker="o", ms=4,
                    capsize=3, color=color, label=f"{label} (ours)")
    paper = rows[(tt, "paper")].dropna()
    if len(paper):
        ax.plot(paper.index, paper, ls="--", marker=".", color=color, alpha=0.7, label=f"{label} (paper)")
    return bool(len(ours))


def plot_tau(df: pd.DataFrame):
    """Paper Table 4 as curves: test score vs τ per task at the smallest and largest p with τ runs."""
    import matplotlib.pyplot as plt

    t4 = table4(df)
    ps = sorted(set(t4.index.get_level_values("p"))) if not t4.empty else []
    ps = sorted({ps[0], ps[-1]}) if ps else []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, tt in zip(axes, CODES):
        drawn = False
        for i, p in enumerate(ps):
            drawn |= _ours_vs_paper(ax, t4.xs(p, level="p"), tt, f"C{i}", f"p={p}")
        if not drawn:
            _empty(ax, "no τ-study results yet")
        ax.set_xscale("log")
        ax.set_xticks(list(PAPER_TAUS), [f"{t:g}" for t in PAPER_TAUS])
        ax.set(title=f"{tt}: {METRIC_NAME[tt]}", xlabel="temperature τ")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test score")
    fig.tight_layout()
    return fig


def plot_topk_by_class(tk: pd.DataFrame):
    """Paper Fig. 4: grouped bars of top-k (k = 1..5) per T1 class; ★ marks the paper's values."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    if tk is None or tk.empty or not (tk[[(f"top{k}", "n") for k in range(1, 6)]].to_numpy() > 0).any():
        _empty(ax, "no T2 results yet")
        return fig
    x = np.arange(len(tk))
    w = 0.16
    for k in range(1, 6):
        key = f"top{k}"
        ax.bar(x + (k - 3) * w, tk[(key, "mean")], w, yerr=tk[(key, "std")].fillna(0), capsize=2, label=f"top-{k}")
        paper = tk[(key, "paper")]
        ok = paper.notna().to_numpy()
        if ok.any():
            labelled = "paper" in ax.get_legend_handles_labels()[1]
            ax.plot((x + (k - 3) * w)[ok], paper[ok], "k*", ms=9, label=None if labelled else "paper")
    ax.set_xticks(x, list(tk.index), rotation=15)
    model = tk.attrs.get("model")
    ax.set(ylim=(0, 1.05), ylabel="T2 accuracy", title=f"T2 top-k per T1 class: {model}" if model else "")
    ax.legend(ncol=4, fontsize=7)
    fig.tight_layout()
    return fig


def plot_confusion(t6: pd.DataFrame):
    """T1 confusion matrices, ours (summed over seeds) and the paper's; colours are row-normalised."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, side in zip(axes, ("ours", "paper")):
        if t6 is None or t6.empty or side not in t6.columns.get_level_values(0):
            _empty(ax)
            continue
        m = t6[side].drop(columns="recall", errors="ignore")
        vals = m.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(vals).any() or np.nansum(vals) == 0:
            _empty(ax, "no T1 results yet")
            continue
        norm = vals / np.where(np.nansum(vals, axis=1, keepdims=True) > 0, np.nansum(vals, axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i, f"{vals[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(m.columns)), list(m.columns), rotation=30)
        ylabels = list(m.index) if side == "ours" else [PAPER_CLASS.get(c.split(" ")[0], c.split(" ")[0]) for c in m.index]
        ax.set_yticks(range(len(m.index)), ylabels)
        ax.set(xlabel="predicted", ylabel="actual")
        title = f"ours: {t6.attrs.get('model')} (p={t6.attrs.get('p')})" if side == "ours" else "paper Table 6"
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_claims(claims: pd.DataFrame):
    """Forest plot of the pooled claims: paired effect A − B with its 95 % interval (the paired patient
    bootstrap where it ran, else the t-interval), coloured by the verdict after Holm; × = the paper."""
    import matplotlib.pyplot as plt

    rows = claims[claims["scope"] != "one p"] if claims is not None and not claims.empty else claims
    n = 0 if rows is None else len(rows)
    fig, ax = plt.subplots(figsize=(8, 0.28 * max(n, 4) + 1))
    if not n:
        _empty(ax, "no claims to show")
        return fig
    y = np.arange(n)[::-1]
    colour = {"supported": "tab:green", "not supported": "tab:red", "inconclusive": "0.4"}
    for yi, (_, r) in zip(y, rows.iterrows()):
        c = colour.get(r["verdict_holm"], "0.4")
        lo, hi = interval(r)
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [yi, yi], color=c, lw=2)
        if np.isfinite(r["effect"]):
            ax.plot(r["effect"], yi, "o", color=c, ms=5)
        if np.isfinite(r["paper_effect"]):
            ax.plot(r["paper_effect"], yi, "kx", ms=6)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r['comparison']} · {r['task']}" for _, r in rows.iterrows()], fontsize=7)
    ax.set(xlabel="effect A − B (test score; ○ ours with 95% interval, bootstrap where it ran, else t; "
                  "colour: verdict after Holm; × paper)")
    fig.tight_layout()
    return fig
