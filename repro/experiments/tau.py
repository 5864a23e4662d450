"""Temperatures: the τ study (paper Table 4) and how a stage's per-task τ is chosen — on validation by default (docs/design.md §4)."""

from __future__ import annotations

from typing import Any

from repro.errors import ConfigError, MissingStageError
from repro.experiments.context import Context, train_and_record
from repro.experiments.kd_stage import build_teachers, kd_stage, teacher_greedy_prefix
from repro.experiments.m1 import m1_checkpoint
from repro.io import read_json, write_json
from repro.names import NOTEBOOK_OF, TASKS, TAU_SELECTION_FILE, notebook_path, result_file, subset_code

# per-task temperatures (T1, T2, T3) of the authors' code, by training fraction p
AUTHORS_TAUS = {70: (5, 5, 5), 60: (5, 10, 5), 45: (1, 5, 5), 30: (5, 10, 10), 15: (10, 10, 10)}


def resolve_taus(ctx: Context, taus: Any = "validation", tasks=TASKS) -> dict[str, float]:
    """Per-task τ: ``"validation"`` (best of the τ study on validation, paper Table 5), ``"authors"``
    (the per-p values of the authors' code), a number, or a dict task -> τ."""
    if isinstance(taus, dict):
        return {t: float(taus[t]) for t in tasks}
    if isinstance(taus, (int, float)):
        return {t: float(taus) for t in tasks}
    if taus == "authors":
        return dict(zip(TASKS, map(float, AUTHORS_TAUS[ctx.p])))
    if taus == "validation":
        return temperature_study(ctx)["best"]
    raise ConfigError(f"taus={taus!r}: use 'validation', 'authors', a number or a dict task -> τ")


def tau_source(taus: Any) -> str:
    """How τ was chosen, for the result JSON: ``"validation"``, ``"authors"``, the number, or ``"given"``
    for a dict of per-task values (the values themselves are recorded in the stage's ``taus``)."""
    if isinstance(taus, dict):
        return "given"
    return str(taus)


def temperature_study(ctx: Context, taus=None, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Paper Table 4: for each task t and τ, the single-task teacher M1{t} is distilled into a copy of
    itself on the unlabeled set (an M3 stage, KD only). The best τ per task is chosen on validation.

    The paper picks τ per (task, p). With ``profile.tau_seed = k`` the study runs only for seed k and its
    choice serves every seed of that p (other seeds load it); with ``None`` every seed runs its own.
    ``force`` retrains τ runs whose results exist.
    """
    tau_seed = ctx.profile.tau_seed
    if tau_seed is not None and ctx.seed != tau_seed:
        return _load_study(ctx.for_seed(tau_seed))
    taus = tuple(taus or ctx.profile.taus)
    runs: dict[str, dict] = {}
    best: dict[str, float] = {}
    for task in TASKS:
        code = subset_code((task,))
        teacher = m1_checkpoint(ctx, code)
        ckpt = ctx.checkpoint_path("m1", code)
        idx = ctx.indices(unlabeled=(ctx.profile.unlabeled, ctx.p))
        prefix, tag = teacher_greedy_prefix(ctx, teacher, ckpt, idx) if task == "caption" else (None, "none")
        ts = build_teachers(ctx, {code: (teacher, ckpt)}, idx, prefix, tag)
        scores = {}
        for tau in taus:
            name = f"{code}-tau{tau:g}"
            student = m1_checkpoint(ctx, code)
            stage = kd_stage(ctx, "tau", (task,), ts, {task: float(tau)}, labeled=False)
            res = train_and_record(ctx, "tau", name, student, stage, idx,
                                   params={"task": code, "tau": float(tau), "init": f"m1-{code}"}, progress=progress,
                                   max_epochs=ctx.profile.kd_max_epochs, force=force)
            runs[name] = res
            scores[float(tau)] = res["best_val_score"]
        best[task] = max(scores, key=lambda k: (scores[k], -k))
    write_json(ctx.run_results / TAU_SELECTION_FILE,
               {"best": best, "seed": ctx.seed, "runs": {k: result_file("tau", k) for k in runs}})
    return {"best": best, "runs": runs, "seed": ctx.seed}


def _load_study(ctx: Context) -> dict[str, Any]:
    """The τ study of ``ctx.seed`` from its files (it must have run: notebook 04 for that seed)."""
    sel = ctx.run_results / TAU_SELECTION_FILE
    if not sel.exists():
        raise MissingStageError(
            f"the temperature study of profile={ctx.profile.name} p={ctx.p} seed={ctx.seed} (which serves every "
            f"seed: profile setting tau_seed) is missing ({sel}); "
            f"run {notebook_path(NOTEBOOK_OF['tau'])} with seed={ctx.seed} first")
    summary = read_json(sel)
    runs = {name: read_json(ctx.run_results / fname) for name, fname in summary["runs"].items()}
    return {"best": {t: float(v) for t, v in summary["best"].items()}, "runs": runs, "seed": ctx.seed}
