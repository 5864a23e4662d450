"""This project's numbers as tables, each beside the paper's (Tables 3–5)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.names import CODES, METRIC_COL, PAPER_TAUS, SUBSETS
from repro.report.claims import MODELS
from repro.report.paper import paper_value
from repro.report.results import (
    BACC,
    BASELINES,
    GROUPS,
    RESULT_COLUMNS,
    STATS,
    mean_std,
    metric_of,
    select_runs,
    stats_frame,
    study_ps,
)

# results-frame column of each column group of the comparison tables
GROUP_COL = {BACC: "T1_bacc", **METRIC_COL}


def compare_rows(results: dict[str, dict], p: int, table: str, model_of=lambda name: "M1",
                 train_tasks_of=lambda name: name) -> pd.DataFrame:
    """One row per run name: ours vs the paper for T1/T2/T3 at fraction ``p``."""
    rows = []
    for name, res in results.items():
        row = {"run": name}
        for tt in CODES:
            row[(tt, "ours")] = metric_of(res, tt)
            row[(tt, "paper")] = paper_value(table, model_of(name), train_tasks_of(name), tt, p)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("run")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def baseline_specs(df: pd.DataFrame) -> list[tuple]:
    """The baseline rows (label, stage, name, None, codes shown) — none when ``df`` has no baseline
    results (e.g. results written before the baselines existed)."""
    if df is None or df.empty or not (df["stage"] == "baseline").any():
        return []
    return [(label, stage, name, None, codes) for label, (stage, name, codes) in BASELINES.items()]


def _compare(df: pd.DataFrame, specs: list[tuple], ps: list[int], index_name: str) -> pd.DataFrame:
    """Rows ``(label, p)`` of each spec ``(label, stage, name, paper ref or None[, codes shown])``."""
    rows = {}
    for spec in specs:
        label, stage, name, ref = spec[:4]
        codes = spec[4] if len(spec) > 4 else CODES
        for p in ps:
            sel = select_runs(df, stage, name, p)
            row = {}
            for g in GROUPS:
                tt = "T1" if g == BACC else g
                shown = tt in codes and not sel.empty
                st = mean_std(sel[GROUP_COL[g]]) if shown else mean_std([])
                paper = paper_value(ref[0], ref[1], ref[2], tt, p) if ref and g != BACC else float("nan")
                row.update({(g, "mean"): st["mean"], (g, "std"): st["std"], (g, "n"): st["n"], (g, "paper"): paper})
            rows[(label, p)] = row
    return stats_frame(rows, [index_name, "p"], GROUPS)


def table3(df: pd.DataFrame, ps=None) -> pd.DataFrame:
    """Paper Table 3: M1 per task subset × p, T1 balanced accuracy and accuracy / T2 top-1 / T3 BLEU,
    beside the paper; then the baseline rows (majority class, most frequent caption, LR probe).

    Rows ``(train tasks, p)`` for the p values of our results (all five when there are none).
    """
    ps = study_ps(df, ps)
    specs = [(s, "m1", s, ("paper_table3", "M1", s)) for s in SUBSETS] + baseline_specs(df)
    return _compare(df, specs, ps, "train tasks")


def table5(df: pd.DataFrame, ps=None) -> pd.DataFrame:
    """Paper Table 5 rows 4–7 (M2, M2+ensemble, M3, M3+ensemble) with the M1 {T1,T2,T3} baseline
    (Table 3 row 7) and the M1 teacher ensemble evaluated as a predictor (no paper counterpart); then
    the baseline rows."""
    ps = study_ps(df, ps)
    specs = [(label, s, n, ref) for label, (s, n, ref) in MODELS.items()] + baseline_specs(df)
    return _compare(df, specs, ps, "model")


def _tau_choices(df: pd.DataFrame) -> pd.DataFrame:
    """τ chosen on validation per (task, p, seed): the highest ``val_score``, ties to the smaller τ."""
    if df is None or df.empty:
        return pd.DataFrame(columns=["tau_task", "p", "seed", "tau"])
    t = df[(df["stage"] == "tau") & df["val_score"].notna()]
    if t.empty:
        return pd.DataFrame(columns=["tau_task", "p", "seed", "tau"])
    t = t.sort_values(["val_score", "tau"], ascending=[False, True])
    return t.groupby(["tau_task", "p", "seed"], as_index=False).first()[["tau_task", "p", "seed", "tau"]]


def table4(df: pd.DataFrame, ps=None) -> pd.DataFrame:
    """Paper Table 4: single-task KD (M3 stage on the unlabeled set) per τ × p, for each task.

    Column groups: "T1 bacc" (T1 balanced accuracy, the T1 main metric, no paper value), then T1
    (accuracy), T2, T3 beside the paper. Extra stat ``chosen``: for how many seeds this τ had the best
    validation score (how the study picks τ; never on test).
    """
    ps = study_ps(df, ps, stage="tau")
    taus = sorted(set(PAPER_TAUS) | (set(df.loc[df["stage"] == "tau", "tau"].dropna().astype(float))
                                     if df is not None and not df.empty else set()))
    chosen = _tau_choices(df)
    rows = {}
    for tau in taus:
        for p in ps:
            row = {}
            for tt in CODES:
                if df is None or df.empty:
                    sel = pd.DataFrame(columns=RESULT_COLUMNS)
                else:
                    sel = df[(df["stage"] == "tau") & (df["tau_task"] == tt) & (df["p"] == p)
                             & np.isclose(df["tau"].astype(float).fillna(-1), tau)]
                if tt == "T1":
                    st = mean_std(sel[GROUP_COL[BACC]])
                    row.update({(BACC, "mean"): st["mean"], (BACC, "std"): st["std"], (BACC, "n"): st["n"]})
                st = mean_std(sel[METRIC_COL[tt]])
                n_chosen = int(((chosen["tau_task"] == tt) & (chosen["p"] == p)
                                & np.isclose(chosen["tau"].astype(float), tau)).sum()) if not chosen.empty else 0
                row.update({(tt, "mean"): st["mean"], (tt, "std"): st["std"], (tt, "n"): st["n"],
                            (tt, "paper"): paper_value("paper_table4", "M3", tt, tt, p, temperature=tau),
                            (tt, "chosen"): n_chosen})
            rows[(tau, p)] = row
    out = stats_frame(rows, ["τ", "p"], (BACC,) + CODES, STATS + ("chosen",))
    return out.drop(columns=[(BACC, "paper"), (BACC, "chosen")])
