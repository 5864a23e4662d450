"""The paper's claims as paired comparisons with an effect size, a confidence interval and a verdict (docs/design.md §5).

Each claim compares a model A with a model B on one task's main metric (:data:`repro.names.CLAIM_METRIC`:
T1 balanced accuracy — ODIR-5K is 45 % normal, so accuracy rewards the majority class —, T2 top-1,
T3 ``bleu_paper``). A *pair* is one ``(p, seed)`` for which both A and B have a result;
its difference A − B is one effect sample. Pairs are pooled over p unless the claim is about one p
(the temperature claim, paper §4.2 "when p is small … higher τ is desired").

* effect = mean paired difference; 95 % t-interval over the pairs (``mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n``);
  a percentile bootstrap interval is reported beside it.
* verdict: ``supported`` (interval entirely above 0), ``not supported`` (entirely below 0: the
  opposite holds), ``inconclusive`` (interval contains 0, or fewer than 2 pairs).
* paper effect: the same difference in the paper's tables (Tables 3–5), averaged over the p values
  our pairs come from (all five where we have none); for T1 it is on accuracy (the paper reports
  no balanced accuracy).
* "beats the LR probe": each main model (M1 {T1,T2,T3}, M2, M3, their ensembles) minus the
  logistic-regression probe on frozen features (``baseline-probe.json``), on T1 and T2 (the probe
  has no T3); no paper effect.

Pairs at different p share a seed and nested training sets, so they are not independent: the
interval is a descriptive summary, not an exact test.

Pure functions on the results DataFrame of :func:`repro.report.load_results` (columns ``stage,
name, p, seed, T1_bacc, T2_top1, T3_bleu`` and, for τ runs, ``tau_task, tau``).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from repro.names import BASELINE_STAGE, CLAIM_COL, CODES, MAIN, P_VALUES

# the study's main models: label -> (stage, name, paper reference (table, model, train_tasks) or None)
MODELS: dict[str, tuple[str, str, tuple[str, str, str] | None]] = {
    "M1 (T1+T2+T3)": ("m1", MAIN, ("paper_table3", "M1", MAIN)),
    "M2": ("m2", "single", ("paper_table5", "M2", MAIN)),
    "M2+ensemble": ("m2", "ensemble", ("paper_table5", "M2+ensemble", MAIN)),
    "M3": ("m3", "single", ("paper_table5", "M3", MAIN)),
    "M3+ensemble": ("m3", "ensemble", ("paper_table5", "M3+ensemble", MAIN)),
    "Ensemble (M1 teachers)": ("ensemble", "m1", None),
}


# the claim that each main model learned more than a linear probe on the frozen features
PROBE_CLAIM = "beats the LR probe"
PROBE = {"label": "LR probe", "stage": BASELINE_STAGE, "name": "probe", "ref": None}
PROBE_MODELS = ("M1 (T1+T2+T3)", "M2", "M2+ensemble", "M3", "M3+ensemble")
PROBE_TASKS = ("T1", "T2")


HIGH_TAUS = (5.0, 10.0)


LOW_TAUS = (0.5, 1.0)


COLUMNS = ["claim", "task", "comparison", "scope", "p", "n_pairs", "effect", "ci_low", "ci_high", "verdict",
           "boot_low", "boot_high", "paper_effect"]


def t_interval(samples: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t confidence interval of ``samples`` (NaN bounds for fewer than 2)."""
    x = np.asarray([s for s in samples if s is not None and np.isfinite(s)], dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def bootstrap_ci(samples: Sequence[float], level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN for fewer than 2 samples); seeded, so repeatable."""
    x = np.asarray([s for s in samples if s is not None and np.isfinite(s)], dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def verdict(effect_samples: Sequence[float], level: float = 0.95) -> tuple[float, float, float, str]:
    """``(effect, ci_low, ci_high, verdict)`` of paired differences A − B (positive = the claim's direction)."""
    effect, lo, hi = t_interval(effect_samples, level)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return effect, lo, hi, "inconclusive"
    if lo > 0:
        return effect, lo, hi, "supported"
    if hi < 0:
        return effect, lo, hi, "not supported"
    return effect, lo, hi, "inconclusive"


def model_scores(df: pd.DataFrame, stage: str, name: str, task: str) -> pd.Series:
    """Claim metric of ``task`` (T1: balanced accuracy) for one model, indexed by ``(p, seed)``
    (mean over duplicates, NaN dropped)."""
    col = CLAIM_COL[task]
    if df is None or df.empty or col not in df:
        return pd.Series(dtype=float)
    sel = df[(df["stage"] == stage) & (df["name"] == name)]
    s = sel.groupby(["p", "seed"])[col].mean().dropna()
    return s.astype(float)


def paired_differences(a: pd.Series, b: pd.Series, p: int | None = None) -> pd.Series:
    """A − B over the ``(p, seed)`` pairs both have (optionally at one ``p`` only)."""
    if a.empty or b.empty:
        return pd.Series(dtype=float)
    d = (a - b).dropna()
    if p is not None:
        d = d[d.index.get_level_values("p") == p]
    return d


def tau_scores(df: pd.DataFrame, task: str, taus: Iterable[float]) -> pd.Series:
    """Mean over the given τ of the τ-study students of ``task``, indexed by ``(p, seed)``."""
    col = CLAIM_COL[task]
    if df is None or df.empty or "tau" not in df or col not in df:
        return pd.Series(dtype=float)
    taus = [float(t) for t in taus]
    sel = df[(df["stage"] == "tau") & (df["tau_task"] == task) & df["tau"].astype(float).isin(taus)]
    per = sel.groupby(["p", "seed", "tau"])[col].mean().dropna()
    if per.empty:
        return pd.Series(dtype=float)
    return per.groupby(level=["p", "seed"]).mean().astype(float)


def _paper_model_value(ref, task: str, p: int) -> float:
    from repro.report.paper import paper_value

    if ref is None:
        return float("nan")
    table, model, train_tasks = ref
    return paper_value(table, model, train_tasks, task, p)


def paper_effect(ref_a, ref_b, task: str, ps: Iterable[int]) -> float:
    """Mean over ``ps`` of the paper's A − B (refs are ``(table, model, train_tasks)``); NaN if none."""
    diffs = [_paper_model_value(ref_a, task, p) - _paper_model_value(ref_b, task, p) for p in ps]
    diffs = [d for d in diffs if np.isfinite(d)]
    return float(np.mean(diffs)) if diffs else float("nan")


def paper_tau_effect(task: str, p: int) -> float:
    """The paper's Table 4 at ``p``: mean over τ ∈ {5, 10} minus mean over τ ∈ {0.5, 1}."""
    from repro.report.paper import paper_value

    def mean(taus):
        v = [paper_value("paper_table4", "M3", task, task, p, temperature=t) for t in taus]
        v = [x for x in v if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    return mean(HIGH_TAUS) - mean(LOW_TAUS)


def comparisons() -> list[dict]:
    """The pairwise model comparisons behind claims 1–4 and "beats the LR probe": claim, task, A and B
    (label, stage, name, paper ref)."""
    m = MODELS

    def side(label):
        stage, name, ref = m[label]
        return {"label": label, "stage": stage, "name": name, "ref": ref}

    out = []
    for task in CODES:
        out.append({"claim": "MTL beats single-task", "task": task,
                    "a": side("M1 (T1+T2+T3)"),
                    "b": {"label": f"M1 ({task})", "stage": "m1", "name": task, "ref": ("paper_table3", "M1", task)}})
    pairs = [("M2 beats M1", "M2", "M1 (T1+T2+T3)"),
             ("M3 beats M2", "M3", "M2"),
             ("M3 beats M2", "M3+ensemble", "M2+ensemble"),
             ("ensemble beats single teacher", "M2+ensemble", "M2"),
             ("ensemble beats single teacher", "M3+ensemble", "M3")]
    for claim, a, b in pairs:
        for task in CODES:
            out.append({"claim": claim, "task": task, "a": side(a), "b": side(b)})
    for a in PROBE_MODELS:
        for task in PROBE_TASKS:
            out.append({"claim": PROBE_CLAIM, "task": task, "a": side(a), "b": dict(PROBE)})
    return out


def _row(claim, task, comparison, scope, ps_used, diffs, paper) -> dict:
    effect, lo, hi, v = verdict(diffs.to_numpy())
    blo, bhi = bootstrap_ci(diffs.to_numpy())
    return {"claim": claim, "task": task, "comparison": comparison, "scope": scope, "p": ps_used,
            "n_pairs": int(diffs.size), "effect": effect, "ci_low": lo, "ci_high": hi, "verdict": v,
            "boot_low": blo, "boot_high": bhi, "paper_effect": paper}


def _ps_label(ps: Sequence[int]) -> str:
    return ", ".join(str(int(p)) for p in sorted(set(ps))) if len(ps) else "–"


def claims_table(df: pd.DataFrame, per_p: bool = False) -> pd.DataFrame:
    """One row per (claim, task[, p]): paired effect A − B, 95 % CI, verdict, the paper's effect.

    ``p`` lists the fractions the pairs come from; ``scope`` is "pooled over p" (claims 1–4),
    "smallest p" (the τ claim, at the smallest p with τ-study runs) or, with ``per_p``,
    "one p" for a row per single p after each pooled row of claims 1–4.
    """
    rows = []
    for c in comparisons():
        a, b, task = c["a"], c["b"], c["task"]
        diffs = paired_differences(model_scores(df, a["stage"], a["name"], task),
                                   model_scores(df, b["stage"], b["name"], task))
        ps = sorted(set(diffs.index.get_level_values("p"))) if diffs.size else []
        comp = f"{a['label']} − {b['label']}"
        paper = paper_effect(a["ref"], b["ref"], task, ps or P_VALUES) if b["ref"] else float("nan")
        rows.append(_row(c["claim"], task, comp, "pooled over p", _ps_label(ps), diffs, paper))
        if per_p:
            for p in ps:
                d = diffs[diffs.index.get_level_values("p") == p]
                rows.append(_row(c["claim"], task, comp, "one p", str(p), d,
                                 paper_effect(a["ref"], b["ref"], task, [p]) if b["ref"] else float("nan")))

    tau_ps = []
    if df is not None and not df.empty and "stage" in df:
        tau_ps = sorted(set(df.loc[df["stage"] == "tau", "p"].dropna().astype(int)))
    p_small = tau_ps[0] if tau_ps else min(P_VALUES)
    for task in CODES:
        diffs = paired_differences(tau_scores(df, task, HIGH_TAUS), tau_scores(df, task, LOW_TAUS), p=p_small)
        rows.append(_row("higher τ better at small p", task, "τ ∈ {5, 10} − τ ∈ {0.5, 1}", "smallest p",
                         str(p_small), diffs,
                         paper_tau_effect(task, p_small)))
    return pd.DataFrame(rows, columns=COLUMNS)


def beats_probe(claims: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Per task of the probe claim: ``{"T1": {"supported": [models], "not supported": [...],
    "inconclusive": [...]}, ...}`` from the pooled "beats the LR probe" rows (models without pairs
    are left out)."""
    out: dict[str, dict[str, list[str]]] = {}
    if claims is None or claims.empty:
        return out
    sel = claims[(claims["claim"] == PROBE_CLAIM) & (claims["scope"] != "one p") & (claims["n_pairs"] > 0)]
    for _, r in sel.iterrows():
        model = r["comparison"].split(" − ")[0]
        out.setdefault(r["task"], {"supported": [], "not supported": [], "inconclusive": []})[r["verdict"]].append(model)
    return out


def summarize(claims: pd.DataFrame) -> pd.DataFrame:
    """Count of verdicts per claim (pooled rows only), for a one-glance summary."""
    if claims is None or claims.empty:
        return pd.DataFrame(columns=["supported", "not supported", "inconclusive"])
    pooled = claims[claims["scope"] != "one p"]
    out = pooled.groupby(["claim", "verdict"]).size().unstack(fill_value=0)
    return out.reindex(columns=["supported", "not supported", "inconclusive"], fill_value=0)
