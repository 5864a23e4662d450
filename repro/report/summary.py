"""What the results hold: the inventory, what is missing (and which notebook makes it), the summary and the headline table (docs/design.md §5)."""

from __future__ import annotations

import re
from typing import Any, Iterable

import pandas as pd

from repro.names import BASELINE_STAGE, CLAIM_NAME, CODES, METRIC_COL, METRIC_LABEL, NOTEBOOK_OF, P_ENDS, P_VALUES, SUBSETS
from repro.paths import project_relative
from repro.profiles import PROFILES
from repro.report.claim_set import ClaimSet, claims_for
from repro.report.claims import PROBE_CLAIM
from repro.report.claims_view import claim_line, disagreements, method_note, probe_lines
from repro.report.formatting import fmt_num
from repro.report.per_class import best_model
from repro.names import PAPER_TAUS
from repro.report.results import BACC, BASELINES, load_results
from repro.report.tables import table5


def _model_sort_key(stage: str, name: str) -> tuple:
    """Study order: M1 subsets as in Table 3, the M1 ensemble, M2, M3, the τ study by task and τ, then
    the baselines."""
    rank = {"m1": 0, "ensemble": 1, "m2": 2, "m3": 3, "tau": 4, BASELINE_STAGE: 5}.get(stage, 6)
    if stage == "m1":
        return (rank, SUBSETS.index(name) if name in SUBSETS else 99, 0.0, name)
    if stage == "tau":
        m = re.fullmatch(r"(T[123])-tau([0-9.]+)", name)
        return (rank, m.group(1) if m else name, float(m.group(2)) if m else 0.0, name)
    return (rank, {"single": 0, "ensemble": 1}.get(name, 2), 0.0, name)


def inventory(df: pd.DataFrame) -> pd.DataFrame:
    """Number of seeds per model (rows) and p (columns)."""
    if df is None or df.empty:
        return pd.DataFrame()
    inv = df.groupby(["stage", "name", "model", "p"])["seed"].nunique().unstack("p", fill_value=0).reset_index()
    inv = inv.iloc[sorted(range(len(inv)), key=lambda i: _model_sort_key(inv["stage"].iloc[i], inv["name"].iloc[i]))]
    inv = inv.drop(columns=["stage", "name"]).set_index("model")
    inv.columns.name = "p"
    return inv


def _seeds_text(seeds) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def _gap_text(gaps: dict[int, list[int]], ps: list[int], one_seed: bool) -> str:
    """Where one model is missing, compactly: "seeds 1, 2, every p", "p = 15, 30", "p=15 seed 1; …"."""
    where = "every p" if list(gaps) == ps else "p = " + ", ".join(map(str, gaps))
    seed_sets = {tuple(v) for v in gaps.values()}
    if one_seed:
        return where
    if len(seed_sets) == 1:
        return f"{_seeds_text(next(iter(seed_sets)))}, {where}"
    return "; ".join(f"p={p} {_seeds_text(v)}" for p, v in gaps.items())


def _names_text(names: list[str], shown: int = 4) -> str:
    return ", ".join(names) if len(names) <= shown + 1 else f"{', '.join(names[:shown])} and {len(names) - shown} more"


def tau_seed_of(profile: str | None) -> int | None:
    """The seed whose τ study serves every seed (profile setting ``tau_seed``); None: each seed its own."""
    prof = PROFILES.get(profile) if isinstance(profile, str) else None
    return None if prof is None else prof.tau_seed


def by_design(df: pd.DataFrame, profile: str | None) -> list[str]:
    """Results absent on purpose (not listed by :func:`missing`), as sentences."""
    k = tau_seed_of(profile)
    others = [] if df is None or df.empty else sorted(set(df["seed"]) - {k})
    if k is None or not others:
        return []
    return [f"The τ study (Table 4) runs for seed {k} only (profile `{profile}`, setting `tau_seed = {k}`): "
            f"M2 and M3 of {_seeds_text(others)} use the τ that seed {k}'s study chose at each p."]


def missing(df: pd.DataFrame, taus: Iterable[float] = PAPER_TAUS, profile: str | None = None,
            max_lines: int = 8) -> list[str]:
    """What this report lacks, as a few short sentences (empty list: everything expected is there).

    Expected: every model of the study at every p and seed present anywhere in the results; the τ
    study only for the profile's ``tau_seed`` when it has one (:func:`by_design`). The first sentence
    counts the missing result files; then one line per notebook and gap pattern (at most ``max_lines``).
    """
    skipped = [] if df is None else [project_relative(p, siblings=True) for p in df.attrs.get("skipped", [])]
    unread = [f"{len(skipped)} unreadable result file(s) skipped: {', '.join(skipped[:5])}"
              + (" …" if len(skipped) > 5 else "")] if skipped else []
    if df is None or df.empty:
        return unread + ["no result files yet: run the notebooks 01–04 "
                         "(e.g. `python -m repro sweep --profile <profile>`)"]
    ps, seeds = sorted(set(df["p"])), sorted(set(df["seed"]))
    tau_seed = tau_seed_of(profile)
    expected = [("m1", s) for s in SUBSETS] + [("ensemble", "m1"), ("m2", "single"), ("m2", "ensemble"),
                                               ("m3", "single"), ("m3", "ensemble"),
                                               (BASELINE_STAGE, "majority"), (BASELINE_STAGE, "probe")]
    expected += [("tau", f"{t}-tau{tau:g}") for t in CODES for tau in taus]
    have = set(zip(df["stage"], df["name"], df["p"], df["seed"]))
    n_expected = n_missing = 0
    groups: dict[tuple[str, str], list[str]] = {}
    for stage, name in expected:
        want = [tau_seed] if stage == "tau" and tau_seed is not None else seeds
        n_expected += len(ps) * len(want)
        gaps = {p: [s for s in want if (stage, name, p, s) not in have] for p in ps}
        gaps = {p: v for p, v in gaps.items() if v}
        if gaps:
            n_missing += sum(map(len, gaps.values()))
            key = (NOTEBOOK_OF[stage], _gap_text(gaps, ps, len(want) == 1))
            groups.setdefault(key, []).append(f"{stage}-{name}")
    notes = []
    if n_missing:
        notes.append(f"{n_missing} of {n_expected} expected result files are missing "
                     f"({len(ps)} p value(s) × {len(seeds)} seed(s)):")
        lines = [f"{_names_text(names)} ({len(names)} model{'s' if len(names) > 1 else ''}; {where}): "
                 f"run notebooks/{nb}.ipynb"
                 for (nb, where), names in groups.items()]
        notes += lines[:max_lines] + ([f"… and {len(lines) - max_lines} more gap(s) of the same kind"]
                                      if len(lines) > max_lines else [])
    absent = [p for p in P_VALUES if p not in ps]
    if absent:
        notes.append(f"no runs at p = {', '.join(map(str, absent))} (the paper reports p = 15 … 70)")
    if len(seeds) < 2:
        notes.append(f"only {len(seeds)} seed: no standard deviations and no confidence intervals")
    hashes = set(df["split_hash"].dropna())
    if len(hashes) > 1:
        notes.append(f"results come from {len(hashes)} different split files: comparisons mix splits")
    return unread + notes


def summary(df: pd.DataFrame, claims: ClaimSet | None = None, profile: str | None = None) -> dict[str, Any]:
    """What ``06_report.json`` records: run counts per stage (and per p), best models, the pooled claims
    (``claims``: the report's :class:`ClaimSet`, computed here when None) and where they came from."""
    counts = {} if df is None or df.empty else {s: int(n) for s, n in df["stage"].value_counts().items()}
    per_p = {} if df is None or df.empty else {
        s: {str(p): int(n) for p, n in g["p"].value_counts().sort_index().items()} for s, g in df.groupby("stage")}
    best = {}
    for task in CODES:
        b = best_model(df, task)
        best[task] = None if b is None else {k: b[k] for k in ("stage", "name", "model", "p", "val_score", "seeds")}
    claims = claims if claims is not None else claims_for(df)
    return {
        "notebook": "06_report", "profile": profile,
        "runs": int(0 if df is None else len(df)), "runs_per_stage": counts, "runs_per_stage_and_p": per_p,
        "p_values": [] if df is None or df.empty else sorted(int(p) for p in set(df["p"])),
        "seeds": [] if df is None or df.empty else sorted(int(s) for s in set(df["seed"])),
        "best_models": best, "missing": missing(df, profile=profile),
        "claims": claims.pooled.to_dict(orient="records"), "claims_origin": claims.origin,
    }


HEADLINE_MODELS = ("M1 (T1+T2+T3)", "M2", "M3", "M3+ensemble")


def _cell(r, g: str, paper: bool = True) -> str:
    """"mean ± std" of column group ``g`` of a table row, "/ paper" beside it when ``paper``."""
    ours = "–" if not r[(g, "n")] else fmt_num(r[(g, "mean")], 3) + (
        f" ± {fmt_num(r[(g, 'std')], 3)}" if r[(g, "n")] >= 2 else "")
    return f"{ours} / {fmt_num(r[(g, 'paper')], 3)}" if paper else ours


def headline_markdown(profile: str = "quick", results_root=None, results_dir=None, df: pd.DataFrame | None = None,
                      ps=P_ENDS, with_claims: bool = True, claims: ClaimSet | None = None) -> str:
    """Markdown for the README: this project vs the paper at p = 15 and 70 — T1 balanced accuracy
    (our main T1 metric) and accuracy, T2 top-1, T3 BLEU for M1 {T1,T2,T3}, M2, M3, M3+ensemble, and
    the baselines (majority class, most frequent caption, LR probe) — and (``with_claims``) the claims'
    verdicts after Holm, T1 on both metrics, with which models beat the probe and where the metrics
    disagree. ``claims``: the report's :class:`ClaimSet` (computed here when None)."""
    if df is None:
        df = load_results(profile, results_root, results_dir)
    t5 = table5(df, ps=ps)
    groups = (BACC, "T1", "T2", "T3")
    names = {BACC: METRIC_LABEL["T1_bacc"], **{code: METRIC_LABEL[col] for code, col in METRIC_COL.items()}}
    head = ["model"] + [f"{names[g]} p={p}" for p in ps for g in groups]
    lines = [f"Profile `{profile}`: ours (mean ± std over seeds) / paper. T1's main metric is balanced "
             "accuracy (no paper value: the paper reports accuracy, on almost balanced data), accuracy "
             "beside it; T2 top-1 accuracy; T3 BLEU (the authors' sentence BLEU). Baselines (same split, "
             "ours only): the majority class of L_p (T1, T2), its most frequent caption (T3), and a "
             "logistic-regression probe on the frozen encoder's features (T1, T2).", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    index = set(t5.index.get_level_values(0))
    for m in HEADLINE_MODELS:
        cells = [m] + [_cell(t5.loc[(m, p)], g, paper=g != BACC) for p in ps for g in groups]
        lines.append("| " + " | ".join(cells) + " |")
    for label, (_, _, codes) in BASELINES.items():
        if label not in index:
            continue
        cells = [label] + [_cell(t5.loc[(label, p)], g, paper=False) if ("T1" if g == BACC else g) in codes
                           else "" for p in ps for g in groups]
        lines.append("| " + " | ".join(cells) + " |")
    if not with_claims:
        return "\n".join(lines) + "\n"
    cl = (claims if claims is not None else claims_for(df)).pooled
    n_seeds = 0 if df is None or df.empty else df["seed"].nunique()
    lines += ["", f"Claims (paired differences pooled over p, {n_seeds} seed(s)); each verdict after Holm, in "
                  f"words, then T1 on {CLAIM_NAME['T1']} and on accuracy (the paper's metric; the paper's T1 "
                  "effect is on accuracy). " + method_note(cl), ""]
    lines += [claim_line(r) for _, r in cl.iterrows() if r["claim"] != PROBE_CLAIM]
    probe = cl[cl["claim"] == PROBE_CLAIM]
    if (probe["n_pairs"] > 0).any():
        lines += ["", "Which models beat the LR probe after Holm (model − probe, paired by p and seed):", ""]
        lines += probe_lines(cl)
        lines += [claim_line(r) for _, r in probe.iterrows()]
    split = disagreements(cl)
    lines += ["", "Where T1's two metrics disagree: none."] if not split else \
        ["", "Where T1's two metrics disagree:", ""] + [f"- {s}" for s in split]
    return "\n".join(lines) + "\n"
