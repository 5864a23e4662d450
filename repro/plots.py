"""Plots the notebooks show (learning curves, metric-vs-p); each returns its matplotlib figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt


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
