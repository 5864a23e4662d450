"""Ablation 8 · the authors' code choices, each toggled alone against this study's default on M2 and M3.

The choices (``../shared/seeds/README.md``; docs/decisions.md), as options of
:func:`repro.experiments.m2m3.run_m2` / :func:`~repro.experiments.m2m3.run_m3`:

* ``kd_mean``: ``kd_reduction="mean"``, the authors' ``KLDivLoss(reduction='mean')`` (KD weight ÷ class count);
* ``sum_kl``: the teacher ensemble as a sum of one KL per teacher (``aggregation="sum_kl"``) instead of the
  KL to the mean probability — on M2+ensemble / M3+ensemble;
* ``tau_authors``: the authors' per-p temperature table (``taus="authors"``) instead of τ chosen on validation;
* ``last_epoch``: every epoch trained and the last epoch's weights tested (``restore_best=False``).

A toggle applies to the whole M2 → M3 chain, as in the published code: its M3 starts from, and learns
from, its own M2. The default runs are notebook 02/03's ``m2-single``, ``m3-single``, ``m2-ensemble``,
``m3-ensemble`` when their result JSON fits this run (same split, profile settings and options, newer
than the model it started from); otherwise they are trained here as ``ablation-authors-<m>-default_<kind>``.
Results: ``ablation-authors-<m>-<toggle>.json`` (:data:`repro.names.ABLATION_STAGE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ConfigError, MissingStageError
from repro.experiments.ablations.variants import summary
from repro.experiments.context import Context, load_result, settings_changed
from repro.experiments.tau import resolve_taus, tau_source
from repro.names import (ABLATION_STAGE, CLAIM_METRIC, MAIN, NOTEBOOK_OF, SUBSETS, TAU_SELECTION_FILE, notebook_path,
                         result_file)

ITEM = "authors"
MODELS = ("m2", "m3")
KINDS = ("single", "ensemble")
#: recorded params that follow from the M2 a run starts from, not from its own options
LINEAGE_PARAMS = ("init", "teachers")


@dataclass(frozen=True)
class Toggle:
    """One choice of the published code: the run options that make it and the recorded params it changes."""

    key: str
    label: str
    kind: str                           # the default it is compared with: "single" or "ensemble"
    options: dict[str, Any] = field(default_factory=dict)
    params: tuple[str, ...] = ()        # recorded params it may change; the first is its own


TOGGLES: dict[str, Toggle] = {t.key: t for t in (
    Toggle("kd_mean", "KL reduction 'mean' (KD weight ÷ class count)", "single",
           {"kd_reduction": "mean"}, ("kd_reduction",)),
    Toggle("sum_kl", "ensemble as a sum of KLs (vs KL to the mean probability)", "ensemble",
           {"aggregation": "sum_kl"}, ("aggregation",)),
    Toggle("tau_authors", "the authors' per-p τ table (vs τ chosen on validation)", "single",
           {"taus": "authors"}, ("tau_source", "taus")),
    Toggle("last_epoch", "last-epoch weights (vs the best validation epoch)", "single",
           {"restore_best": False}, ("restore_best",)),
)}


def authors_name(model: str, variant: str) -> str:
    """``authors-m2-kd_mean``, ``authors-m3-default_ensemble``: the result is ``ablation-<this>.json``."""
    return f"{ITEM}-{model}-{variant}"


def default_variant(kind: str) -> str:
    return f"default_{kind}"


def normalised_params(params: dict[str, Any]) -> dict[str, Any]:
    """Recorded params with ``restore_best`` made explicit (results older than the option always restored)."""
    return {"restore_best": True, **(params or {})}


def param_changes(default: dict[str, Any], toggled: dict[str, Any]) -> list[str]:
    """The recorded params whose values differ between two runs, lineage (:data:`LINEAGE_PARAMS`) aside."""
    a, b = normalised_params(default), normalised_params(toggled)
    return sorted(k for k in set(a) | set(b) if k not in LINEAGE_PARAMS and a.get(k) != b.get(k))


def effect(toggled: dict[str, Any], default: dict[str, Any]) -> dict[str, float]:
    """Toggle − default on each task's main metric (T1 balanced accuracy, T2 top-1, T3 ``bleu_paper``)."""
    out = {}
    for code, (task, key) in CLAIM_METRIC.items():
        a, b = toggled["metrics"]["test"].get(task, {}), default["metrics"]["test"].get(task, {})
        if key in a and key in b:
            out[code] = float(a[key]) - float(b[key])
    return out


def _expected(ctx: Context, model: str, kind: str, taus: Any, tau_values: dict[str, float],
              init: tuple[str, str] | None = None, kd_reduction: str | None = None, aggregation: str | None = None,
              restore_best: bool = True) -> dict[str, Any]:
    """The recorded params a run with these options has (M3: ``init`` is the ``(stage, name)`` of its M2)."""
    exp = {"ensemble": kind == "ensemble", "tau_source": tau_source(taus), "taus": dict(tau_values),
           "kd_reduction": kd_reduction or ctx.profile.kd_reduction, "aggregation": aggregation or ctx.profile.ensemble,
           "restore_best": bool(restore_best)}
    if model == "m3":
        exp["init"] = "-".join(init or ("m2", kind))
    return exp


def _fits(ctx: Context, res: dict[str, Any] | None, expected: dict[str, Any], inputs: list[Path]) -> str:
    """Why a stored run cannot stand in for the one wanted ('' when it can); ``inputs`` are the files it was
    made from (a run written before one of them was remade is stale)."""
    if res is None:
        return "missing"
    if res.get("split_hash") != ctx.prepared.split_hash or res.get("profile") != ctx.profile.name:
        return "another split or profile"
    if settings_changed(ctx.profile, res):
        return "other profile settings"
    params = normalised_params(res.get("params"))
    diff = sorted(k for k, v in expected.items() if params.get(k) != v)
    if diff:
        return f"other {', '.join(diff)}"
    path = ctx.result_path(res["stage"], res["name"])
    newer = [f.name for f in inputs if f.exists() and path.stat().st_mtime < f.stat().st_mtime]
    return f"older than {newer[0]}" if newer else ""


_HOW = f"run_authors_choices ({notebook_path(NOTEBOOK_OF[ABLATION_STAGE])}, section 8)"


def _inputs(ctx: Context, model: str, kind: str, init: tuple[str, str] | None) -> list[Path]:
    """The files a run is made from: its M1 teachers, and for M3 the M2 it starts from."""
    teachers = [ctx.checkpoint_path("m1", s) for s in (SUBSETS if kind == "ensemble" else (MAIN,))]
    return teachers if model == "m2" else [ctx.result_path(*(init or ("m2", kind)))] + teachers


def _own_run(ctx: Context, model: str, kind: str, name: str, taus: Any, tau_values: dict[str, float],
             options: dict[str, Any], init: tuple[str, str] | None, progress: bool) -> dict[str, Any]:
    """``ablation-<name>`` with ``options``: loaded when the stored one fits, else (re)trained."""
    from repro.experiments.m2m3 import run_m2, run_m3

    opts = {k: v for k, v in options.items() if k != "taus"}
    expected = _expected(ctx, model, kind, options.get("taus", taus), tau_values, init, **opts)
    why = _fits(ctx, load_result(ctx, ABLATION_STAGE, name), expected, _inputs(ctx, model, kind, init))
    kw = dict(ensemble=kind == "ensemble", taus=options.get("taus", taus), progress=progress,
              stage_name=ABLATION_STAGE, name=name, force=why not in ("", "missing"), **opts)
    if model == "m2":
        return run_m2(ctx, **kw)
    return run_m3(ctx, init=init, how=_HOW, **kw)


def _defaults(ctx: Context, kind: str, taus: Any, tau_values: dict[str, float], progress: bool) -> dict[str, dict]:
    """The default M2 and M3 of ``kind``: notebook 02/03's when they fit this run, else trained here."""
    own = {m: authors_name(m, default_variant(kind)) for m in MODELS}
    std = {m: load_result(ctx, m, kind) for m in MODELS}
    why = {m: "a default of its own exists" if ctx.result_path(ABLATION_STAGE, own[m]).exists() else
           _fits(ctx, std[m], _expected(ctx, m, kind, taus, tau_values), _inputs(ctx, m, kind, None))
           for m in MODELS}
    if not why["m2"] and why["m3"] and not ctx.checkpoint_path("m2", kind).exists():
        why["m2"] = "its checkpoint is missing and the default M3 must start from it"
    runs: dict[str, dict[str, Any]] = {}
    if why["m2"]:
        res = _own_run(ctx, "m2", kind, own["m2"], taus, tau_values, {}, None, progress)
        runs["m2"] = {"result": res, "reused": False, "why_trained": why["m2"]}
        why["m3"] = why["m3"] or "its M2 was trained here"
    else:
        runs["m2"] = {"result": std["m2"], "reused": True, "why_trained": ""}
    if why["m3"]:
        m2 = runs["m2"]["result"]
        res = _own_run(ctx, "m3", kind, own["m3"], taus, tau_values, {}, (m2["stage"], m2["name"]), progress)
        runs["m3"] = {"result": res, "reused": False, "why_trained": why["m3"]}
    else:
        runs["m3"] = {"result": std["m3"], "reused": True, "why_trained": ""}
    return runs


def _check_tau_study(ctx: Context, taus: Any) -> None:
    """τ chosen on validation needs notebook 04's selection for the seed that serves this one."""
    if taus != "validation":
        return
    seed = ctx.seed if ctx.profile.tau_seed is None else ctx.profile.tau_seed
    sel = ctx.for_seed(seed).run_results / TAU_SELECTION_FILE
    if not sel.exists():
        raise MissingStageError(
            f"the temperature study of profile={ctx.profile.name} p={ctx.p} seed={seed} is missing ({sel}); "
            f"run {notebook_path(NOTEBOOK_OF['tau'])} with seed={seed} first (or pass taus= a number)")


def _row(res: dict[str, Any], file: str, **extra: Any) -> dict[str, Any]:
    return {**summary(res), "file": file, "best_epoch": int(res["best_epoch"]),
            "tested_epoch": int(res.get("tested_epoch", res["best_epoch"])), "wall_s": float(res.get("wall_s", 0.0)),
            **extra}


def run_authors_choices(ctx: Context, toggles=tuple(TOGGLES), taus: Any = "validation",
                        progress: bool = True) -> dict[str, Any]:
    """For ``ctx``'s ``(profile, p, seed)``: M2 and M3 once per toggle (:data:`TOGGLES`), each alone against
    the default (``taus`` is the default's τ), as a plain dict for the notebook's JSON.

    Needs the M1 teachers (notebook 01) and, for ``taus="validation"``, the τ study (notebook 04).
    """
    from repro.experiments.m1 import m1_checkpoint

    unknown = [t for t in toggles if t not in TOGGLES]
    if unknown:
        raise ConfigError(f"unknown authors' choice(s) {unknown}; use some of {list(TOGGLES)}")
    _check_tau_study(ctx, taus)
    m1_checkpoint(ctx, MAIN)   # a missing teacher names notebook 01 before anything trains
    wanted = [TOGGLES[t] for t in toggles]
    sources = [taus] + [t.options["taus"] for t in wanted if "taus" in t.options]
    values = {tau_source(src): resolve_taus(ctx, src) for src in sources}   # per τ source, once
    defaults = {kind: _defaults(ctx, kind, taus, values[tau_source(taus)], progress)
                for kind in KINDS if any(t.kind == kind for t in wanted)}
    out_defaults = {kind: {m: _row(d["result"], result_file(d["result"]["stage"], d["result"]["name"]),
                                   reused=d["reused"], why_trained=d["why_trained"]) for m, d in runs.items()}
                    for kind, runs in defaults.items()}
    out_toggles: dict[str, Any] = {}
    for tog in wanted:
        tv = values[tau_source(tog.options.get("taus", taus))]
        m2 = _own_run(ctx, "m2", tog.kind, authors_name("m2", tog.key), taus, tv, tog.options, None, progress)
        m3 = _own_run(ctx, "m3", tog.kind, authors_name("m3", tog.key), taus, tv, tog.options,
                      (ABLATION_STAGE, m2["name"]), progress)
        rows = {}
        for model, res in (("m2", m2), ("m3", m3)):
            base = defaults[tog.kind][model]["result"]
            rows[model] = _row(res, result_file(ABLATION_STAGE, res["name"]), effect=effect(res, base),
                               changed=param_changes(base["params"], res["params"]))
        out_toggles[tog.key] = {"label": tog.label, "compared_with": tog.kind, "options": dict(tog.options), **rows}
    return {"item": ITEM, "profile": ctx.profile.name, "p": ctx.p, "seed": ctx.seed, "taus": tau_source(taus),
            "defaults": out_defaults, "toggles": out_toggles}
