"""Distillation stages: M2 (labeled, CE + KD), M3 (unlabeled, KD only), the teacher ensemble,
and the temperature study (paper §3.3, Tables 4–5; docs/design.md §4).

Teacher outputs come from :mod:`repro.distill.teacher_outputs`: computed once per
(teacher, image, view) before the student trains, never inside its loop.
"""

from __future__ import annotations

from typing import Any

from repro.experiments.context import Context, require_checkpoint, train_and_record
from repro.experiments.kd_stage import build_teachers, kd_stage, m1_members, teacher_greedy_prefix, true_caption_prefix
from repro.experiments.m1 import m1_checkpoint
from repro.experiments.tau import resolve_taus, tau_source
from repro.names import MAIN, NOTEBOOK_OF, SUBSETS, notebook_path, subset_tasks


def run_m2(ctx: Context, ensemble: bool = False, taus: Any = "validation", progress: bool = True, *,
           kd_reduction: str | None = None, aggregation: str | None = None, restore_best: bool = True,
           stage_name: str = "m2", name: str | None = None, force: bool = False) -> dict[str, Any]:
    """M2: start from the best M1{T1,T2,T3}; on L_p minimise Σ_t[(1−α)CE_t + α τ_t² KL] (Eq. 2).

    ``kd_reduction``, ``aggregation`` (:func:`kd_stage`) and ``restore_best`` (:func:`train_and_record`)
    are the authors'-code options; ``stage_name``/``name`` (default ``m2``/``single|ensemble``) name the result;
    ``force`` retrains a stored one."""
    tasks = subset_tasks(MAIN)
    tau = resolve_taus(ctx, taus)
    idx = ctx.indices("train", p=ctx.p)
    members = m1_members(ctx) if ensemble else m1_members(ctx, (MAIN,))
    ts = build_teachers(ctx, members, idx, true_caption_prefix(ctx, idx), "true")
    stage = kd_stage(ctx, "m2", tasks, ts, tau, labeled=True, kd_reduction=kd_reduction, aggregation=aggregation)
    name = name or ("ensemble" if ensemble else "single")
    return train_and_record(ctx, stage_name, name, m1_checkpoint(ctx, MAIN), stage, idx,
                            params={"ensemble": ensemble, "init": f"m1-{MAIN}", "tau_source": tau_source(taus)}, progress=progress,
                            max_epochs=ctx.profile.kd_max_epochs, restore_best=restore_best, force=force)


def run_m3(ctx: Context, ensemble: bool = False, taus: Any = "validation", progress: bool = True, *,
           kd_reduction: str | None = None, aggregation: str | None = None, restore_best: bool = True,
           stage_name: str = "m3", name: str | None = None, init: tuple[str, str] | None = None,
           how: str = notebook_path(NOTEBOOK_OF["m2"]), force: bool = False) -> dict[str, Any]:
    """M3: start from the best M2; on the unlabeled set minimise Σ_t τ_t² KL (Eq. 3).
    The teacher is that M2 alone, or the ensemble with M2 in place of M1{T1,T2,T3}.

    Options as :func:`run_m2`; ``init`` is the ``(stage, name)`` of the M2 it starts from and learns from
    (default ``("m2", "single"|"ensemble")``), ``how`` what produces that M2 when it is missing."""
    tasks = subset_tasks(MAIN)
    tau = resolve_taus(ctx, taus)
    kind = "ensemble" if ensemble else "single"
    m2_stage, m2_name = init or ("m2", kind)
    m2 = require_checkpoint(ctx, m2_stage, m2_name, how)
    m2_ckpt = ctx.checkpoint_path(m2_stage, m2_name)
    idx = ctx.indices(unlabeled=(ctx.profile.unlabeled, ctx.p))
    prefix, tag = teacher_greedy_prefix(ctx, m2, m2_ckpt, idx)
    members = {f"{m2_stage}-{m2_name}": (m2, m2_ckpt)}
    if ensemble:
        members.update(m1_members(ctx, tuple(s for s in SUBSETS if s != MAIN)))
    ts = build_teachers(ctx, members, idx, prefix, tag)
    stage = kd_stage(ctx, "m3", tasks, ts, tau, labeled=False, kd_reduction=kd_reduction, aggregation=aggregation)
    return train_and_record(ctx, stage_name, name or kind, require_checkpoint(ctx, m2_stage, m2_name, how), stage, idx,
                            params={"ensemble": ensemble, "init": f"{m2_stage}-{m2_name}", "tau_source": tau_source(taus),
                                    "unlabeled": ctx.profile.unlabeled}, progress=progress,
                            max_epochs=ctx.profile.kd_max_epochs, restore_best=restore_best, force=force)
