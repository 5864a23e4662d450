"""The study's report: this project's numbers over seeds beside the paper's (DESIGN.md §5, §6).

* :func:`load_results` reads every ``results/<profile>/p<p>/seed<seed>/<stage>-<name>.json``
  into one DataFrame (one row per trained model).
* Tables (paper §4.2): :func:`table3` (M1 task subsets), :func:`table4` (τ study),
  :func:`table5` (M2/M3, single teacher and ensemble, and the M1 ensemble as a predictor),
  :func:`table6` (T1 confusion matrix), :func:`topk_by_class` (Fig. 4), :func:`bleu_by_class`
  (§4.2 "BLEU scores across the diseases") and :func:`error_analysis` (supplement §3).
  The comparison tables have columns ``(task, stat)`` with stat ∈ mean, std (over seeds,
  ddof = 1), n (seeds) and paper; :func:`fmt` turns them into "mean ± std (n)" beside "paper".
* Plots return their matplotlib figure.
* :func:`export_report` executes ``notebooks/06_report.ipynb`` with papermill and writes the
  HTML report, LaTeX tables and PNG figures; :func:`headline_markdown` is the README summary.

Missing stages, p values or seeds give NaN cells and notes, never an error. The "best model"
of Table 6, Fig. 4, per-class BLEU and the error analysis is chosen on validation (mean over
seeds of the task's validation metric, or of the model-selection score for the 3-task error
analysis) among M1, M2 and M3 at the largest p — never on test.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from . import P_VALUES
from .claims import METRIC_COL, METRIC_NAME, MODELS, TASK_CODES, claims_table
from .paper import paper_confusion, paper_value
from .paths import PROJECT_ROOT, results_dir as default_results_dir
from .runio import atomic_write_text, read_json
from .tables import metric_of

STAGES = ("m1", "tau", "m2", "m3", "ensemble")
SUBSETS = ("T1", "T2", "T3", "T1+T2", "T1+T3", "T2+T3", "T1+T2+T3")
PAPER_TAUS = (0.5, 1.0, 5.0, 10.0)
RESULT_RE = re.compile(r"^(m1|tau|m2|m3|ensemble)-(.+)\.json$")
STATS = ("mean", "std", "n", "paper")
# which notebook produces each stage (for "what is missing" notes)
NOTEBOOK_OF = {"m1": "01_m1_teachers", "ensemble": "02_m2_distill", "m2": "02_m2_distill",
               "m3": "03_m3_unlabeled", "tau": "04_temperature"}
# our T1 classes -> the paper's (ODIR has no melanoma; "other" stands in for it)
PAPER_CLASS = {"other": "melanoma"}
PAPER_CLASS_ORDER = ("melanoma", "glaucoma", "amd", "dr", "normal")
TASK_KEY = {"T1": "coarse", "T2": "fine", "T3": "caption"}
SELECTION_STAGES = ("m1", "m2", "m3")
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
    "val_T1", "val_T2", "val_T3", "val_score", "n_test", "split_hash", "wall_s", "path", "result",
]


# ---------------------------------------------------------------- loading

def results_folder(profile: str = "quick", results_root=None, results_dir=None) -> Path:
    """``results_dir`` if given, else ``<results_root or results>/<profile>``."""
    if results_dir:
        return Path(results_dir).expanduser()
    return default_results_dir(profile, Path(results_root).expanduser() if results_root else None)


def _num(d: Any, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict):
            return float("nan")
        d = d.get(k)
    try:
        return float(d) if d is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


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
    stage = res.get("stage") if res.get("stage") in STAGES else stage
    name = str(res.get("name") or name)
    params = res.get("params") if isinstance(res.get("params"), dict) else {}
    tau_task, tau = None, float("nan")
    if stage == "tau":
        m = re.fullmatch(r"(T[123])-tau([0-9.]+)", name)
        tau_task = params.get("task") or (m.group(1) if m else None)
        tau = _num(params, "tau")
        if not np.isfinite(tau) and m:
            tau = float(m.group(2))
    metrics = res.get("metrics") if isinstance(res.get("metrics"), dict) else {}
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    n_test = next((_num(test, t, "n") for t in ("coarse", "fine", "caption") if np.isfinite(_num(test, t, "n"))),
                  float("nan"))
    tasks = res.get("tasks") or [t for t in ("coarse", "fine", "caption") if t in test]
    return {
        "stage": stage, "name": name, "model": model_label(stage, name, tau_task, tau),
        "p": _as_int(res.get("p"), _path_int(path, "p")), "seed": _as_int(res.get("seed"), _path_int(path, "seed")),
        "tasks": ",".join(tasks), "tau_task": tau_task, "tau": tau,
        "T1_acc": _metric(res, "T1"), "T1_bacc": _num(test, "coarse", "balanced_accuracy"),
        "T1_f1": _num(test, "coarse", "macro_f1"),
        "T2_top1": _metric(res, "T2"), "T2_top5": _num(test, "fine", "top5"),
        "T3_bleu": _metric(res, "T3"), "T3_bleu4": _num(test, "caption", "bleu4"),
        "T3_exact": _num(test, "caption", "exact_match"),
        "val_T1": _metric(res, "T1", "val"), "val_T2": _metric(res, "T2", "val"), "val_T3": _metric(res, "T3", "val"),
        "val_score": _num(res, "best_val_score"), "n_test": n_test,
        "split_hash": res.get("split_hash"), "wall_s": _num(res, "wall_s"), "path": str(path), "result": res,
    }


def load_results(profile: str = "quick", results_root=None, results_dir=None) -> pd.DataFrame:
    """One row per ``<folder>/p<p>/seed<seed>/<stage>-<name>.json`` (other files are ignored).

    ``<folder>`` is ``results_dir`` or ``<results_root or results>/<profile>``. Columns: stage,
    name, model, p, seed, tasks, τ (``tau_task``, ``tau``), the test metrics ``T1_acc T1_bacc
    T1_f1 T2_top1 T2_top5 T3_bleu T3_bleu4 T3_exact``, the validation metrics ``val_T1 val_T2
    val_T3 val_score``, path and the parsed JSON (``result``). Unreadable files are skipped with
    a warning; a missing folder gives an empty frame.
    """
    folder = results_folder(profile, results_root, results_dir)
    rows, skipped = [], []
    for path in sorted(folder.glob("p*/seed*/*.json")):
        m = RESULT_RE.match(path.name)
        if not m:
            continue
        try:
            res = read_json(path)
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping unreadable result {path}: {exc}", stacklevel=2)
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
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if not df.empty:
        df["p"] = df["p"].astype(int)
        df["seed"] = df["seed"].astype(int)
        order = {s: i for i, s in enumerate(STAGES)}
        df = df.sort_values(["stage", "name", "p", "seed"], key=lambda c: c.map(order) if c.name == "stage" else c)
        df = df.reset_index(drop=True)
    df.attrs["folder"] = str(folder)
    df.attrs["skipped"] = skipped
    return df


# ---------------------------------------------------------------- helpers

def _stats(values: Iterable[float]) -> dict[str, float]:
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = int(x.size)
    return {"mean": float(x.mean()) if n else float("nan"),
            "std": float(x.std(ddof=1)) if n >= 2 else float("nan"), "n": n}


def _ps(df: pd.DataFrame, ps=None, stage: str | None = None) -> list[int]:
    if ps is not None:
        return sorted({int(p) for p in ps})
    if df is not None and not df.empty:
        sel = df if stage is None else df[df["stage"] == stage]
        if not sel.empty:
            return sorted(set(sel["p"].astype(int)))
        return sorted(set(df["p"].astype(int)))
    return list(P_VALUES)


def _select(df: pd.DataFrame, stage: str, name: str, p: int | None = None) -> pd.DataFrame:
    if df is None or df.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    sel = (df["stage"] == stage) & (df["name"] == name)
    if p is not None:
        sel &= df["p"] == p
    return df[sel]


def _frame(rows: dict, index_names: list[str], groups: Iterable[str], stats=STATS) -> pd.DataFrame:
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


def _compare(df: pd.DataFrame, specs: list[tuple[str, str, str, tuple | None]], ps: list[int],
             index_name: str) -> pd.DataFrame:
    rows = {}
    for label, stage, name, ref in specs:
        for p in ps:
            sel = _select(df, stage, name, p)
            row = {}
            for tt in TASK_CODES:
                st = _stats(sel[METRIC_COL[tt]]) if not sel.empty else _stats([])
                paper = paper_value(ref[0], ref[1], ref[2], tt, p) if ref else float("nan")
                row.update({(tt, "mean"): st["mean"], (tt, "std"): st["std"], (tt, "n"): st["n"], (tt, "paper"): paper})
            rows[(label, p)] = row
    return _frame(rows, [index_name, "p"], TASK_CODES)


# ---------------------------------------------------------------- Tables 3–5

def table3(df: pd.DataFrame, ps=None) -> pd.DataFrame:
    """Paper Table 3: M1 per task subset × p, T1 accuracy / T2 top-1 / T3 BLEU, beside the paper.

    Rows ``(train tasks, p)`` for the p values of our results (all five when there are none).
    """
    ps = _ps(df, ps)
    specs = [(s, "m1", s, ("paper_table3", "M1", s)) for s in SUBSETS]
    return _compare(df, specs, ps, "train tasks")


def table5(df: pd.DataFrame, ps=None) -> pd.DataFrame:
    """Paper Table 5 rows 4–7 (M2, M2+ensemble, M3, M3+ensemble) with the M1 {T1,T2,T3} baseline
    (Table 3 row 7) and the M1 teacher ensemble evaluated as a predictor (no paper counterpart)."""
    ps = _ps(df, ps)
    specs = [(label, s, n, ref) for label, (s, n, ref) in MODELS.items()]
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

    Extra stat ``chosen``: for how many seeds this τ had the best validation score (how the
    study picks τ; never on test).
    """
    ps = _ps(df, ps, stage="tau")
    taus = sorted(set(PAPER_TAUS) | (set(df.loc[df["stage"] == "tau", "tau"].dropna().astype(float))
                                     if df is not None and not df.empty else set()))
    chosen = _tau_choices(df)
    rows = {}
    for tau in taus:
        for p in ps:
            row = {}
            for tt in TASK_CODES:
                if df is None or df.empty:
                    sel = pd.DataFrame(columns=RESULT_COLUMNS)
                else:
                    sel = df[(df["stage"] == "tau") & (df["tau_task"] == tt) & (df["p"] == p)
                             & np.isclose(df["tau"].astype(float).fillna(-1), tau)]
                st = _stats(sel[METRIC_COL[tt]])
                n_chosen = int(((chosen["tau_task"] == tt) & (chosen["p"] == p)
                                & np.isclose(chosen["tau"].astype(float), tau)).sum()) if not chosen.empty else 0
                row.update({(tt, "mean"): st["mean"], (tt, "std"): st["std"], (tt, "n"): st["n"],
                            (tt, "paper"): paper_value("paper_table4", "M3", tt, tt, p, temperature=tau),
                            (tt, "chosen"): n_chosen})
            rows[(tau, p)] = row
    return _frame(rows, ["τ", "p"], TASK_CODES, STATS + ("chosen",))


# ---------------------------------------------------------------- best model

def best_model(df: pd.DataFrame, task: str | None = None, p: int | None = None,
               stages: Iterable[str] = SELECTION_STAGES, need: str | None = None) -> dict[str, Any] | None:
    """The model with the best mean validation score over seeds at ``p`` (default: the largest p
    with a candidate). ``task`` "T1"/"T2"/"T3" ranks by that task's validation metric among the
    models that learned it; ``None`` ranks 3-task models by ``val_score``. ``need`` names a key
    the test metrics must hold (e.g. "error_analysis"). ``None`` if there is no candidate."""
    if df is None or df.empty:
        return None
    cand = df[df["stage"].isin(list(stages))]
    if task:
        score = f"val_{task}"
        cand = cand[cand[METRIC_COL[task]].notna()]
    else:
        score = "val_score"
        cand = cand[cand["T1_acc"].notna() & cand["T2_top1"].notna() & cand["T3_bleu"].notna()]
    if need:
        cand = cand[cand["result"].map(lambda r: need in ((r.get("metrics") or {}).get("test") or {}))]
    cand = cand[cand[score].notna()]
    if cand.empty:
        return None
    p = int(p) if p is not None else int(cand["p"].max())
    cand = cand[cand["p"] == p]
    if cand.empty:
        return None
    order = {s: i for i, s in enumerate(STAGES)}
    g = cand.groupby(["stage", "name"])[score].agg(["mean", "count"]).reset_index()
    g["rank"] = g["stage"].map(order)
    g = g.sort_values(["mean", "rank"], ascending=[False, False])
    top = g.iloc[0]
    rows = cand[(cand["stage"] == top["stage"]) & (cand["name"] == top["name"])]
    return {"stage": top["stage"], "name": top["name"], "model": rows["model"].iloc[0], "p": p,
            "val_score": float(top["mean"]), "seeds": sorted(rows["seed"].astype(int)), "rows": rows,
            "selected_by": f"validation {METRIC_NAME[task] if task else 'score (mean of the three tasks)'}"}


def _pick(df, task, p, model, need=None):
    """``model`` = ``(stage, name)`` forces a model; else :func:`best_model`."""
    if model is not None:
        stage, name = model
        sel = _select(df, stage, name)
        if sel.empty:
            return None
        p = int(p) if p is not None else int(sel["p"].max())
        rows = sel[sel["p"] == p]
        if rows.empty:
            return None
        return {"stage": stage, "name": name, "model": rows["model"].iloc[0], "p": p, "val_score": float("nan"),
                "seeds": sorted(rows["seed"].astype(int)), "rows": rows, "selected_by": "given"}
    return best_model(df, task, p, need=need)


def _describe(best: dict | None, what: str) -> str:
    if not best:
        return f"no results for {what} yet"
    return (f"{best['model']} at p = {best['p']} ({len(best['seeds'])} seed(s): "
            f"{', '.join(map(str, best['seeds']))}; selected by {best['selected_by']})")


def _class_order(classes: Iterable[str]) -> list[str]:
    classes = list(dict.fromkeys(classes))
    inv = {PAPER_CLASS.get(c, c): c for c in classes}
    ordered = [inv[pc] for pc in PAPER_CLASS_ORDER if pc in inv]
    return ordered + [c for c in classes if c not in ordered]


def _class_label(c: str) -> str:
    return f"{c} (paper: {PAPER_CLASS[c]})" if c in PAPER_CLASS else c


# ---------------------------------------------------------------- Table 6, Fig. 4, BLEU per class

def table6(df: pd.DataFrame, p: int | None = None, model=None) -> pd.DataFrame:
    """Paper Table 6: T1 confusion matrix (rows true, columns predicted) of the best T1 model,
    summed over seeds at the largest p, beside the paper's (its melanoma row/column faces our
    "other"), each with per-class recall. ``attrs["note"]`` says which model."""
    best = _pick(df, "T1", p, model)
    paper = paper_confusion()
    mats, classes = [], []
    if best:
        for res in best["rows"]["result"]:
            c = ((res.get("metrics") or {}).get("test") or {}).get("coarse") or {}
            if c.get("confusion") and c.get("classes"):
                cm = pd.DataFrame(c["confusion"], index=c["classes"], columns=c["classes"], dtype=float)
                mats.append(cm)
                classes += list(c["classes"])
    order = _class_order(classes) if classes else [
        next((k for k, v in PAPER_CLASS.items() if v == pc), pc) for pc in PAPER_CLASS_ORDER]
    ours = sum(m.reindex(index=order, columns=order, fill_value=0) for m in mats) if mats else \
        pd.DataFrame(np.nan, index=order, columns=order)
    pnames = [PAPER_CLASS.get(c, c) for c in order]
    pm = paper.reindex(index=pnames, columns=[c for c in pnames if c in paper.columns]).astype(float)
    out = pd.DataFrame(index=[_class_label(c) for c in order])
    out.index.name = "actual"
    counts = ours.round().astype("Int64") if mats else ours.astype("Int64")
    for c in order:
        out[("ours", c)] = counts[c].to_numpy()
    out[("ours", "recall")] = (np.diag(ours.to_numpy()) / ours.sum(axis=1).replace(0, np.nan)).to_numpy()
    for c in pm.columns:
        out[("paper", c)] = pm[c].round().astype("Int64").to_numpy()
    diag = [pm.loc[c, c] if c in pm.columns and c in pm.index else np.nan for c in pnames]
    out[("paper", "recall")] = np.asarray(diag, dtype=float) / pm.sum(axis=1).replace(0, np.nan).to_numpy()
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["", "predicted"])
    out.attrs["note"] = _describe(best, "T1")
    out.attrs["model"] = best["model"] if best else None
    out.attrs["p"] = best["p"] if best else None
    out.attrs["seeds"] = best["seeds"] if best else []
    return out


@lru_cache(maxsize=1)
def headlines() -> pd.DataFrame:
    """The paper's headline numbers (``quantity, value, source``)."""
    from .paper import paper_headlines

    return paper_headlines()


def _headline(quantity_prefix: str) -> float:
    h = headlines()
    sel = h[h["quantity"].str.startswith(quantity_prefix)]
    return float(sel["value"].iloc[0]) if len(sel) else float("nan")


def topk_by_class(df: pd.DataFrame, p: int | None = None, model=None) -> pd.DataFrame:
    """Paper Fig. 4: T2 top-k accuracy (k = 1..5) per T1 class of the best T2 model (mean ± std over
    seeds at the largest p) and over all test images; the paper's values where it gives them
    (top-5 ~0.96 for melanoma, and its best model's top-1/top-5 over all images)."""
    best = _pick(df, "T2", p, model)
    per: dict[str, dict[int, list[float]]] = {}
    for res in (best["rows"]["result"] if best else []):
        f = ((res.get("metrics") or {}).get("test") or {}).get("fine") or {}
        by, nb = f.get("topk_by_group") or {}, f.get("n_by_group") or {}
        for g, accs in by.items():
            for k in range(1, 6):
                per.setdefault(g, {}).setdefault(k, []).append(_num(accs, str(k)))
        tot = sum(nb.get(g, 0) or 0 for g in by)
        for k in range(1, 6):
            if tot:
                v = sum(_num(by[g], str(k)) * (nb.get(g, 0) or 0) for g in by) / tot
            else:
                v = _num(f, f"top{k}")
            per.setdefault("all", {}).setdefault(k, []).append(v)
    groups = _class_order([g for g in per if g != "all"]) + ["all"]
    paper = {("top5", "other"): _headline("T2 top-5 accuracy for melanoma"),
             ("top5", "all"): _headline("T2 top-5 accuracy best model"),
             ("top1", "all"): _headline("T2 top-1 accuracy best model")}
    rows = {}
    for g in groups:
        row = {}
        for k in range(1, 6):
            st = _stats(per.get(g, {}).get(k, []))
            key = f"top{k}"
            row.update({(key, "mean"): st["mean"], (key, "std"): st["std"], (key, "n"): st["n"],
                        (key, "paper"): paper.get((key, g), float("nan"))})
        rows[_class_label(g)] = row
    out = _frame(rows, ["T1 class"], [f"top{k}" for k in range(1, 6)])
    out.attrs["note"] = _describe(best, "T2")
    out.attrs["model"] = best["model"] if best else None
    return out


def bleu_by_class(df: pd.DataFrame, p: int | None = None, model=None) -> pd.DataFrame:
    """Paper §4.2: T3 ``bleu_paper`` per T1 class of the best T3 model (mean ± std over seeds at the
    largest p), and over all test images, beside the paper's per-disease BLEU."""
    best = _pick(df, "T3", p, model)
    per: dict[str, list[float]] = {}
    n_img: dict[str, list[float]] = {}
    for res in (best["rows"]["result"] if best else []):
        c = ((res.get("metrics") or {}).get("test") or {}).get("caption") or {}
        for g, v in (c.get("bleu_paper_by_group") or {}).items():
            per.setdefault(g, []).append(_num({"v": v}, "v"))
            n_img.setdefault(g, []).append(_num(c.get("n_by_group") or {}, g))
        per.setdefault("all", []).append(_num(c, "bleu_paper"))
        n_img.setdefault("all", []).append(_num(c, "n"))
    paper = {"other": _headline("T3 BLEU melanoma"), "glaucoma": _headline("T3 BLEU glaucoma"),
             "amd": _headline("T3 BLEU AMD"), "dr": _headline("T3 BLEU DR"), "all": _headline("T3 BLEU best model")}
    groups = _class_order([g for g in per if g != "all"]) + ["all"]
    rows = {}
    for g in groups:
        st = _stats(per.get(g, []))
        ni = _stats(n_img.get(g, []))
        rows[_class_label(g)] = {("bleu_paper", "mean"): st["mean"], ("bleu_paper", "std"): st["std"],
                                 ("bleu_paper", "n"): st["n"], ("bleu_paper", "paper"): paper.get(g, float("nan")),
                                 ("test images", "mean"): ni["mean"]}
    out = _frame(rows, ["T1 class"], ["bleu_paper"])
    out[("test images", "mean")] = pd.Series({k: v[("test images", "mean")] for k, v in rows.items()})
    out.attrs["note"] = _describe(best, "T3")
    out.attrs["model"] = best["model"] if best else None
    return out


def error_analysis(df: pd.DataFrame, p: int | None = None, model=None) -> pd.DataFrame:
    """Supplement §3: agreement between the tasks' outcomes for the best 3-task model (chosen on
    validation at the largest p), as counts and as rates of the test set (the test sets differ:
    the paper's has 1082 images), beside the paper's counts."""
    best = _pick(df, None, p, model, need="error_analysis")
    vals: dict[str, list[float]] = {k: [] for k in ERROR_KEYS}
    rates: dict[str, list[float]] = {k: [] for k in ERROR_KEYS}
    for res in (best["rows"]["result"] if best else []):
        ea = ((res.get("metrics") or {}).get("test") or {}).get("error_analysis") or {}
        n = _num(ea, "test_samples")
        for k in ERROR_KEYS:
            v = _num(ea, k)
            vals[k].append(v)
            rates[k].append(v / n if n and np.isfinite(n) else float("nan"))
    paper_n = _headline(ERROR_KEYS["test_samples"])
    rows = {}
    for k, q in ERROR_KEYS.items():
        pc = _headline(q)
        c, r = _stats(vals[k]), _stats(rates[k])
        rows[ERROR_LABELS[k]] = {("count", "mean"): c["mean"], ("count", "std"): c["std"], ("count", "n"): c["n"],
                                 ("count", "paper"): pc, ("rate", "mean"): r["mean"], ("rate", "std"): r["std"],
                                 ("rate", "n"): r["n"], ("rate", "paper"): pc / paper_n if paper_n else float("nan")}
    out = _frame(rows, ["outcome"], ["count", "rate"])
    out.attrs["note"] = _describe(best, "a 3-task model with error analysis")
    out.attrs["model"] = best["model"] if best else None
    return out


# ---------------------------------------------------------------- inventory

def _model_sort_key(stage: str, name: str) -> tuple:
    """Study order: M1 subsets as in Table 3, the M1 ensemble, M2, M3, then the τ study by task and τ."""
    rank = {"m1": 0, "ensemble": 1, "m2": 2, "m3": 3, "tau": 4}.get(stage, 5)
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


def missing(df: pd.DataFrame, taus: Iterable[float] = PAPER_TAUS) -> list[str]:
    """What this report lacks, as sentences (empty list: everything expected is there).

    Expected: every model of the study at every p and seed present anywhere in the results.
    """
    skipped = [] if df is None else list(df.attrs.get("skipped", []))
    unread = [f"{len(skipped)} unreadable result file(s) skipped: {', '.join(skipped[:5])}"
              + (" …" if len(skipped) > 5 else "")] if skipped else []
    if df is None or df.empty:
        return unread + ["no result files yet: run the notebooks 01–04 "
                         "(e.g. `python -m repro sweep --profile <profile>`)"]
    ps, seeds = sorted(set(df["p"])), sorted(set(df["seed"]))
    expected = [("m1", s) for s in SUBSETS] + [("ensemble", "m1"), ("m2", "single"), ("m2", "ensemble"),
                                               ("m3", "single"), ("m3", "ensemble")]
    expected += [("tau", f"{t}-tau{tau:g}") for t in TASK_CODES for tau in taus]
    have = set(zip(df["stage"], df["name"], df["p"], df["seed"]))
    notes = []
    by_stage: dict[str, list[str]] = {}
    for stage, name in expected:
        gaps = [f"p={p}" + ("" if len(seeds) == 1 else f" seed(s) {','.join(str(s) for s in seeds if (stage, name, p, s) not in have)}")
                for p in ps if any((stage, name, p, s) not in have for s in seeds)]
        if gaps:
            by_stage.setdefault(stage, []).append(f"{stage}-{name} ({'; '.join(gaps)})")
    for stage, items in by_stage.items():
        notes.append(f"missing {', '.join(items)}: run notebooks/{NOTEBOOK_OF[stage]}.ipynb")
    absent = [p for p in P_VALUES if p not in ps]
    if absent:
        notes.append(f"no runs at p = {', '.join(map(str, absent))} (the paper reports p = 15 … 70)")
    if len(seeds) < 2:
        notes.append(f"only {len(seeds)} seed: no standard deviations and no confidence intervals")
    hashes = set(df["split_hash"].dropna())
    if len(hashes) > 1:
        notes.append(f"results come from {len(hashes)} different split files: comparisons mix splits")
    return unread + notes


# ---------------------------------------------------------------- formatting

def _fmt_num(v: float, digits: int) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def fmt(table: pd.DataFrame, digits: int | dict[str, int] = 3) -> pd.DataFrame:
    """Display form of a comparison table: per column group "mean ± std (n)" as ``ours`` beside
    ``paper``; other columns (e.g. ``chosen``) kept. Missing values read "–"."""
    if table is None or table.empty or not isinstance(table.columns, pd.MultiIndex):
        return table
    out = {}
    for g in dict.fromkeys(table.columns.get_level_values(0)):
        d = digits.get(g, 3) if isinstance(digits, dict) else digits
        stats = list(table[g].columns)
        if "mean" in stats and "n" in stats:
            def ours(r, d=d):
                if not r["n"]:
                    return "–"
                s = _fmt_num(r["mean"], d)
                if r["n"] >= 2 and np.isfinite(r["std"]):
                    s += f" ± {_fmt_num(r['std'], d)}"
                return f"{s} ({int(r['n'])})"
            out[(g, "ours")] = table[g].apply(ours, axis=1)
            if "paper" in stats:
                out[(g, "paper")] = table[(g, "paper")].map(lambda v, d=d: _fmt_num(v, d))
            for s in stats:
                if s not in STATS:
                    out[(g, s)] = table[(g, s)]
        else:
            for s in stats:
                col = table[(g, s)]
                out[(g, s)] = col.map(lambda v, d=d: _fmt_num(v, d)) if col.dtype.kind == "f" else col
    res = pd.DataFrame(out, index=table.index)
    res.columns = pd.MultiIndex.from_tuples(res.columns)
    return res


def fmt_claims(claims: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Display form of :func:`repro.claims.claims_table`: signed effect, "[low, high]" intervals."""
    if claims is None or claims.empty:
        return claims

    def ci(lo, hi):
        return "–" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"

    def signed(v):
        return "–" if v is None or not np.isfinite(v) else f"{v:+.{digits}f}"

    return pd.DataFrame({
        "claim": claims["claim"], "task": claims["task"], "comparison": claims["comparison"],
        "p": claims["p"], "pairs": claims["n_pairs"], "effect": claims["effect"].map(signed),
        "95% CI (t)": [ci(a, b) for a, b in zip(claims["ci_low"], claims["ci_high"])],
        "95% CI (bootstrap)": [ci(a, b) for a, b in zip(claims["boot_low"], claims["boot_high"])],
        "verdict": claims["verdict"], "paper effect": claims["paper_effect"].map(signed),
    })


# ---------------------------------------------------------------- plots

def setup_plots(dpi: int = 90) -> None:
    """Modest figure resolution and font sizes (keeps the HTML report small)."""
    import matplotlib as mpl

    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9, "axes.titlesize": 10,
                         "legend.fontsize": 8})


def _empty(ax, text="no results yet"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")


def plot_metric_vs_p(df: pd.DataFrame, models=("M1 (T1+T2+T3)", "M2", "M3", "M3+ensemble")):
    """Metric vs labeled fraction p per task: ours (mean ± std over seeds, solid) and the paper (dashed)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    t5 = table5(df, ps=P_VALUES)
    for ax, tt in zip(axes, TASK_CODES):
        drawn = False
        for i, label in enumerate(models):
            if label not in t5.index.get_level_values(0):
                continue
            drawn |= _ours_vs_paper(ax, t5.loc[label], tt, colors[i % len(colors)], label)
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
    for ax, tt in zip(axes, TASK_CODES):
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
    """Forest plot: paired effect A − B with its 95 % t-interval per claim and task; × = the paper."""
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
        c = colour.get(r["verdict"], "0.4")
        if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
            ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=c, lw=2)
        if np.isfinite(r["effect"]):
            ax.plot(r["effect"], yi, "o", color=c, ms=5)
        if np.isfinite(r["paper_effect"]):
            ax.plot(r["paper_effect"], yi, "kx", ms=6)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r['comparison']} · {r['task']}" for _, r in rows.iterrows()], fontsize=7)
    ax.set(xlabel="effect A − B (test score; ○ ours with 95% CI, × paper)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- summaries

def summary(df: pd.DataFrame, claims: pd.DataFrame | None = None, profile: str | None = None) -> dict[str, Any]:
    """What ``06_report.json`` records: run counts per stage (and per p), best models, claims."""
    counts = {} if df is None or df.empty else {s: int(n) for s, n in df["stage"].value_counts().items()}
    per_p = {} if df is None or df.empty else {
        s: {str(p): int(n) for p, n in g["p"].value_counts().sort_index().items()} for s, g in df.groupby("stage")}
    best = {}
    for task in TASK_CODES:
        b = best_model(df, task)
        best[task] = None if b is None else {k: b[k] for k in ("stage", "name", "model", "p", "val_score", "seeds")}
    claims = claims if claims is not None else claims_table(df)
    return {
        "notebook": "06_report", "profile": profile,
        "runs": int(0 if df is None else len(df)), "runs_per_stage": counts, "runs_per_stage_and_p": per_p,
        "p_values": [] if df is None or df.empty else sorted(int(p) for p in set(df["p"])),
        "seeds": [] if df is None or df.empty else sorted(int(s) for s in set(df["seed"])),
        "best_models": best, "missing": missing(df),
        "claims": claims.to_dict(orient="records"),
    }


def headline_markdown(profile: str = "quick", results_root=None, results_dir=None, df: pd.DataFrame | None = None,
                      ps=(15, 70), with_claims: bool = True) -> str:
    """Markdown for the README: this project vs the paper at p = 15 and 70 (T1/T2/T3 for M1, M2, M3,
    M3+ensemble) and (``with_claims``) the claims' verdicts."""
    if df is None:
        df = load_results(profile, results_root, results_dir)
    t5 = table5(df, ps=ps)
    models = ("M1 (T1+T2+T3)", "M2", "M3", "M3+ensemble")
    head = ["model"] + [f"{tt} p={p}" for p in ps for tt in TASK_CODES]
    lines = [f"Profile `{profile}`: ours (mean ± std over seeds) / paper. "
             "T1 accuracy, T2 top-1 accuracy, T3 BLEU (the authors' sentence BLEU).", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in models:
        cells = [m]
        for p in ps:
            for tt in TASK_CODES:
                r = t5.loc[(m, p)]
                ours = "–" if not r[(tt, "n")] else _fmt_num(r[(tt, "mean")], 3) + (
                    f" ± {_fmt_num(r[(tt, 'std')], 3)}" if r[(tt, "n")] >= 2 else "")
                cells.append(f"{ours} / {_fmt_num(r[(tt, 'paper')], 3)}")
        lines.append("| " + " | ".join(cells) + " |")
    if not with_claims:
        return "\n".join(lines) + "\n"
    n_seeds = 0 if df is None or df.empty else df["seed"].nunique()
    lines += ["", f"Claims (paired differences over p × seed, {n_seeds} seed(s); 95% t-interval):", ""]
    cl = claims_table(df)
    for _, r in cl.iterrows():
        eff = "–" if not np.isfinite(r["effect"]) else f"{r['effect']:+.3f}"
        ci = "" if not np.isfinite(r["ci_low"]) else f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        pe = "" if not np.isfinite(r["paper_effect"]) else f"; paper {r['paper_effect']:+.3f}"
        lines.append(f"- {r['claim']} ({r['comparison']}, {r['task']}, p = {r['p']}): **{r['verdict']}**, "
                     f"effect {eff}{ci}, {r['n_pairs']} pairs{pe}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- export

_LATEX_UNICODE = {"τ": r"$\tau$", "−": "$-$", "∈": r"$\in$", "≥": r"$\geq$", "★": r"$\star$", "±": r"$\pm$",
                  "–": "--", "…": r"\ldots{}", "<": "$<$", ">": "$>$"}


def _escape_caption(text: str) -> str:
    """Escape LaTeX specials in a caption (pandas does not); ``$…$`` math written on purpose is kept."""
    return re.sub(r"([%&_#])", r"\\\1", text)


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """Booktabs LaTeX of a (formatted) table; needs ``\\usepackage{booktabs}`` only."""
    t = table.copy()
    if isinstance(t.columns, pd.MultiIndex):
        t.columns = pd.MultiIndex.from_tuples([tuple(str(x) for x in c) for c in t.columns])
    tex = t.to_latex(escape=True, float_format="%.3f", na_rep="–", multicolumn=True, multicolumn_format="c",
                     multirow=False, caption=_escape_caption(caption), label=label,
                     index=not isinstance(t.index, pd.RangeIndex))
    for k, v in _LATEX_UNICODE.items():
        tex = tex.replace(k, v)
    return tex


def report_tables(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, str]]:
    """name -> (numeric table, display table, caption) for every table of the report."""
    t3, t4, t5 = table3(df), table4(df), table5(df)
    t6, tk, bl, ea = table6(df), topk_by_class(df), bleu_by_class(df), error_analysis(df)
    cl = claims_table(df, per_p=True)
    return {
        "table3": (t3, fmt(t3), "M1 per task subset and p (paper Table 3). Ours: mean $\\pm$ std over seeds (n seeds)."),
        "table4": (t4, fmt(t4), "Temperature study: single-task KD per $\\tau$ and p (paper Table 4); "
                                "chosen = seeds whose validation picked this $\\tau$."),
        "table5": (t5, fmt(t5), "M1 baseline, M2, M3, with single teacher or ensemble, and the M1 ensemble "
                                "as a predictor (paper Table 5)."),
        "table6_confusion": (t6, t6, f"T1 confusion matrix, {t6.attrs.get('note')}, vs the paper's Table 6 "
                                     "(our other stands in for melanoma)."),
        "topk_by_class": (tk, fmt(tk), f"T2 top-k accuracy per T1 class (paper Fig. 4): {tk.attrs.get('note')}."),
        "bleu_by_class": (bl, fmt(bl), f"T3 BLEU per T1 class (paper Section 4.2): {bl.attrs.get('note')}."),
        "error_analysis": (ea, fmt(ea, {"count": 1, "rate": 3}),
                           f"Error analysis (supplement Section 3): {ea.attrs.get('note')}."),
        "claims": (cl, fmt_claims(cl), "The paper's claims: paired effect A $-$ B over p and seeds, 95% CI, verdict."),
    }


def report_figures(df: pd.DataFrame, tables: dict | None = None) -> dict[str, Any]:
    """name -> matplotlib figure of every figure of the report."""
    tables = tables or report_tables(df)
    return {"metric_vs_p": plot_metric_vs_p(df), "tau": plot_tau(df),
            "confusion": plot_confusion(tables["table6_confusion"][0]),
            "topk_by_class": plot_topk_by_class(tables["topk_by_class"][0]),
            "claims": plot_claims(tables["claims"][0])}


@contextmanager
def _kernel_env() -> Iterator[None]:
    """The notebook's kernel imports ``repro`` from this checkout."""
    saved = os.environ.get("PYTHONPATH")
    parts = [str(PROJECT_ROOT)] + [q for q in (saved or "").split(os.pathsep) if q]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def notebook_to_html(executed: Path, html: Path, title: str) -> Path:
    """Self-contained HTML of an executed notebook, code and stderr hidden."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [o for o in cell.get("outputs", [])
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return atomic_write_text(html, body)


def export_report(profile: str = "quick", results_root=None, out_dir=None, figures_dir=None,
                  results_dir=None, run_notebook: bool = True, kernel_name: str = "python3",
                  dpi: int = 100) -> dict[str, Any]:
    """Build the report of ``profile``.

    * executes ``notebooks/06_report.ipynb`` (papermill; parameters ``profile``, ``results_dir``)
      into ``<out_dir>/06_report.ipynb`` and converts it to ``<out_dir>/report.html`` (code hidden);
    * writes every table as LaTeX (``<out_dir>/tables/<name>.tex``) and its numbers as CSV;
    * writes the figures as ``<figures_dir>/<profile>_<name>.png``.

    ``out_dir`` defaults to ``results/<profile>/report``, ``figures_dir`` to ``figures/``.
    Returns the paths written.
    """
    import matplotlib.pyplot as plt

    folder = results_folder(profile, results_root, results_dir)
    out = Path(out_dir) if out_dir else folder / "report"
    figs_out = Path(figures_dir) if figures_dir else PROJECT_ROOT / "figures"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    figs_out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"tables": [], "figures": []}

    df = load_results(profile, results_dir=folder)
    tables = report_tables(df)
    for name, (num, disp, caption) in tables.items():
        tex = out / "tables" / f"{name}.tex"
        atomic_write_text(tex, to_latex(disp, caption, f"tab:{profile}-{name.replace('_', '-')}"))
        num_out = num.drop(columns="result", errors="ignore")
        atomic_write_text(tex.with_suffix(".csv"), num_out.to_csv())
        written["tables"].append(tex)
    for name, fig in report_figures(df, tables).items():
        path = figs_out / f"{profile}_{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        written["figures"].append(path)
    atomic_write_text(out / "headline.md", headline_markdown(profile, df=df))
    written["headline"] = out / "headline.md"

    if run_notebook:
        import papermill

        from .study import check_kernel

        check_kernel(kernel_name)
        nb_in = PROJECT_ROOT / "notebooks" / "06_report.ipynb"
        executed = out / "06_report.ipynb"
        with _kernel_env():
            papermill.execute_notebook(str(nb_in), str(executed), parameters={"profile": profile, "results_dir": str(folder)},
                                       cwd=str(nb_in.parent), kernel_name=kernel_name, progress_bar=False,
                                       log_output=False)
        written["notebook"] = executed
        written["html"] = notebook_to_html(executed, out / "report.html", f"Report — {profile}")
    return written


# ---------------------------------------------------------------- command line

def cmd_report(args) -> int:
    written = export_report(args.profile, results_root=args.results_root, out_dir=args.out_dir,
                            figures_dir=args.figures_dir, run_notebook=not args.no_notebook)
    for key in ("html", "notebook", "headline"):
        if key in written:
            print(f"{key:<9} {written[key]}")
    print(f"tables    {len(written['tables'])} in {Path(written['tables'][0]).parent}")
    print(f"figures   {len(written['figures'])} in {Path(written['figures'][0]).parent}")
    print()
    print(Path(written["headline"]).read_text(encoding="utf-8"))
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("report", help="build the report: HTML (notebook 06), LaTeX tables, figures, claims")
    p.add_argument("--profile", default="quick")
    p.add_argument("--results-root", default=None, help="folder holding <profile>/ (default: results)")
    p.add_argument("--out-dir", default=None, help="default: <results-root>/<profile>/report")
    p.add_argument("--figures-dir", default=None, help="default: figures/")
    p.add_argument("--no-notebook", action="store_true", help="only tables, figures and the headline (no HTML)")
    p.set_defaults(func=cmd_report)
