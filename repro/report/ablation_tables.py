"""Report views of ablations 1, 2, 3 and 5 (notebook 07): a table, a figure where there is one, and a
one-sentence finding with the effect and its 95 % t-interval over paired ``(p, seed)`` runs.

Each ``*_view(results_dir)`` reads every ``p<p>/seed<seed>/`` of a results folder (the ablation
result JSONs, the M1 references and ``compression_cost.json``) and returns an :class:`AblationView`.
Effects are paired differences A − B by ``(p, seed)`` (:func:`repro.report.claims.verdict`), pooled
over p; with fewer than 2 pairs there is no interval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.experiments.ablations.compression import COMPRESSION_COST_FILE, STUDENT_KD, STUDENT_NOKD
from repro.experiments.ablations.imbalance import imbalance_name
from repro.experiments.ablations.subclass import PLAIN_KD
from repro.io import read_json
from repro.names import ABLATION_STAGE, MAIN, METRIC_LABEL, P_ENDS
from repro.report.claims import verdict
from repro.report.results import result_rows

ABLATION_RE = re.compile(rf"^({ABLATION_STAGE}|m1)-(.+)\.json$")
METRICS = {col: METRIC_LABEL[col] for col in ("T1_bacc", "T1_acc", "T1_f1", "T2_top1", "T3_bleu")}
T1_METRICS = ("T1_bacc", "T1_acc", "T1_f1")


@dataclass
class AblationView:
    """What the report shows of one ablation: ``table``, ``finding`` (one sentence), ``figure`` (or None)
    and ``effect`` (the finding's numbers, JSON-ready)."""

    table: pd.DataFrame
    finding: str
    figure: Any = None
    effect: dict[str, Any] = field(default_factory=dict)


def load_ablation_results(results_dir) -> pd.DataFrame:
    """One row per ``ablation-*.json`` and ``m1-*.json`` under ``results_dir/p*/seed*/``
    (the columns of :func:`repro.report.results.result_row`); unreadable files are skipped with a warning."""
    return pd.DataFrame(result_rows(results_dir, ABLATION_RE)[0])


def run_scores(df: pd.DataFrame, stage: str, name: str, col: str) -> pd.Series:
    if df.empty:
        return pd.Series(dtype=float)
    sel = df[(df["stage"] == stage) & (df["name"] == name)]
    return sel.groupby(["p", "seed"])[col].mean().dropna().astype(float)


def paired_effect(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """Mean paired difference A − B over shared ``(p, seed)``, its 95 % t-interval and the verdict."""
    d = (a - b).dropna() if len(a) and len(b) else pd.Series(dtype=float)
    effect, lo, hi, v = verdict(d.to_numpy())
    return {"effect": effect, "ci_low": lo, "ci_high": hi, "verdict": v, "n_pairs": int(d.size),
            "p": sorted({int(p) for p in d.index.get_level_values("p")}) if d.size else []}


def fmt_effect(e: dict[str, Any]) -> str:
    """``+0.012 [−0.004, +0.028], 6 pairs`` (no interval below 2 pairs)."""
    if not e["n_pairs"]:
        return "no paired runs yet"
    ci = (f" [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]" if np.isfinite(e["ci_low"]) else " (no CI)")
    return f"{e['effect']:+.3f}{ci}, {e['n_pairs']} pair{'s' if e['n_pairs'] != 1 else ''}"


def model_rows(df: pd.DataFrame, models: dict[str, tuple[str, str]], cols) -> pd.DataFrame:
    """Mean and std over seeds of ``cols`` per (model label, p)."""
    rows = []
    for label, (stage, name) in models.items():
        sel = df[(df["stage"] == stage) & (df["name"] == name)] if not df.empty else df
        for p, g in (sel.groupby("p") if not sel.empty else []):
            row = {"model": label, "p": int(p), "seeds": int(g["seed"].nunique())}
            for c in cols:
                row[METRICS[c]] = float(g[c].mean())
                row[f"{METRICS[c]} std"] = float(g[c].std(ddof=1)) if len(g) > 1 else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- 1 · compression
COMPRESSION_MODELS = {"teacher M1 (T1+T2+T3)": ("m1", MAIN), "student, KD": (ABLATION_STAGE, STUDENT_KD),
                      "student, no KD": (ABLATION_STAGE, STUDENT_NOKD)}
COST_KEYS = {"teacher M1 (T1+T2+T3)": "teacher", "student, KD": "student_kd", "student, no KD": "student_nokd"}


def _costs(results_dir) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(results_dir).glob(f"p*/seed*/{COMPRESSION_COST_FILE}")):
        cost = read_json(path)
        for label, key in COST_KEYS.items():
            m = cost["models"].get(key)
            if not m:
                continue
            row = {"model": label, "params trainable": m["params"]["trainable"], "params total": m["params"]["total"],
                   "GFLOPs/img from image (incl. frozen trunk)": m["flops_image"] / 1e9,
                   "MFLOPs/img from cached features (trainable part)": m["flops_features"] / 1e6}
            for k, v in (m.get("latency_ms") or {}).items():
                src, b = k.rsplit("_b", 1)
                row[f"latency ms/img b{b} from {'image' if src == 'image' else 'cached features'}"] = v
            rows.append(row)
    return pd.DataFrame(rows).groupby("model", sort=False).mean() if rows else pd.DataFrame()


def compression_view(results_dir) -> AblationView:
    """Parameters, FLOPs, CPU latency (means over the cost files) and every task's test metrics
    (mean over seeds, per p) of the teacher and the small student with and without KD."""
    df = load_ablation_results(results_dir)
    metrics = model_rows(df, COMPRESSION_MODELS, list(METRICS))
    costs = _costs(results_dir)
    table = metrics.merge(costs, left_on="model", right_index=True, how="left") if not metrics.empty else metrics
    student = run_scores(df, ABLATION_STAGE, STUDENT_KD, "T1_bacc")
    kd = paired_effect(student, run_scores(df, ABLATION_STAGE, STUDENT_NOKD, "T1_bacc"))
    gap = paired_effect(student, run_scores(df, "m1", MAIN, "T1_bacc"))
    ratio = float("nan")
    if not costs.empty and {"teacher M1 (T1+T2+T3)", "student, KD"} <= set(costs.index):
        ratio = costs.loc["student, KD", "params trainable"] / costs.loc["teacher M1 (T1+T2+T3)", "params trainable"]
    size = (f"with {ratio:.1%} of the teacher's trainable parameters" if np.isfinite(ratio)
            else "(cost not measured yet)")
    finding = (f"The small student {size}: KD minus no KD on T1 balanced accuracy {fmt_effect(kd)}; "
               f"student with KD minus teacher {fmt_effect(gap)}.")
    return AblationView(table, finding, None, {"kd_vs_nokd": kd, "student_vs_teacher": gap, "trainable_ratio": ratio})


# ---------------------------------------------------------------- 2 · Hinton α × T
HINTON_RE = re.compile(r"^hinton-a([0-9.]+)-T([0-9.]+)$")


def _hinton_rows(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    sel = df[(df["stage"] == ABLATION_STAGE) & df["name"].str.match(HINTON_RE)].copy()
    sel["alpha"] = sel["name"].map(lambda n: float(HINTON_RE.match(n).group(1)))
    sel["T"] = sel["name"].map(lambda n: float(HINTON_RE.match(n).group(2)))
    return sel


def hinton_view(results_dir) -> AblationView:
    """Heat maps of test T1 balanced accuracy (mean over seeds; α rows × T columns) at p = 15 and 70
    (the p present otherwise); finding: the validation-chosen (α, T) per (p, seed) minus M1{T1}."""
    import matplotlib.pyplot as plt

    df = load_ablation_results(results_dir)
    h = _hinton_rows(df)
    if h.empty:
        table = pd.DataFrame()
    else:
        table = h.pivot_table(index=["p", "alpha"], columns="T", values="T1_bacc", aggfunc="mean")
    ps = sorted(set(h["p"])) if not h.empty else []
    shown = [p for p in P_ENDS if p in ps] or ps
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(4.2 * max(len(shown), 1), 3.4), squeeze=False)
    for ax, p in zip(axes[0], shown):
        grid = table.loc[p]
        im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{t:g}" for t in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{a:g}" for a in grid.index])
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set(xlabel="temperature T", ylabel="α (KD weight)", title=f"T1 balanced accuracy, p = {p}")
        fig.colorbar(im, ax=ax, shrink=0.8)
    if not shown:
        axes[0][0].text(0.5, 0.5, "no results yet", ha="center", va="center", transform=axes[0][0].transAxes)
    fig.tight_layout()
    chosen = pd.Series(dtype=float)
    if not h.empty:
        best = h.loc[h.groupby(["p", "seed"])["val_score"].idxmax()]
        chosen = best.set_index(["p", "seed"])["T1_bacc"].astype(float)
    e = paired_effect(chosen, run_scores(df, "m1", "T1", "T1_bacc"))
    cell = ""
    if not table.empty:
        cells = table.stack()
        p_b, a_b, t_b = cells.idxmax()
        cell = f"; best mean cell α = {a_b:g}, T = {t_b:g} at p = {p_b} ({cells.max():.3f})"
    finding = (f"KD with (α, T) chosen on validation minus the student without KD (M1{{T1}}), T1 balanced accuracy: "
               f"{fmt_effect(e)}{cell}.")
    return AblationView(table, finding, fig, {"chosen_vs_nokd": e})


# ---------------------------------------------------------------- 3 · subclass distillation
SUBCLASS_RE = re.compile(r"^subclass-n(\d+)(?:-(teacher|classkd))?$")


def subclass_view(results_dir) -> AblationView:
    """T1 test metrics of the subclass teacher and students beside plain KD and M1{T1}, with n, β, T_aux, τ, α;
    finding: sub-logit KD minus plain KD (same student, p, budget)."""
    df = load_ablation_results(results_dir)
    ns = sorted({int(SUBCLASS_RE.match(n).group(1)) for n in df.get("name", pd.Series(dtype=str))
                 if SUBCLASS_RE.match(n)}) if not df.empty else []
    models: dict[str, tuple[str, str]] = {}
    for n in ns:
        models[f"teacher with {n} subclasses/class"] = (ABLATION_STAGE, f"subclass-n{n}-teacher")
    models["teacher without subclasses = student without KD (M1 T1)"] = ("m1", "T1")
    for n in ns:
        models[f"student, subclass KD (n = {n})"] = (ABLATION_STAGE, f"subclass-n{n}")
        models[f"student, KD from the n = {n} teacher's class logits"] = (ABLATION_STAGE, f"subclass-n{n}-classkd")
    models["student, conventional KD from M1 (T1)"] = (ABLATION_STAGE, PLAIN_KD)
    table = model_rows(df, models, T1_METRICS)
    if not table.empty:
        settings = {}
        for label, (stage, name) in models.items():
            sel = df[(df["stage"] == stage) & (df["name"] == name)]
            prm = sel["result"].iloc[0].get("params", {}) if not sel.empty else {}
            settings[label] = {k: prm.get(k) for k in ("n", "beta", "aux_tau", "tau", "alpha")}
        table = table.join(pd.DataFrame.from_dict(settings, orient="index"), on="model")
    effects, parts = {}, []
    plain = run_scores(df, ABLATION_STAGE, PLAIN_KD, "T1_bacc")
    for n in ns:
        e = paired_effect(run_scores(df, ABLATION_STAGE, f"subclass-n{n}", "T1_bacc"), plain)
        effects[f"n{n}"] = e
        parts.append(f"n = {n}: {fmt_effect(e)}")
    finding = ("Subclass KD minus conventional KD (same student, p and budget), T1 balanced accuracy: "
               + ("; ".join(parts) if parts else "no paired runs yet") + ".")
    return AblationView(table, finding, None, effects)


# ---------------------------------------------------------------- 5 · class imbalance
def imbalance_view(results_dir, default_power: float = 0.6) -> AblationView:
    """Accuracy, balanced accuracy and macro-F1 of M1{T1} per T1 class-balance power (mean ± std over
    seeds per p), and the paired effect of the class-balanced loss (``default_power``) over plain CE."""
    df = load_ablation_results(results_dir)
    names = sorted({n for n in df.get("name", pd.Series(dtype=str)) if str(n).startswith("imbalance-")}) \
        if not df.empty else []
    models = {("plain CE" if n == imbalance_name(0) else f"class-balanced, power {n.removeprefix('imbalance-cb')}"):
              (ABLATION_STAGE, n) for n in names}
    table = model_rows(df, models, T1_METRICS)
    cb = imbalance_name(default_power)
    effects = {c: paired_effect(run_scores(df, ABLATION_STAGE, cb, c),
                                run_scores(df, ABLATION_STAGE, imbalance_name(0), c))
               for c in T1_METRICS}
    finding = (f"Class-balanced T1 loss (power {default_power:g}) minus plain CE: "
               + "; ".join(f"{METRICS[c]} {fmt_effect(e)}" for c, e in effects.items()) + ".")
    return AblationView(table, finding, None, effects)
