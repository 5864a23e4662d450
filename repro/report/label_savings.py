"""Label savings on a monotone reference curve (issue 21, notebook 07 item 7).

The first crossing of the raw mean M1{T1} curve (:func:`repro.report.ablation_curves.p_prime`) measures
noise when that curve is not monotone (quick: 0.482, 0.523, 0.513, 0.515, 0.505 over p). Here the
reference is the isotonic (non-decreasing, least-squares) fit to the mean M1{T1} score per p, and p′ —
the fraction at which it reaches a model's mean score — comes with a 95 % bootstrap interval that
resamples seeds (reference and model together) and refits (:func:`repro.analysis.stats.monotone_p_prime`).
A score above the fitted curve's top is "> 70" (never reached), below its bottom "< 15".

The same rule on the paper's own numbers (T1 accuracy, Tables 3 and 5; one value per p, no interval)
is :func:`paper_monotone_savings`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.analysis import stats as S
from repro.names import METRIC_LABEL, P_VALUES
from repro.report.ablation_curves import (PAPER_CLAIM, PAPER_MODELS, PAPER_REFERENCE, REFERENCE, SAVINGS_METRIC_NAME,
                                          SAVINGS_MODELS, p_prime_label)

COLUMNS = ["model", "p", "seeds", "score", "p_prime", "relation", "p_prime_label", "p_prime_low", "p_prime_high",
           "share_outside", "labels_saved"]


def _by_seed(df: pd.DataFrame, stage: str, name: str, metric: str) -> pd.DataFrame:
    """Scores of one model: rows = seed, columns = p (NaN where missing)."""
    if df is None or df.empty:
        return pd.DataFrame(columns=list(P_VALUES))
    sel = df[(df["stage"] == stage) & (df["name"] == name)].dropna(subset=[metric])
    return sel.pivot_table(index="seed", columns="p", values=metric, aggfunc="mean").reindex(columns=list(P_VALUES))


def _row(label, p, seeds, score, res) -> dict:
    val, rel = res["p_prime"], res["relation"]
    return {"model": label, "p": int(p), "seeds": int(seeds), "score": float(score), "p_prime": val, "relation": rel,
            "p_prime_label": p_prime_label(val, rel), "p_prime_low": res["low"], "p_prime_high": res["high"],
            "share_outside": res["share_outside"], "labels_saved": float(p - val) if rel == "=" else float("nan")}


def monotone_savings(df: pd.DataFrame, metric: str = "T1_bacc", models=SAVINGS_MODELS, reference=REFERENCE,
                     n_boot: int = 2000) -> pd.DataFrame:
    """Per model and p: mean score over the seeds that have both it and the reference at every p, p′ on
    the isotonic reference curve with its bootstrap interval, and p − p′ where p′ was interpolated.
    ``attrs``: ``reference`` (raw mean per p), ``curve`` (the isotonic fit), ``metric``, ``seeds``."""
    ref = _by_seed(df, *reference, metric).dropna()          # seeds with the reference at every p
    rows = []
    for label, (stage, name) in models.items():
        model = _by_seed(df, stage, name, metric)
        for p in P_VALUES:
            seeds = [s for s in ref.index if s in model.index and np.isfinite(model.loc[s, p])]
            if not seeds:
                continue
            res = S.monotone_p_prime(P_VALUES, ref.loc[seeds].to_numpy(), model.loc[seeds, p].to_numpy(),
                                     n_boot=n_boot)
            rows.append(_row(label, p, len(seeds), float(model.loc[seeds, p].mean()), res))
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs.update(metric=metric, seeds=[int(s) for s in ref.index],
                     reference={int(p): float(v) for p, v in ref.mean().items()} if len(ref) else {},
                     curve=({int(p): float(v) for p, v in zip(P_VALUES, S.isotonic(ref.mean().to_numpy()))}
                            if len(ref) else {}))
    return out


def paper_monotone_savings(models=PAPER_MODELS, reference=PAPER_REFERENCE) -> pd.DataFrame:
    """The same rule on the paper's own T1 accuracies (one value per p: no interval)."""
    from repro.report.paper import paper_value

    ref = np.array([paper_value(*reference, "T1", p) for p in P_VALUES], dtype=float)
    rows = []
    for label, r in models.items():
        for p in P_VALUES:
            score = paper_value(*r, "T1", p)
            if np.isfinite(score) and np.isfinite(ref).all():
                rows.append(_row(label, p, 1, score, S.monotone_p_prime(P_VALUES, [ref], [score], n_boot=0)))
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs.update(metric="T1_acc", reference={int(p): float(v) for p, v in zip(P_VALUES, ref)},
                     curve={int(p): float(v) for p, v in zip(P_VALUES, S.isotonic(ref))} if np.isfinite(ref).all() else {})
    return out


def interval_label(row) -> str:
    """``"32.4 [21.0, 55.3]"``, ``"> 70 [48.1, 70]"`` (p′ and its bootstrap interval where there is one)."""
    text = row["p_prime_label"]
    if text and np.isfinite(row["p_prime_low"]) and np.isfinite(row["p_prime_high"]):
        text += f" [{row['p_prime_low']:.1f}, {row['p_prime_high']:.1f}]"
    return text


def savings_table(ours: pd.DataFrame, ours_acc: pd.DataFrame, paper: pd.DataFrame,
                  first: pd.DataFrame | None = None) -> pd.DataFrame:
    """The report's label-savings table: per model and p, the mean score and p′ on the isotonic M1{T1}
    curve with its 95 % bootstrap interval on T1 balanced accuracy (``ours``) and accuracy (``ours_acc``),
    the first crossing of the raw curve beside it (``first``, :func:`repro.report.ablation_curves.label_savings`),
    and the same rule on the paper's own T1 accuracies (``paper``: one value per p, no interval)."""
    if ours.empty:
        return pd.DataFrame()
    key = ["model", "p"]

    def part(t: pd.DataFrame, score: str, label: str) -> pd.DataFrame:
        return pd.DataFrame({"model": t["model"], "p": t["p"], score: t["score"],
                             label: [interval_label(r) for _, r in t.iterrows()]})

    out = ours[key + ["seeds"]].merge(part(ours, METRIC_LABEL[ours.attrs["metric"]], "p′ (isotonic, 95 %)"), on=key)
    if first is not None and not first.empty:
        out = out.merge(first[key + ["p_prime_label"]].rename(columns={"p_prime_label": "p′ (first crossing)"}),
                        on=key, how="left")
    if not ours_acc.empty:
        out = out.merge(part(ours_acc, METRIC_LABEL["T1_acc"], "p′ on acc (isotonic, 95 %)"), on=key, how="left")
    if not paper.empty:
        out = out.merge(part(paper, "paper T1 acc", "paper p′ (isotonic)"), on=key, how="left")
    return out


def savings_finding(ours: pd.DataFrame, paper: pd.DataFrame, ours_acc: pd.DataFrame | None = None,
                    model: str = "M3+ensemble", p: int = PAPER_CLAIM[0]) -> str:
    """One sentence: where ``model`` at ``p`` lands on the isotonic M1{T1} curve, ours (balanced accuracy,
    and accuracy when given) and the paper's."""
    def at(t):
        r = t[(t["model"] == model) & (t["p"] == p)] if t is not None and not t.empty else pd.DataFrame()
        return None if r.empty else r.iloc[0]

    r, a, q = at(ours), at(ours_acc), at(paper)
    if r is None:
        return "No label savings: M1{T1} is missing at some p."
    text = (f"On the isotonic M1{{T1}} curve, {model} at p = {p} matches M1{{T1}} at p′ {interval_label(r)} on T1 "
            f"{SAVINGS_METRIC_NAME[ours.attrs.get('metric', 'T1_bacc')]}"
            + (f" and {interval_label(a)} on {SAVINGS_METRIC_NAME['T1_acc']}" if a is not None else "")
            + " (95 % bootstrap over seeds)")
    if q is not None:
        text += f"; the same rule on the paper's own T1 accuracies gives {q['p_prime_label']}"
    return text + f" (the paper claims {PAPER_CLAIM[1]})."
