"""Report views of ablations 4 (transfer learning), 6 (split leakage) and 7 (label savings), notebook 07.

* :func:`transfer_view`: ImageNet minus random init, for M1 and M3, per p (paired by seed).
* :func:`leakage_view`: the M1 run on the image-level split minus the same run on the patient-level
  split, each on its own test set, per p (paired by seed).
* :func:`label_savings_view`: computed from the study's results, nothing trained. For each model and p,
  the labeled fraction p′ at which single-task M1{T1} reaches the model's mean test score, on the
  isotonic fit to the mean M1{T1} curve with a bootstrap interval over seeds
  (:mod:`repro.report.label_savings`), the first crossing of the raw curve (:func:`p_prime`) beside it,
  and the same rule on the paper's own numbers. A score the curve already exceeds at its smallest p is
  "< 15", one it never reaches is "> 70": nothing is extrapolated.

Effects are paired differences (:func:`repro.report.ablation_tables.paired_effect`: mean and 95 %
t-interval over seeds, :func:`repro.report.claims.verdict`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from repro.experiments.ablations.leakage import UNITS, leakage_name
from repro.experiments.ablations.transfer import INITS, transfer_name
from repro.experiments.ablations.transfer import MODELS as KINDS
from repro.names import ABLATION_STAGE, MAIN, P_ENDS, P_VALUES
from repro.paths import project_relative
from repro.report.ablation_tables import (METRICS, AblationView, fmt_effect, load_ablation_results, model_rows,
                                          run_scores)
from repro.report.ablation_tables import paired_effect

EFFECT_METRICS = ("T1_bacc", "T1_acc", "T2_top1")
TRANSFER_MODELS = {f"{kind.upper()}, {init} init": (ABLATION_STAGE, transfer_name(init, kind))
                   for kind in KINDS for init in INITS}
LEAKAGE_MODELS = {f"M1, {unit}-level split": (ABLATION_STAGE, leakage_name(unit)) for unit in reversed(UNITS)}

# label savings: the reference curve and the models placed on it (label -> (stage, name))
REFERENCE = ("m1", "T1")
SAVINGS_MODELS = {"M1 (T1+T2)": ("m1", "T1+T2"), "M1 (T1+T3)": ("m1", "T1+T3"), "M1 (T1+T2+T3)": ("m1", MAIN),
                  "M2": ("m2", "single"), "M2+ensemble": ("m2", "ensemble"), "M3": ("m3", "single"),
                  "M3+ensemble": ("m3", "ensemble")}
# the paper's own numbers (T1 accuracy): label -> (table, model, train_tasks) of repro.report.paper
PAPER_REFERENCE = ("paper_table3", "M1", "T1")
PAPER_MODELS = {"M1 (T1+T2+T3)": ("paper_table3", "M1", MAIN), "M2": ("paper_table5", "M2", MAIN),
                "M3": ("paper_table5", "M3", MAIN), "M3+ensemble": ("paper_table5", "M3+ensemble", MAIN)}
# the paper's claim (§1, §4.2): MTL + KD with 15 % of the labels ≈ single-task with 70 %
PAPER_CLAIM = P_ENDS
SAVINGS_METRIC_NAME = {"T1_bacc": "balanced accuracy", "T1_acc": "accuracy"}
SAVINGS_COLUMNS = ["model", "p", "seeds", "score", "p_prime", "relation", "p_prime_label", "labels_saved"]


def _per_p_effects(df: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], cols=EFFECT_METRICS) -> pd.DataFrame:
    """A − B per p and metric, paired by seed: columns p, metric, effect, ci_low, ci_high, verdict, n_pairs."""
    rows = []
    for col in cols:
        sa, sb = run_scores(df, *a, col), run_scores(df, *b, col)
        ps = sorted(set(sa.index.get_level_values("p")) & set(sb.index.get_level_values("p"))) if len(sa) and len(sb) else []
        for p in ps:
            e = paired_effect(sa[sa.index.get_level_values("p") == p], sb[sb.index.get_level_values("p") == p])
            rows.append({"p": int(p), "metric": METRICS[col], **{k: e[k] for k in
                                                                 ("effect", "ci_low", "ci_high", "verdict", "n_pairs")}})
    return pd.DataFrame(rows, columns=["p", "metric", "effect", "ci_low", "ci_high", "verdict", "n_pairs"])


def _effect_records(effects: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in effects.to_dict("records")]


def _sentence(effects: pd.DataFrame, metric: str = "T1 bacc") -> str:
    sel = effects[effects["metric"] == metric]
    if sel.empty:
        return "no paired runs yet"
    return "; ".join(f"p = {int(r.p)}: {fmt_effect(r._asdict())}" for r in sel.itertuples())


# ---------------------------------------------------------------- 4 · transfer learning
def transfer_view(results_dir) -> AblationView:
    """Test metrics (mean over seeds, per p) of M1 and M3 with an ImageNet and a random encoder init, what
    was trained, and ImageNet − random per (model, p)."""
    df = load_ablation_results(results_dir)
    table = model_rows(df, TRANSFER_MODELS, EFFECT_METRICS)
    if not table.empty:
        info = {}
        for label, (stage, name) in TRANSFER_MODELS.items():
            sel = df[(df["stage"] == stage) & (df["name"] == name)]
            prm = sel["result"].iloc[0].get("params", {}) if not sel.empty else {}
            info[label] = {"image px": prm.get("image_size"), "epochs": prm.get("epochs"),
                           "trained": f"{len(prm.get('trained_stages') or [])} encoder stages + heads",
                           "params trained": prm.get("params_trained")}
        table = table.join(pd.DataFrame.from_dict(info, orient="index"), on="model")
    parts, effects = [], {}
    for kind in KINDS:
        e = _per_p_effects(df, (ABLATION_STAGE, transfer_name("imagenet", kind)),
                           (ABLATION_STAGE, transfer_name("random", kind)))
        effects[kind] = _effect_records(e)
        parts.append(f"{kind.upper()}: {_sentence(e)}")
    finding = ("ImageNet minus random encoder init (whole encoder trained from images, same budget), "
               "T1 balanced accuracy: " + "; ".join(parts) + ".")
    return AblationView(table, finding, None, effects)


# ---------------------------------------------------------------- 6 · split leakage
def leakage_view(results_dir) -> AblationView:
    """Test metrics of the same M1 run on the image-level and the patient-level split (mean over seeds,
    per p), the share of test images whose patient is in L_p, and image − patient per p."""
    df = load_ablation_results(results_dir)
    table = model_rows(df, LEAKAGE_MODELS, EFFECT_METRICS)
    if not table.empty:
        leak = []
        for label, (stage, name) in LEAKAGE_MODELS.items():
            sel = df[(df["stage"] == stage) & (df["name"] == name)]
            for p, rows in sel.groupby("p"):
                vals = [r.get("params", {}).get("test_images_with_patient_in_train") for r in rows["result"]]
                vals = [v for v in vals if v is not None]
                leak.append({"model": label, "p": p, "test images whose patient is in L_p":
                             float(np.mean(vals)) if vals else float("nan")})
        if leak:
            table = table.merge(pd.DataFrame(leak), on=["model", "p"], how="left")
    e = _per_p_effects(df, (ABLATION_STAGE, leakage_name("image")), (ABLATION_STAGE, leakage_name("patient")))
    finding = ("The per-image split (as in the authors' code) minus the per-patient split, same M1 run, each on its "
               f"own test set, T1 balanced accuracy: {_sentence(e)}; T1 accuracy: {_sentence(e, 'T1 acc')}.")
    return AblationView(table, finding, None, {"image_minus_patient": _effect_records(e)})


# ---------------------------------------------------------------- 7 · label savings
def p_prime(ps: Sequence[float], values: Sequence[float], score: float) -> tuple[float, str]:
    """``(p′, relation)``: the first p′ at which the piecewise-linear curve ``values`` over ``ps`` reaches
    ``score``. ``relation`` is ``"="`` (interpolated), ``"<"`` (the curve already exceeds ``score`` at its
    smallest p, returned as p′) or ``">"`` (never reached; p′ = the largest p). NaN points are dropped;
    no points or a NaN score give ``(nan, "")``."""
    pts = sorted((float(p), float(v)) for p, v in zip(ps, values) if v is not None and np.isfinite(v))
    if not pts or score is None or not np.isfinite(score):
        return float("nan"), ""
    if pts[0][1] >= score:
        return pts[0][0], "=" if pts[0][1] == score else "<"
    for (p0, v0), (p1, v1) in zip(pts, pts[1:]):
        if v1 >= score:   # v0 < score <= v1
            return p0 + (score - v0) / (v1 - v0) * (p1 - p0), "="
    return pts[-1][0], ">"


def p_prime_label(value: float, relation: str) -> str:
    """``"32.4"``, ``"< 15"``, ``"> 70"`` (empty when there is no value)."""
    if not relation or not np.isfinite(value):
        return ""
    return f"{value:.1f}" if relation == "=" else f"{relation} {value:g}"


def _curve_rows(ref: pd.Series, scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``ref``: reference mean per p; ``scores``: label -> frame with columns p, score, seeds."""
    rows = []
    for label, g in scores.items():
        for r in g.itertuples():
            val, rel = p_prime(ref.index, ref.values, r.score)
            rows.append({"model": label, "p": int(r.p), "seeds": int(r.seeds), "score": float(r.score),
                         "p_prime": val, "relation": rel, "p_prime_label": p_prime_label(val, rel),
                         "labels_saved": float(r.p - val) if rel == "=" else float("nan")})
    return pd.DataFrame(rows, columns=SAVINGS_COLUMNS)


def _mean_per_p(df: pd.DataFrame, stage: str, name: str, col: str) -> pd.DataFrame:
    sel = df[(df["stage"] == stage) & (df["name"] == name)].dropna(subset=[col]) if not df.empty else df
    if sel.empty:
        return pd.DataFrame(columns=["p", "score", "seeds"])
    g = sel.groupby("p")
    return pd.DataFrame({"p": g[col].mean().index.astype(int), "score": g[col].mean().values,
                         "seeds": g["seed"].nunique().values})


def label_savings(df: pd.DataFrame, metric: str = "T1_bacc", models=SAVINGS_MODELS,
                  reference=REFERENCE) -> pd.DataFrame:
    """Per model and p: mean test score over seeds, p′ on the mean reference (M1{T1}) curve, and
    p − p′ (labels saved, percentage points of the patients) where p′ was interpolated.

    ``df``: :func:`repro.report.results.load_results`. The frame's ``attrs["reference"]`` holds the curve."""
    ref = _mean_per_p(df, *reference, metric).set_index("p")["score"] if df is not None else pd.Series(dtype=float)
    out = _curve_rows(ref, {label: _mean_per_p(df, s, n, metric) for label, (s, n) in models.items()})
    out.attrs["reference"] = {int(p): float(v) for p, v in ref.items()}
    out.attrs["metric"] = metric
    return out


def paper_label_savings(models=PAPER_MODELS, reference=PAPER_REFERENCE) -> pd.DataFrame:
    """The same on the paper's own numbers (T1 accuracy, Tables 3 and 5)."""
    from repro.report.paper import paper_value

    def curve(table, model, tasks):
        vals = {p: paper_value(table, model, tasks, "T1", p) for p in P_VALUES}
        return pd.DataFrame({"p": list(vals), "score": list(vals.values()), "seeds": 1}).dropna(subset=["score"])

    ref = curve(*reference).set_index("p")["score"]
    out = _curve_rows(ref, {label: curve(*r) for label, r in models.items()})
    out.attrs["reference"] = {int(p): float(v) for p, v in ref.items()}
    out.attrs["metric"] = "T1_acc"
    return out


def plot_label_savings(table: pd.DataFrame, paper: pd.DataFrame | None = None, title: str = ""):
    """x = p, y = p′ per model (▼ "< 15", ▲ "> 70" at the curve's ends; a vertical bar: p′'s bootstrap
    interval where ``table`` has one), the diagonal y = x, the paper's claim (15 → 70) as a star and,
    dotted, p′ from the paper's own M3+ensemble numbers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    lo, hi = min(P_VALUES), max(P_VALUES)
    ax.plot([lo, hi], [lo, hi], color="0.6", ls="--", lw=1, label="y = x (no labels saved)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, g) in enumerate(table.groupby("model", sort=False) if not table.empty else []):
        g = g.sort_values("p")
        c = colors[i % len(colors)]
        ax.plot(g["p"], g["p_prime"], color=c, lw=1.2, alpha=0.8, label=label)
        for rel, marker in (("=", "o"), ("<", "v"), (">", "^")):
            s = g[g["relation"] == rel]
            ax.scatter(s["p"], s["p_prime"], color=c, marker=marker, s=36, zorder=3)
        if "p_prime_low" in g:
            ax.vlines(g["p"] + (i - 3) * 0.4, g["p_prime_low"], g["p_prime_high"], color=c, lw=1, alpha=0.6)
    if paper is not None and not paper.empty:
        g = paper[paper["model"] == "M3+ensemble"].sort_values("p")
        ax.plot(g["p"], g["p_prime"], color="k", ls=":", lw=1.2, marker=".", label="paper's numbers, M3+ensemble (T1 acc)")
    ax.scatter(*PAPER_CLAIM, marker="*", s=220, color="gold", edgecolor="k", zorder=4,
               label="paper's claim: MTL+KD at 15 % ≈ single-task at 70 %")
    ax.set(xlabel="labeled fraction p of the model (%)", ylabel="p′: M1{T1} needs this fraction (%)",
           xlim=(lo - 5, hi + 5), ylim=(lo - 5, hi + 5), xticks=P_VALUES, yticks=P_VALUES,
           title=title or "Labels saved (▼ < 15, ▲ > 70: outside the M1{T1} curve)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def savings_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN -> None)."""
    return _effect_records(table)


def label_savings_view(results_dir, metric: str = "T1_bacc") -> AblationView:
    """Label savings from the results of ``results_dir`` (notebooks 01-03 at every p): p′ on the isotonic
    M1{T1} curve with its bootstrap interval on ``metric`` and on T1 accuracy, the first crossing and the
    paper's own p′ beside it (:func:`repro.report.label_savings.savings_table`), the figure, and a finding;
    without M1{T1} at every p, it says so."""
    from repro.report.results import load_results

    df = load_results(results_dir=results_dir)
    have = sorted(set(df.loc[(df["stage"] == REFERENCE[0]) & (df["name"] == REFERENCE[1]), "p"])) if not df.empty else []
    paper = paper_label_savings()
    if have != sorted(P_VALUES):
        finding = (f"Label savings need M1{{T1}} results at every p {list(P_VALUES)} in "
                   f"{project_relative(results_dir, siblings=True)} "
                   f"(found p = {have}); run notebooks 01-03 for every p first.")
        return AblationView(pd.DataFrame(columns=SAVINGS_COLUMNS), finding, None,
                            {"complete": False, "found_p": have, "paper": savings_records(paper)})
    from repro.report.label_savings import monotone_savings, paper_monotone_savings, savings_finding, savings_table

    main, acc = label_savings(df, metric), label_savings(df, "T1_acc")
    mono, mono_acc, mono_paper = monotone_savings(df, metric), monotone_savings(df, "T1_acc"), paper_monotone_savings()
    table = savings_table(mono, mono_acc, mono_paper, first=main)
    fig = plot_label_savings(mono, mono_paper, title=f"Labels saved on the isotonic M1{{T1}} curve, T1 "
                                                     f"{SAVINGS_METRIC_NAME.get(metric, metric)} (bars: 95 % bootstrap)")
    parts = []
    for label in ("M3+ensemble", "M3", "M2", "M1 (T1+T2+T3)"):
        r = main[(main["model"] == label) & (main["p"] == PAPER_CLAIM[0])]
        if not r.empty:
            parts.append(f"{label} at p = 15 ≈ M1{{T1}} at p′ {r['p_prime_label'].iloc[0]}")
    pp = paper[(paper["model"] == "M3+ensemble") & (paper["p"] == PAPER_CLAIM[0])]
    paper_txt = f"; the paper's own numbers give {pp['p_prime_label'].iloc[0]}" if not pp.empty else ""
    finding = (savings_finding(mono, mono_paper, mono_acc) + " The first crossing of the raw mean curve, which is "
               f"not monotone and so measures noise, on T1 {SAVINGS_METRIC_NAME.get(metric, metric)}: "
               + "; ".join(parts) + f"{paper_txt} (T1 accuracy).")
    return AblationView(table, finding, fig, {"complete": True, "monotone": {
                                                  metric: savings_records(mono), "T1_acc": savings_records(mono_acc),
                                                  "paper": savings_records(mono_paper),
                                                  "curve": mono.attrs["curve"], "curve_T1_acc": mono_acc.attrs["curve"],
                                                  "paper_curve": mono_paper.attrs["curve"]},
                                              metric: savings_records(main),
                                              "T1_acc": savings_records(acc), "paper": savings_records(paper),
                                              "reference": {metric: main.attrs["reference"],
                                                            "T1_acc": acc.attrs["reference"]}})
