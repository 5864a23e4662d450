"""What each choice of the published code does to the result (ablation 8): effects ± 95 % CI and one forest plot.

Each choice of :data:`repro.experiments.ablations.authors.TOGGLES` is compared with this study's default
on M2 and M3 (``ablation-authors-<m>-<toggle>.json`` vs ``ablation-authors-<m>-default_<kind>.json`` when
the runner trained its own default, else ``<m>-<kind>.json``), and the per-image split of ablation 6 on M1
(``ablation-leakage-image.json`` vs ``ablation-leakage-patient.json``). An effect is the mean paired
difference choice − default (same p and seed) on the task's main metric (:data:`repro.names.CLAIM_METRIC`:
T1 balanced accuracy, T2 top-1, T3 ``bleu_paper``) with the 95 % t-interval of
:func:`repro.report.claims.verdict`, pooled over p ∈ :data:`repro.names.P_ENDS` (where the runs are) and seeds.
A toggle run whose recorded params differ from its default's beyond the toggle's own
(:func:`~repro.experiments.ablations.authors.param_changes`) is left out and counted in ``note``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from repro.experiments.ablations.authors import KINDS, MODELS, TOGGLES, authors_name, default_variant, param_changes
from repro.experiments.ablations.leakage import leakage_name
from repro.io import read_json
from repro.names import ABLATION_STAGE, CLAIM_NAME, CODES, P_ENDS, result_file
from repro.report.ablation_tables import AblationView
from repro.report.claims import model_scores, paired_differences, verdict
from repro.report.results import result_row

SPLIT_CHOICE = "per_image_split"
SPLIT_LABEL = "per-image split (vs per-patient; M1, each on its own test set)"
LEAKAGE_FILES = {unit: result_file(ABLATION_STAGE, leakage_name(unit)) for unit in ("image", "patient")}
STAGE = "authors"   # the ``stage`` of the frame's rows (its ``name`` is "<model>-<choice or default>")
CHOICES = tuple(TOGGLES) + (SPLIT_CHOICE,)
LABELS = {**{k: t.label for k, t in TOGGLES.items()}, SPLIT_CHOICE: SPLIT_LABEL}
DIRECTION = {"supported": "raises", "not supported": "lowers", "inconclusive": "no clear effect"}
EFFECT_COLUMNS = ["choice", "label", "model", "task", "metric", "n_pairs", "ps", "effect", "ci_low", "ci_high",
                  "direction", "note"]
FIGURE_TITLE = "What each choice of the published code does to the result"


def _run_dirs(folder: Path, ps: Iterable[int], seeds: Iterable[int] | None) -> list[tuple[int, int, Path]]:
    out = []
    for d in sorted(folder.glob("p*/seed*")):
        try:
            p, seed = int(d.parent.name[1:]), int(d.name[4:])
        except ValueError:
            continue
        if p in set(ps) and (seeds is None or seed in set(seeds)) and d.is_dir():
            out.append((p, seed, d))
    return out


def _read(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.exists() else None


def _row(res: dict, path: Path, name: str, p: int, seed: int, **extra) -> dict:
    r = result_row(res, path, STAGE, name)
    return {"stage": STAGE, "name": name, "p": p, "seed": seed, "T1_bacc": r["T1_bacc"], "T2_top1": r["T2_top1"],
            "T3_bleu": r["T3_bleu"], "file": path.name, "unexpected": "", **extra}


def load_authors_results(results_dir, ps: Iterable[int] = P_ENDS, seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per run the effects need, at ``<results_dir>/p<p>/seed<s>/``: columns ``stage`` (``authors``),
    ``name`` (``m2-kd_mean``, ``m2-default_single``, ``m1-per_image_split``, ``m1-default_patient``), p, seed,
    ``T1_bacc T2_top1 T3_bleu``, ``file`` and ``unexpected`` (params a toggle changed beyond its own)."""
    rows: list[dict] = []
    for p, seed, d in _run_dirs(Path(results_dir), ps, seeds):
        defaults: dict[tuple[str, str], dict] = {}
        for kind in KINDS:
            for m in MODELS:
                own = d / result_file(ABLATION_STAGE, authors_name(m, default_variant(kind)))
                path = own if own.exists() else d / result_file(m, kind)
                res = _read(path)
                if res is not None:
                    defaults[(m, kind)] = res
                    rows.append(_row(res, path, f"{m}-{default_variant(kind)}", p, seed))
        for key, tog in TOGGLES.items():
            for m in MODELS:
                path = d / result_file(ABLATION_STAGE, authors_name(m, key))
                res = _read(path)
                if res is None:
                    continue
                base = defaults.get((m, tog.kind))
                extra = [] if base is None else [c for c in param_changes(base.get("params"), res.get("params"))
                                                 if c not in tog.params]
                rows.append(_row(res, path, f"{m}-{key}", p, seed, unexpected=",".join(extra)))
        image, patient = (_read(d / LEAKAGE_FILES[k]) for k in ("image", "patient"))
        if image is not None and patient is not None:
            rows.append(_row(image, d / LEAKAGE_FILES["image"], f"m1-{SPLIT_CHOICE}", p, seed))
            rows.append(_row(patient, d / LEAKAGE_FILES["patient"], "m1-default_patient", p, seed))
    cols = ["stage", "name", "p", "seed", "T1_bacc", "T2_top1", "T3_bleu", "file", "unexpected"]
    return pd.DataFrame(rows, columns=cols)


def _comparisons() -> list[tuple[str, str, str]]:
    """``(choice, model, default name)`` of every row of the effects table, in display order."""
    out = [(key, m, f"{m}-{default_variant(tog.kind)}") for key, tog in TOGGLES.items() for m in MODELS]
    return out + [(SPLIT_CHOICE, "m1", "m1-default_patient")]


def authors_effects(df: pd.DataFrame, ps: Iterable[int] = P_ENDS) -> pd.DataFrame:
    """Effect choice − default per (choice, model, task), paired by (p, seed), with its 95 % t-interval."""
    ps = tuple(int(p) for p in ps)
    rows = []
    for choice, model, base in _comparisons():
        name = f"{model}-{choice}"
        sel = df[df["name"] == name] if not df.empty else df
        bad = sel[sel["unexpected"] != ""] if not df.empty else sel
        clean = df.drop(bad.index) if not df.empty else df
        for code in CODES:
            diffs = paired_differences(model_scores(clean, STAGE, name, code), model_scores(clean, STAGE, base, code))
            diffs = diffs[diffs.index.get_level_values("p").isin(ps)] if len(diffs) else diffs
            effect, lo, hi, v = verdict(list(diffs.values))
            notes = []
            if not len(diffs):
                notes.append("not run (no ablation-leakage-*.json)" if choice == SPLIT_CHOICE else "not run")
            elif len(diffs) < 2:
                notes.append("one pair: no interval")
            if len(bad):
                notes.append(f"{len(bad)} run(s) left out: default differs in {sorted(set(bad['unexpected']))}")
            used = sorted({int(p) for p in diffs.index.get_level_values("p")}) if len(diffs) else []
            rows.append({"choice": choice, "label": LABELS[choice], "model": model.upper(), "task": code,
                         "metric": CLAIM_NAME[code], "n_pairs": int(len(diffs)), "ps": ", ".join(map(str, used)),
                         "effect": effect, "ci_low": lo, "ci_high": hi,
                         "direction": DIRECTION[v] if len(diffs) >= 2 else "", "note": "; ".join(notes)})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _fmt(effect: float, lo: float, hi: float) -> str:
    if not np.isfinite(effect):
        return "—"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{effect:+.3f}"
    return f"{effect:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def effects_table(effects: pd.DataFrame) -> pd.DataFrame:
    """The display table: one row per (choice, model), one column per task ("effect [95 % CI]"), pairs, notes."""
    rows = []
    for (choice, model), g in effects.groupby(["choice", "model"], sort=False):
        row = {"choice": LABELS[choice], "model": model}
        for _, r in g.iterrows():
            row[f"{r['task']} {r['metric']}"] = _fmt(r["effect"], r["ci_low"], r["ci_high"])
        row["pairs"] = int(g["n_pairs"].max())
        row["note"] = "; ".join(sorted({n for n in g["note"] if n}))
        rows.append(row)
    return pd.DataFrame(rows)


def findings(effects: pd.DataFrame) -> dict[str, str]:
    """One sentence per choice: its effects with CI per model and task, and what is distinguishable from zero."""
    out = {}
    for choice, g in effects.groupby("choice", sort=False):
        if not g["n_pairs"].any():
            out[choice] = f"{LABELS[choice]}: {g['note'].iloc[0]}."
            continue
        parts, clear = [], []
        for model, gm in g.groupby("model", sort=False):
            vals = ", ".join(f"{r['task']} {_fmt(r['effect'], r['ci_low'], r['ci_high'])}" for _, r in gm.iterrows())
            parts.append(f"{model} {vals}")
            clear += [f"{r['direction']} {model} {r['task']} {r['metric']}" for _, r in gm.iterrows()
                      if r["direction"] in ("raises", "lowers")]
        n = int(g["n_pairs"].max())
        ps = g.loc[g["n_pairs"].idxmax(), "ps"]
        verdict_text = "it " + ", ".join(clear) if clear else "no effect is distinguishable from zero"
        pairs = f"{n} pairs over p = {ps} and seeds" if n > 1 else f"one pair (p = {ps}), no interval"
        out[choice] = f"{LABELS[choice]}: {'; '.join(parts)} (choice − default, 95 % CI, {pairs}) — {verdict_text}."
    return out


def forest_plot(effects: pd.DataFrame):
    """One row per choice, one panel per task; ● M2, ■ M3, ◆ M1 (the split): mean effect with its 95 % CI."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CODES), figsize=(12, 0.5 * len(CHOICES) + 1.6), sharey=True)
    style = {"M2": ("o", "tab:blue", 0.15), "M3": ("s", "tab:orange", -0.15), "M1": ("D", "tab:green", 0.0)}
    y = {c: i for i, c in enumerate(reversed(CHOICES))}
    for ax, code in zip(axes, CODES):
        sub = effects[effects["task"] == code]
        for _, r in sub.iterrows():
            marker, colour, dy = style[r["model"]]
            yi = y[r["choice"]] + dy
            if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
                ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=colour, lw=2)
            if np.isfinite(r["effect"]):
                ax.plot(r["effect"], yi, marker, color=colour, ms=6)
            elif r["model"] != "M3":
                ax.text(0, yi, "not run", ha="center", va="center", fontsize=7, color="0.5")
        ax.axvline(0, color="k", lw=0.8)
        ax.set(title=f"{code} {CLAIM_NAME[code]}", xlabel="choice − default")
        ax.set_ylim(-0.6, len(CHOICES) - 0.4)
    axes[0].set_yticks(list(y.values()), [LABELS[c] for c in y], fontsize=8)
    handles = [plt.Line2D([], [], marker=m, color=c, ls="", label=k) for k, (m, c, _) in style.items()]
    fig.legend(handles=handles, loc="lower right", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(FIGURE_TITLE)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def authors_choices_report(results_dir, ps: Iterable[int] = P_ENDS, seeds: Iterable[int] | None = None) -> dict[str, Any]:
    """Everything the report shows for ablation 8: ``effects`` (long frame), ``table``, ``findings``, ``figure``
    (None while no choice has a paired run: an empty forest plot would only say "not run")."""
    df = load_authors_results(results_dir, ps, seeds)
    effects = authors_effects(df, ps)
    return {"results": df, "effects": effects, "table": effects_table(effects), "findings": findings(effects),
            "figure": forest_plot(effects) if np.isfinite(effects["effect"]).any() else None}


def authors_view(results_dir) -> AblationView:
    """The report's view of ablation 8: the pooled effects table, one finding per choice joined, the forest plot."""
    r = authors_choices_report(results_dir)
    return AblationView(r["table"], " ".join(r["findings"].values()), r["figure"], {"findings": r["findings"]})


def run_effects(out: dict[str, Any]) -> pd.DataFrame:
    """The one-run view of :func:`~repro.experiments.ablations.authors.run_authors_choices`'s dict: choice − default
    per model and task at its ``(p, seed)``, the epochs tested and the recorded params each toggle changed."""
    rows = []
    for tog in out.get("toggles", {}).values():
        for m in MODELS:
            r = tog[m]
            rows.append({"choice": tog["label"], "model": m.upper(),
                         **{f"{c} {CLAIM_NAME[c]}": r["effect"].get(c, float("nan")) for c in CODES},
                         "best epoch": r["best_epoch"], "tested epoch": r["tested_epoch"],
                         "changed": ", ".join(r["changed"])})
    return pd.DataFrame(rows)
