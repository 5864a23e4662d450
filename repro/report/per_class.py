"""Best model per task and p, and per-class views: Table 6 (confusion), top-k and BLEU per class, error analysis (docs/design.md §5)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import pandas as pd

from repro.names import CLAIM_NAME, METRIC_COL, SELECTION_STAGES, STAGES
from repro.report.paper import paper_confusion
from repro.report.results import (ERROR_KEYS, ERROR_LABELS, PAPER_CLASS, PAPER_CLASS_ORDER, mean_std, nested_num,
                                  select_runs, stats_frame)


def _at_p(rows: pd.DataFrame, p: int | None) -> tuple[int, pd.DataFrame] | None:
    """``(p, rows at p)``, p defaulting to the largest p present; ``None`` if there are none."""
    if rows.empty:
        return None
    p = int(p) if p is not None else int(rows["p"].max())
    rows = rows[rows["p"] == p]
    return None if rows.empty else (p, rows)


def best_model(df: pd.DataFrame, task: str | None = None, p: int | None = None,
               stages: Iterable[str] = SELECTION_STAGES, need: str | None = None) -> dict[str, Any] | None:
    """The model with the best mean validation score over seeds at ``p`` (default: the largest p
    with a candidate). ``task`` "T1"/"T2"/"T3" ranks by that task's main validation metric (T1:
    balanced accuracy, :data:`repro.names.PRIMARY`) among the models that learned it; ``None`` ranks 3-task models by ``val_score``. ``need`` names a key
    the test metrics must hold (e.g. "error_analysis"). ``None`` if there is no candidate."""
    if df is None or df.empty:
        return None
    cand = df[df["stage"].isin(list(stages))]
    if task:
        score = "val_T1_bacc" if task == "T1" else f"val_{task}"
        cand = cand[cand[METRIC_COL[task]].notna()]
    else:
        score = "val_score"
        cand = cand[cand["T1_acc"].notna() & cand["T2_top1"].notna() & cand["T3_bleu"].notna()]
    if need:
        cand = cand[cand["result"].map(lambda r: need in ((r.get("metrics") or {}).get("test") or {}))]
    at = _at_p(cand[cand[score].notna()], p)
    if at is None:
        return None
    p, cand = at
    order = {s: i for i, s in enumerate(STAGES)}
    g = cand.groupby(["stage", "name"])[score].agg(["mean", "count"]).reset_index()
    g["rank"] = g["stage"].map(order)
    g = g.sort_values(["mean", "rank"], ascending=[False, False])
    top = g.iloc[0]
    rows = cand[(cand["stage"] == top["stage"]) & (cand["name"] == top["name"])]
    return {"stage": top["stage"], "name": top["name"], "model": rows["model"].iloc[0], "p": p,
            "val_score": float(top["mean"]), "seeds": sorted(rows["seed"].astype(int)), "rows": rows,
            "selected_by": f"validation {CLAIM_NAME[task] if task else 'score (mean of the three tasks)'}"}


def _pick(df, task, p, model, need=None):
    """``model`` = ``(stage, name)`` forces a model; else :func:`best_model`."""
    if model is not None:
        stage, name = model
        at = _at_p(select_runs(df, stage, name), p)
        if at is None:
            return None
        p, rows = at
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
    from repro.report.paper import paper_headlines

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
                per.setdefault(g, {}).setdefault(k, []).append(nested_num(accs, str(k)))
        tot = sum(nb.get(g, 0) or 0 for g in by)
        for k in range(1, 6):
            if tot:
                v = sum(nested_num(by[g], str(k)) * (nb.get(g, 0) or 0) for g in by) / tot
            else:
                v = nested_num(f, f"top{k}")
            per.setdefault("all", {}).setdefault(k, []).append(v)
    groups = _class_order([g for g in per if g != "all"]) + ["all"]
    paper = {("top5", "other"): _headline("T2 top-5 accuracy for melanoma"),
             ("top5", "all"): _headline("T2 top-5 accuracy best model"),
             ("top1", "all"): _headline("T2 top-1 accuracy best model")}
    rows = {}
    for g in groups:
        row = {}
        for k in range(1, 6):
            st = mean_std(per.get(g, {}).get(k, []))
            key = f"top{k}"
            row.update({(key, "mean"): st["mean"], (key, "std"): st["std"], (key, "n"): st["n"],
                        (key, "paper"): paper.get((key, g), float("nan"))})
        rows[_class_label(g)] = row
    out = stats_frame(rows, ["T1 class"], [f"top{k}" for k in range(1, 6)])
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
            per.setdefault(g, []).append(nested_num({"v": v}, "v"))
            n_img.setdefault(g, []).append(nested_num(c.get("n_by_group") or {}, g))
        per.setdefault("all", []).append(nested_num(c, "bleu_paper"))
        n_img.setdefault("all", []).append(nested_num(c, "n"))
    paper = {"other": _headline("T3 BLEU melanoma"), "glaucoma": _headline("T3 BLEU glaucoma"),
             "amd": _headline("T3 BLEU AMD"), "dr": _headline("T3 BLEU DR"), "all": _headline("T3 BLEU best model")}
    groups = _class_order([g for g in per if g != "all"]) + ["all"]
    rows = {}
    for g in groups:
        st = mean_std(per.get(g, []))
        ni = mean_std(n_img.get(g, []))
        rows[_class_label(g)] = {("bleu_paper", "mean"): st["mean"], ("bleu_paper", "std"): st["std"],
                                 ("bleu_paper", "n"): st["n"], ("bleu_paper", "paper"): paper.get(g, float("nan")),
                                 ("test images", "mean"): ni["mean"]}
    out = stats_frame(rows, ["T1 class"], ["bleu_paper"])
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
        n = nested_num(ea, "test_samples")
        for k in ERROR_KEYS:
            v = nested_num(ea, k)
            vals[k].append(v)
            rates[k].append(v / n if n and np.isfinite(n) else float("nan"))
    paper_n = _headline(ERROR_KEYS["test_samples"])
    rows = {}
    for k, q in ERROR_KEYS.items():
        pc = _headline(q)
        c, r = mean_std(vals[k]), mean_std(rates[k])
        rows[ERROR_LABELS[k]] = {("count", "mean"): c["mean"], ("count", "std"): c["std"], ("count", "n"): c["n"],
                                 ("count", "paper"): pc, ("rate", "mean"): r["mean"], ("rate", "std"): r["std"],
                                 ("rate", "n"): r["n"], ("rate", "paper"): pc / paper_n if paper_n else float("nan")}
    out = stats_frame(rows, ["outcome"], ["count", "rate"])
    out.attrs["note"] = _describe(best, "a 3-task model with error analysis")
    out.attrs["model"] = best["model"] if best else None
    return out
