"""The paper's claims as paired comparisons with an effect size, a confidence interval and a verdict (docs/design.md §5).

Each claim compares a model A with a model B on one task's main metric (:data:`repro.names.CLAIM_METRIC`:
T1 balanced accuracy — ODIR-5K is 45 % normal, so accuracy rewards the majority class —, T2 top-1,
T3 ``bleu_paper``). A *pair* is one ``(p, seed)`` for which both A and B have a result;
its difference A − B is one effect sample. Pairs are pooled over p unless the claim is about one p
(the temperature claim, paper §4.2 "when p is small … higher τ is desired").

* effect = mean paired difference; 95 % t-interval over the pairs (``mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n``).
* bootstrap interval including test sampling (:func:`repro.analysis.stats.hierarchical_bootstrap`):
  where every pair's result files hold per-image test predictions (``test_predictions``, written
  since issue 21), a paired bootstrap resamples the seeds and, within each drawn seed, its test
  patients (both eyes together), and recomputes both models' metric on the same resampled images.
  Without per-image predictions (``boot_method`` says so) the row falls back to the t-interval.
* p-value: the bootstrap's (two-sided) where it ran, else the t-test's. Raw ``verdict``: the
  bootstrap interval (else the t-interval) entirely above 0 ``supported``, entirely below 0 ``not
  supported`` (the opposite holds), else ``inconclusive`` (also with fewer than 2 pairs).
* Holm: ``p_holm`` / ``verdict_holm`` adjust the family of every test the table makes on pooled rows
  (each claim on its task's metric, plus T1 claims on accuracy); per-p rows are descriptive (no Holm).
* accuracy: T1 rows repeat the test on accuracy (the paper's metric; ``effect_acc``, ``verdict_acc``,
  ``verdict_acc_holm``); ``metrics_disagree`` flags T1 rows whose verdicts on the two metrics differ.
  T2's metric is top-1 accuracy already; T3 has no accuracy.
* ``mde``: the minimum detectable effect at 80 % power, two-sided α = 0.05, from the observed
  standard error (bootstrap replicates' sd, else sd/√n with t quantiles); ``reading`` says an
  inconclusive row as "inconclusive: smaller than <mde>" (``mde_acc``, ``reading_acc``: the same on
  T1 accuracy).
* paper effect: the same difference in the paper's tables (Tables 3–5), averaged over the p values
  our pairs come from (all five where we have none); for T1 it is on accuracy (the paper reports
  no balanced accuracy).
* "beats the LR probe": each main model (M1 {T1,T2,T3}, M2, M3, their ensembles) minus the
  logistic-regression probe on frozen features (``baseline-probe.json``), on T1 and T2 (the probe
  has no T3); no paper effect.

Pairs at different p share a seed and nested training sets, so they are not independent: the
t-interval treats them as if they were. The bootstrap resamples whole seeds (all their p together),
which respects that nesting; with 3 seeds it still rests on few units, so both intervals are shown.

Pure functions on the results DataFrame of :func:`repro.report.load_results` (columns ``stage,
name, p, seed, T1_bacc, T2_top1, T3_bleu`` and, for τ runs, ``tau_task, tau``).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from repro.analysis import stats as S
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


# the comparison of the distilled students with the teacher ensemble they learned from, used as a predictor
ENSEMBLE_CLAIM = "student beats the M1 teacher ensemble"
ENSEMBLE_STUDENTS = ("M2+ensemble", "M3+ensemble")

#: how a row's bootstrap was made (``boot_method``)
BOOT_TEST = "seeds + test patients"
BOOT_NONE = "none (no per-image test predictions in {missing} of {total} pairs' result files): t-interval only"

N_BOOT = 2000

COLUMNS = ["claim", "task", "comparison", "scope", "p", "n_pairs", "effect", "ci_low", "ci_high", "verdict",
           "boot_low", "boot_high", "paper_effect", "boot_method", "p_value", "p_holm", "verdict_holm",
           "effect_acc", "acc_low", "acc_high", "p_value_acc", "p_holm_acc", "verdict_acc", "verdict_acc_holm",
           "metrics_disagree", "se", "mde", "reading", "mde_acc", "reading_acc"]

# (data key in a result's ``test_predictions``, metric kind of repro.analysis.stats.weighted_score)
PER_IMAGE = {"T1": ("coarse", "balanced_accuracy"), "T2": ("fine", "accuracy"), "T3": ("caption", "mean")}
PER_IMAGE_ACC = ("coarse", "accuracy")


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


def model_scores(df: pd.DataFrame, stage: str, name: str, task: str, col: str | None = None) -> pd.Series:
    """Claim metric of ``task`` (T1: balanced accuracy; ``col``: another result column, e.g. ``T1_acc``)
    for one model, indexed by ``(p, seed)`` (mean over duplicates, NaN dropped)."""
    col = col or CLAIM_COL[task]
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


def tau_scores(df: pd.DataFrame, task: str, taus: Iterable[float], col: str | None = None) -> pd.Series:
    """Mean over the given τ of the τ-study students of ``task``, indexed by ``(p, seed)``."""
    col = col or CLAIM_COL[task]
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
    """The pairwise model comparisons behind claims 1–4, "beats the LR probe" and "student beats the M1
    teacher ensemble": claim, task, A and B (label, stage, name, paper ref)."""
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
    for a in ENSEMBLE_STUDENTS:
        for task in CODES:
            out.append({"claim": ENSEMBLE_CLAIM, "task": task, "a": side(a), "b": side("Ensemble (M1 teachers)")})
    for a in PROBE_MODELS:
        for task in PROBE_TASKS:
            out.append({"claim": PROBE_CLAIM, "task": task, "a": side(a), "b": dict(PROBE)})
    return out


# ---------------------------------------------------------------- per-image predictions for the bootstrap

def stored_predictions(res) -> dict | None:
    """The per-image test predictions a result file holds (None where it has none)."""
    from repro.engine.evaluate import PER_IMAGE_KEY

    return res.get(PER_IMAGE_KEY) if isinstance(res, dict) else None


def model_predictions(df: pd.DataFrame, stage: str, name: str) -> dict[tuple[int, int], list]:
    """``{(p, seed): [per-image test predictions]}`` of one model (None where the result file has none)."""
    if df is None or df.empty or "result" not in df:
        return {}
    sel = df[(df["stage"] == stage) & (df["name"] == name)]
    return {(int(r.p), int(r.seed)): [stored_predictions(r.result)] for r in sel.itertuples()}


def tau_predictions(df: pd.DataFrame, task: str, taus: Iterable[float]) -> dict[tuple[int, int], list]:
    """``{(p, seed): [per-image test predictions of each τ-study student of ``task`` with τ in taus]}``."""
    if df is None or df.empty or "result" not in df or "tau" not in df:
        return {}
    taus = [float(t) for t in taus]
    sel = df[(df["stage"] == "tau") & (df["tau_task"] == task) & df["tau"].astype(float).isin(taus)]
    out: dict[tuple[int, int], list] = {}
    for r in sel.itertuples():
        out.setdefault((int(r.p), int(r.seed)), []).append(stored_predictions(r.result))
    return {k: v for k, v in out.items() if len(v) == len(taus)}


def _task_data(pred: dict, key: str, kind: str) -> dict | None:
    part = pred.get(key) if isinstance(pred, dict) else None
    if not isinstance(part, dict):
        return None
    if kind == "mean":
        return {"value": np.asarray(part["bleu_paper"], dtype=float)} if "bleu_paper" in part else None
    return {"true": np.asarray(part["true"]), "pred": np.asarray(part["pred"])} if "pred" in part else None


def bootstrap_groups(index: Iterable[tuple[int, int]], rec_a: dict, rec_b: dict, key: str,
                     kind: str) -> tuple[list[dict], int]:
    """Groups (one per seed) for :func:`repro.analysis.stats.hierarchical_bootstrap` from the per-image
    predictions of A and B at the ``(p, seed)`` pairs of ``index``; ``(groups, pairs lacking them)``.
    A pair counts as lacking when either side has no predictions for the task or the two sides (or
    the seed's other pairs) were tested on other images."""
    groups: dict[int, dict] = {}
    missing = 0
    for p, seed in index:
        la, lb = rec_a.get((p, seed)), rec_b.get((p, seed))
        preds = (la or []) + (lb or [])
        if not la or not lb or any(x is None for x in preds):
            missing += 1
            continue
        images = preds[0].get("image")
        data_a = [_task_data(x, key, kind) for x in la]
        data_b = [_task_data(x, key, kind) for x in lb]
        g = groups.get(seed)
        if (any(d is None for d in data_a + data_b) or any(x.get("image") != images for x in preds)
                or (g is not None and g["images"] != images)):
            missing += 1
            continue
        if g is None:
            g = groups[seed] = {"images": images, "patients": np.asarray(preds[0]["patient_id"]), "pairs": []}
        # A − B of means over τ sets = the mean over all (a, b) combinations
        g["pairs"].extend((a, b) for a in data_a for b in data_b)
    return list(groups.values()), missing


def _test(diffs: pd.Series, rec_a: dict, rec_b: dict, key: str, kind: str, n_boot: int) -> dict:
    """The tests of one row on one metric: t-interval, bootstrap with test sampling where possible,
    p-value, raw verdict, standard error and minimum detectable effect."""
    effect, lo, hi, v = verdict(diffs.to_numpy())
    n = int(np.isfinite(diffs.to_numpy(dtype=float)).sum()) if diffs.size else 0
    out = {"effect": effect, "ci_low": lo, "ci_high": hi, "boot_low": float("nan"), "boot_high": float("nan")}
    groups, missing = bootstrap_groups(diffs.index, rec_a, rec_b, key, kind) if n else ([], 0)
    if n >= 2 and not missing and groups:
        b = S.hierarchical_bootstrap(groups, kind, n_boot=n_boot)
        out.update(boot_low=b["low"], boot_high=b["high"], boot_method=BOOT_TEST, p_value=b["p_value"],
                   se=b["se"], mde=S.mde(b["se"]))
        v = "supported" if b["low"] > 0 else "not supported" if b["high"] < 0 else "inconclusive"
    else:
        se = float(np.nanstd(diffs.to_numpy(dtype=float), ddof=1)) / math.sqrt(n) if n >= 2 else float("nan")
        out.update(boot_method=BOOT_NONE.format(missing=missing, total=n) if n else "none (no pairs)",
                   p_value=S.t_p_value(diffs.to_numpy()), se=se, mde=S.mde(se, df=n - 1) if n >= 2 else float("nan"))
    out["verdict"] = v
    return out


def interval(r) -> tuple[float, float]:
    """The 95 % interval a claim row (or one :func:`_test`) shows: the paired bootstrap with test sampling
    where it ran (``boot_low`` finite), else the t-interval."""
    return (r["boot_low"], r["boot_high"]) if np.isfinite(r["boot_low"]) else (r["ci_low"], r["ci_high"])


def _row(claim, task, comparison, scope, ps_used, diffs, paper, main: dict, acc: dict | None) -> dict:
    row = {"claim": claim, "task": task, "comparison": comparison, "scope": scope, "p": ps_used,
           "n_pairs": int(diffs.size), "paper_effect": paper, **main,
           "effect_acc": float("nan"), "acc_low": float("nan"), "acc_high": float("nan"),
           "p_value_acc": float("nan"), "verdict_acc": "", "p_holm": float("nan"), "p_holm_acc": float("nan"),
           "verdict_holm": "", "verdict_acc_holm": "", "metrics_disagree": False, "reading": "",
           "mde_acc": float("nan"), "reading_acc": ""}
    if acc is not None:
        lo, hi = interval(acc)
        row.update(effect_acc=acc["effect"], acc_low=lo, acc_high=hi, p_value_acc=acc["p_value"],
                   verdict_acc=acc["verdict"], mde_acc=acc["mde"])
    return row


def _ps_label(ps: Sequence[int]) -> str:
    return ", ".join(str(int(p)) for p in sorted(set(ps))) if len(ps) else "–"


def _scores_and_predictions(df, side: dict, task: str, col: str | None = None):
    """``(scores by (p, seed), per-image predictions by (p, seed))`` of one side of a comparison."""
    if side.get("taus") is not None:
        return tau_scores(df, task, side["taus"], col), tau_predictions(df, task, side["taus"])
    return model_scores(df, side["stage"], side["name"], task, col), model_predictions(df, side["stage"], side["name"])


def _rows_for(df, claim, task, a, b, comp, scope_pooled, paper_of, per_p, only_p=None, n_boot=N_BOOT) -> list[dict]:
    sa, ra = _scores_and_predictions(df, a, task)
    sb, rb = _scores_and_predictions(df, b, task)
    diffs = paired_differences(sa, sb, p=only_p)
    acc_diffs = None
    if task == "T1":
        aa, _ = _scores_and_predictions(df, a, task, "T1_acc")
        ab, _ = _scores_and_predictions(df, b, task, "T1_acc")
        acc_diffs = paired_differences(aa, ab, p=only_p)
    ps = sorted(set(diffs.index.get_level_values("p"))) if diffs.size else []
    key, kind = PER_IMAGE[task]

    def tests(d, ad, boots):
        main = _test(d, ra, rb, key, kind, boots)
        acc = _test(ad, ra, rb, *PER_IMAGE_ACC, boots) if ad is not None else None
        return main, acc

    main, acc = tests(diffs, acc_diffs, n_boot)
    label = str(only_p) if only_p is not None else _ps_label(ps)
    rows = [_row(claim, task, comp, scope_pooled, label, diffs, paper_of(ps or ([only_p] if only_p else P_VALUES)),
                 main, acc)]
    if per_p:
        for p in ps:
            d = diffs[diffs.index.get_level_values("p") == p]
            ad = acc_diffs[acc_diffs.index.get_level_values("p") == p] if acc_diffs is not None else None
            m, a2 = tests(d, ad, max(n_boot // 4, 200))   # per-p rows are descriptive
            rows.append(_row(claim, task, comp, "one p", str(p), d, paper_of([p]), m, a2))
    return rows


def claims_table(df: pd.DataFrame, per_p: bool = False, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (claim, task[, p]): paired effect A − B, t-interval, bootstrap interval with test
    sampling, raw and Holm-adjusted verdicts, the same on T1 accuracy, the minimum detectable effect and
    the paper's effect (module docstring).

    ``p`` lists the fractions the pairs come from; ``scope`` is "pooled over p" (claims 1–4, the probe
    and the ensemble comparisons), "smallest p" (the τ claim, at the smallest p with τ-study runs) or,
    with ``per_p``, "one p" for a row per single p after each pooled row.
    """
    rows = []
    for c in comparisons():
        a, b, task = c["a"], c["b"], c["task"]
        comp = f"{a['label']} − {b['label']}"

        def paper_of(ps, a=a, b=b, task=task):
            return paper_effect(a["ref"], b["ref"], task, ps) if b["ref"] else float("nan")

        rows.extend(_rows_for(df, c["claim"], task, a, b, comp, "pooled over p", paper_of, per_p, n_boot=n_boot))

    tau_ps = []
    if df is not None and not df.empty and "stage" in df:
        tau_ps = sorted(set(df.loc[df["stage"] == "tau", "p"].dropna().astype(int)))
    p_small = tau_ps[0] if tau_ps else min(P_VALUES)
    for task in CODES:
        rows.extend(_rows_for(df, "higher τ better at small p", task, {"taus": HIGH_TAUS}, {"taus": LOW_TAUS},
                              "τ ∈ {5, 10} − τ ∈ {0.5, 1}", "smallest p",
                              lambda ps, task=task: paper_tau_effect(task, p_small), False, only_p=p_small,
                              n_boot=n_boot))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return adjust(table)


def adjust(table: pd.DataFrame) -> pd.DataFrame:
    """Holm over the family of pooled rows' tests (each row's metric, and T1 rows' accuracy), the
    adjusted verdicts, the metric-disagreement flag and the readings ("inconclusive: smaller than X")."""
    if table.empty:
        return table
    t = table.copy()
    pooled = (t["scope"] != "one p").to_numpy()
    family = np.concatenate([t["p_value"].to_numpy(dtype=float)[pooled], t["p_value_acc"].to_numpy(dtype=float)[pooled]])
    adj = S.holm(family)
    k = int(pooled.sum())
    t.loc[pooled, "p_holm"] = adj[:k]
    t.loc[pooled, "p_holm_acc"] = adj[k:]
    t["verdict_holm"] = [S.verdict_from(e, q) if pool else "" for e, q, pool in
                         zip(t["effect"], t["p_holm"], pooled)]
    t["verdict_acc_holm"] = [S.verdict_from(e, q) if pool and v else "" for e, q, v, pool in
                             zip(t["effect_acc"], t["p_holm_acc"], t["verdict_acc"], pooled)]
    t["metrics_disagree"] = [bool(va) and (v != va or (pool and vh != vah)) for v, va, vh, vah, pool in
                             zip(t["verdict"], t["verdict_acc"], t["verdict_holm"], t["verdict_acc_holm"], pooled)]
    t["reading"] = [reading(vh if pool else v, m, n) for v, vh, m, n, pool in
                    zip(t["verdict"], t["verdict_holm"], t["mde"], t["n_pairs"], pooled)]
    t["reading_acc"] = [reading(vh if pool else v, m, n) if v else "" for v, vh, m, n, pool in
                        zip(t["verdict_acc"], t["verdict_acc_holm"], t["mde_acc"], t["n_pairs"], pooled)]
    return t


def reading(verdict_text: str, mde: float, n_pairs: int) -> str:
    """A verdict in words: "inconclusive: smaller than 0.034" says the study could only have seen an
    effect of at least its minimum detectable effect (80 % power, two-sided α = 0.05)."""
    if verdict_text != "inconclusive":
        return verdict_text
    if n_pairs < 2 or not np.isfinite(mde):
        return "inconclusive: too few pairs to test"
    return f"inconclusive: smaller than {mde:.3f}"


def beats_probe(claims: pd.DataFrame, accuracy: bool = False) -> dict[str, dict[str, list[str]]]:
    """Per task of the probe claim: ``{"T1": {"supported": [models], "not supported": [...],
    "inconclusive": [...]}, ...}`` from the pooled "beats the LR probe" rows' verdicts after Holm
    (``accuracy``: T1's verdicts on accuracy, the only task with a second metric); models without
    pairs are left out."""
    out: dict[str, dict[str, list[str]]] = {}
    if claims is None or claims.empty:
        return out
    col = "verdict_acc_holm" if accuracy else "verdict_holm"
    sel = claims[(claims["claim"] == PROBE_CLAIM) & (claims["scope"] != "one p") & (claims["n_pairs"] > 0)
                 & (claims[col] != "")]
    for _, r in sel.iterrows():
        model = r["comparison"].split(" − ")[0]
        out.setdefault(r["task"], {"supported": [], "not supported": [], "inconclusive": []})[r[col]].append(model)
    return out


def summarize(claims: pd.DataFrame) -> pd.DataFrame:
    """Count of verdicts per claim (pooled rows only), for a one-glance summary."""
    if claims is None or claims.empty:
        return pd.DataFrame(columns=["supported", "not supported", "inconclusive"])
    pooled = claims[claims["scope"] != "one p"]
    out = pooled.groupby(["claim", "verdict"]).size().unstack(fill_value=0)
    return out.reindex(columns=["supported", "not supported", "inconclusive"], fill_value=0)
