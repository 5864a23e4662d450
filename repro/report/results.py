"""The study's report: this project's numbers over seeds beside the paper's (docs/design.md §5, §6).

* :func:`load_results` reads every ``results/<profile>/p<p>/seed<seed>/<stage>-<name>.json``
  into one DataFrame (one row per trained model, and per baseline: stage ``baseline``).
* Tables (paper §4.2): :func:`table3` (M1 task subsets), :func:`table4` (τ study),
  :func:`table5` (M2/M3, single teacher and ensemble, and the M1 ensemble as a predictor),
  :func:`table6` (T1 confusion matrix), :func:`topk_by_class` (Fig. 4), :func:`bleu_by_class`
  (§4.2 "BLEU scores across the diseases") and :func:`error_analysis` (supplement §3).
  The comparison tables have columns ``(task, stat)`` with stat ∈ mean, std (over seeds,
  ddof = 1), n (seeds) and paper; :func:`fmt` turns them into "mean ± std (n)" beside "paper".
  Task groups: "T1 bacc" (T1 balanced accuracy, our main T1 metric, no paper value), "T1"
  (accuracy, the paper's), "T2" (top-1), "T3" (BLEU). Tables 3 and 5 end with the baseline rows
  (:data:`BASELINES`) when the results hold baseline files.
* Plots return their matplotlib figure.
* :func:`export_report` executes ``notebooks/06_report.ipynb`` with papermill and writes the
  HTML report, LaTeX tables and PNG figures; :func:`headline_markdown` is the README summary.

Missing stages, p values or seeds give NaN cells and notes, never an error. The "best model"
of Table 6, Fig. 4, per-class BLEU and the error analysis is chosen on validation (mean over
seeds of the task's validation metric, or of the model-selection score for the 3-task error
analysis) among M1, M2 and M3 at the largest p — never on test.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from repro.io import read_json
from repro.names import BASELINE_STAGE, METRIC_LABEL, P_VALUES, STAGES, TASK_METRIC, TASKS
from repro.paths import project_relative, results_dir as default_results_dir
from repro.report.claims import MODELS


# the model stages and the baselines (``baseline-majority.json``, ``baseline-probe.json``)
ALL_STAGES = STAGES + (BASELINE_STAGE,)
RESULT_RE = re.compile(rf"^({'|'.join(ALL_STAGES)})-(.+)\.json$")  # result_file(stage, name)

# the baseline rows of every table showing models: label -> (stage, name, paper codes the row shows)
BASELINES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Majority class": (BASELINE_STAGE, "majority", ("T1", "T2")),
    "Most frequent caption": (BASELINE_STAGE, "majority", ("T3",)),
    "LR probe (frozen features)": (BASELINE_STAGE, "probe", ("T1", "T2")),
}
BASELINE_LABEL = {"majority": "Majority class", "probe": "LR probe (frozen features)"}

# column group of T1's main metric (balanced accuracy) in the comparison tables, shown before "T1"
# (accuracy, the paper's metric); it has no paper counterpart
BACC = METRIC_LABEL["T1_bacc"]
GROUPS = (BACC,) + ("T1", "T2", "T3")


STATS = ("mean", "std", "n", "paper")




# our T1 classes -> the paper's (ODIR has no melanoma; "other" stands in for it)
PAPER_CLASS = {"other": "melanoma"}


PAPER_CLASS_ORDER = ("melanoma", "glaucoma", "amd", "dr", "normal")






ERROR_KEYS = {  # our error_analysis key -> paper_headlines quantity
    "test_samples": "supp error analysis: test samples",
    "coarse_correct_bleu_lt_0.2": "supp: coarse correct but BLEU<0.2",
    "coarse_wrong_bleu_gt_0.5": "supp: coarse wrong but BLEU>0.5",
    "fine_correct_coarse_wrong": "supp: fine correct but coarse wrong",
    "coarse_correct_fine_wrong": "supp: coarse correct but fine wrong",
}


ERROR_LABELS = {
    "test_samples": "test samples",
    "coarse_correct_bleu_lt_0.2": "T1 correct, BLEU < 0.2",
    "coarse_wrong_bleu_gt_0.5": "T1 wrong, BLEU > 0.5",
    "fine_correct_coarse_wrong": "T2 correct, T1 wrong",
    "coarse_correct_fine_wrong": "T1 correct, T2 wrong",
}


RESULT_COLUMNS = [
    "stage", "name", "model", "p", "seed", "tasks", "tau_task", "tau",
    "T1_acc", "T1_bacc", "T1_f1", "T2_top1", "T2_top5", "T3_bleu", "T3_bleu4", "T3_exact",
    "val_T1", "val_T1_bacc", "val_T2", "val_T3", "val_score", "n_test", "split_hash", "wall_s", "path", "result",
]


def results_folder(profile: str = "quick", results_root=None, results_dir=None) -> Path:
    """``results_dir`` if given, else ``<results_root or results>/<profile>``."""
    if results_dir:
        return Path(results_dir).expanduser()
    return default_results_dir(profile, Path(results_root).expanduser() if results_root else None)


def nested_num(d: Any, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict):
            return float("nan")
        d = d.get(k)
    try:
        return float(d) if d is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def metric_of(result: dict[str, Any], test_task: str, split: str = "test") -> float:
    """The paper's metric for ``test_task`` (T1 accuracy, T2 top-1, T3 BLEU) from one result JSON."""
    _, task, key = TASK_METRIC[test_task]
    m = result.get("metrics", {}).get(split, {}).get(task)
    v = m.get(key) if m else None
    return float(v) if v is not None else float("nan")


def _metric(res: dict, test_task: str, split: str = "test") -> float:
    try:
        return metric_of(res, test_task, split)
    except (AttributeError, TypeError, ValueError):
        return float("nan")


def model_label(stage: str, name: str, tau_task: str | None = None, tau: float | None = None) -> str:
    """Human-readable model name: "M1 (T1+T2)", "M3+ensemble", "τ-study T2 τ=5", ..."""
    for label, (s, n, _) in MODELS.items():
        if (s, n) == (stage, name) and stage != "m1":
            return label
    if stage == "m1":
        return f"M1 ({name})"
    if stage == BASELINE_STAGE and name in BASELINE_LABEL:
        return BASELINE_LABEL[name]
    if stage == "tau" and tau_task and tau is not None and np.isfinite(tau):
        return f"τ-study {tau_task} τ={tau:g}"
    return f"{stage}-{name}"


def _path_int(path: Path, prefix: str) -> int | None:
    for part in reversed(path.parts):
        m = re.fullmatch(rf"{prefix}(\d+)", part)
        if m:
            return int(m.group(1))
    return None


def _as_int(v: Any, fallback: int | None) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return fallback


def result_row(res: dict, path: Path | str = "", stage: str | None = None, name: str | None = None) -> dict:
    """The DataFrame row of one result JSON."""
    path = Path(path)
    stage = res.get("stage") if res.get("stage") in ALL_STAGES else stage
    name = str(res.get("name") or name)
    params = res.get("params") if isinstance(res.get("params"), dict) else {}
    tau_task, tau = None, float("nan")
    if stage == "tau":
        m = re.fullmatch(r"(T[123])-tau([0-9.]+)", name)
        tau_task = params.get("task") or (m.group(1) if m else None)
        tau = nested_num(params, "tau")
        if not np.isfinite(tau) and m:
            tau = float(m.group(2))
    metrics = res.get("metrics") if isinstance(res.get("metrics"), dict) else {}
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    n_test = next((nested_num(test, t, "n") for t in TASKS if np.isfinite(nested_num(test, t, "n"))),
                  float("nan"))
    tasks = res.get("tasks") or [t for t in TASKS if t in test]
    return {
        "stage": stage, "name": name, "model": model_label(stage, name, tau_task, tau),
        "p": _as_int(res.get("p"), _path_int(path, "p")), "seed": _as_int(res.get("seed"), _path_int(path, "seed")),
        "tasks": ",".join(tasks), "tau_task": tau_task, "tau": tau,
        "T1_acc": _metric(res, "T1"), "T1_bacc": nested_num(test, "coarse", "balanced_accuracy"),
        "T1_f1": nested_num(test, "coarse", "macro_f1"),
        "T2_top1": _metric(res, "T2"), "T2_top5": nested_num(test, "fine", "top5"),
        "T3_bleu": _metric(res, "T3"), "T3_bleu4": nested_num(test, "caption", "bleu4"),
        "T3_exact": nested_num(test, "caption", "exact_match"),
        "val_T1": _metric(res, "T1", "val"),
        "val_T1_bacc": nested_num(metrics.get("val"), "coarse", "balanced_accuracy"), "val_T2": _metric(res, "T2", "val"), "val_T3": _metric(res, "T3", "val"),
        "val_score": nested_num(res, "best_val_score"), "n_test": n_test,
        "split_hash": res.get("split_hash"), "wall_s": nested_num(res, "wall_s"), "path": str(path), "result": res,
    }


def result_rows(folder, pattern=None) -> tuple[list[dict], list[str]]:
    """``(rows, skipped)``: one :func:`result_row` per ``folder/p*/seed*/*.json`` whose name matches
    ``pattern`` (default :data:`RESULT_RE`, groups stage and name); unreadable files and files without
    p or seed are skipped with a warning and listed in ``skipped``."""
    pattern = pattern or RESULT_RE
    rows, skipped = [], []
    for path in sorted(Path(folder).glob("p*/seed*/*.json")):
        m = pattern.match(path.name)
        if not m:
            continue
        try:
            res = read_json(path)
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping unreadable result {project_relative(path, siblings=True)}: {exc}", stacklevel=2)
            skipped.append(str(path))
            continue
        if not isinstance(res, dict):
            skipped.append(str(path))
            continue
        row = result_row(res, path, m.group(1), m.group(2))
        if row["p"] is None or row["seed"] is None:
            warnings.warn(f"skipping {path}: no p or seed", stacklevel=2)
            skipped.append(str(path))
            continue
        rows.append(row)
    return rows, skipped


def load_results(profile: str = "quick", results_root=None, results_dir=None) -> pd.DataFrame:
    """One row per ``<folder>/p<p>/seed<seed>/<stage>-<name>.json`` (other files are ignored).

    ``<folder>`` is ``results_dir`` or ``<results_root or results>/<profile>``. Columns: stage,
    name, model, p, seed, tasks, τ (``tau_task``, ``tau``), the test metrics ``T1_acc T1_bacc
    T1_f1 T2_top1 T2_top5 T3_bleu T3_bleu4 T3_exact``, the validation metrics ``val_T1 val_T1_bacc
    val_T2 val_T3 val_score``, path and the parsed JSON (``result``). Unreadable files are skipped with
    a warning; a missing folder gives an empty frame.
    """
    folder = results_folder(profile, results_root, results_dir)
    rows, skipped = result_rows(folder)
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if not df.empty:
        df["p"] = df["p"].astype(int)
        df["seed"] = df["seed"].astype(int)
        order = {s: i for i, s in enumerate(ALL_STAGES)}
        df = df.sort_values(["stage", "name", "p", "seed"], key=lambda c: c.map(order) if c.name == "stage" else c)
        df = df.reset_index(drop=True)
    df.attrs["folder"] = str(folder)
    df.attrs["skipped"] = skipped
    return df


def mean_std(values: Iterable[float]) -> dict[str, float]:
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = int(x.size)
    return {"mean": float(x.mean()) if n else float("nan"),
            "std": float(x.std(ddof=1)) if n >= 2 else float("nan"), "n": n}


def study_ps(df: pd.DataFrame, ps=None, stage: str | None = None) -> list[int]:
    if ps is not None:
        return sorted({int(p) for p in ps})
    if df is not None and not df.empty:
        sel = df if stage is None else df[df["stage"] == stage]
        if not sel.empty:
            return sorted(set(sel["p"].astype(int)))
        return sorted(set(df["p"].astype(int)))
    return list(P_VALUES)


def select_runs(df: pd.DataFrame, stage: str, name: str, p: int | None = None) -> pd.DataFrame:
    if df is None or df.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    sel = (df["stage"] == stage) & (df["name"] == name)
    if p is not None:
        sel &= df["p"] == p
    return df[sel]


def stats_frame(rows: dict, index_names: list[str], groups: Iterable[str], stats=STATS) -> pd.DataFrame:
    cols = pd.MultiIndex.from_product([list(groups), list(stats)])
    out = pd.DataFrame.from_dict(rows, orient="index")
    if out.empty:
        out = pd.DataFrame(columns=cols, index=pd.MultiIndex.from_tuples([], names=index_names))
    else:
        out = out.reindex(columns=cols)
        if isinstance(out.index, pd.MultiIndex):
            out.index.names = index_names
        else:
            out.index.name = index_names[0]
    for g in groups:
        if (g, "n") in out:
            out[(g, "n")] = out[(g, "n")].fillna(0).astype(int)
    return out
