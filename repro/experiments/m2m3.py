"""Distillation stages: M2 (labeled, CE + KD), M3 (unlabeled, KD only), the teacher ensemble,
and the temperature study (paper §3.3, Tables 4–5; docs/design.md §4).

Teacher outputs come from :mod:`repro.distill.teacher_outputs`: computed once per
(teacher, image, view) before the student trains, never inside its loop.
"""

from __future__ import annotations

from typing import Any

from repro.experiments.context import Context, require_checkpoint, train_and_record
from repro.experiments.kd_stage import _greedy_prefix, _true_prefix, build_teachers, kd_stage, m1_members
from repro.experiments.m1 import m1_checkpoint
from repro.experiments.tau import resolve_taus, tau_source
from repro.names import MAIN, SUBSETS, subset_tasks


def run_m2(ctx: Context, ensemble: bool = False, taus: Any = "validation", progress: bool = True) -> dict[str, Any]:
    """M2: start from the best M1{T1,T2,T3}; on L_p minimise Σ_t[(1−α)CE_t + α τ_t² KL] (Eq. 2)."""
    tasks = subset_tasks(MAIN)
    tau = resolve_taus(ctx, taus)
    idx = ctx.indices("train", p=ctx.p)
    members = m1_members(ctx) if ensemble else m1_members(ctx, (MAIN,))
    ts = build_teachers(ctx, members, idx, _true_prefix(ctx, idx), "true")
    stage = kd_stage(ctx, "m2", tasks, ts, tau, labeled=True)
    name = "ensemble" if ensemble else "single"
    return train_and_record(ctx, "m2", name, m1_checkpoint(ctx, MAIN), stage, idx,
                            params={"ensemble": ensemble, "init": f"m1-{MAIN}", "tau_source": tau_source(taus)}, progress=progress,
                            max_epochs=ctx.profile.kd_max_epochs)


def run_m3(ctx: Context, ensemble: bool = False, taus: Any = "validation", progress: bool = True) -> dict[str, Any]:
    """M3: start from the best M2; on the unlabeled set minimise Σ_t τ_t² KL (Eq. 3).
    The teacher is that M2 alone, or the ensemble with M2 in place of M1{T1,T2,T3}."""
    tasks = subset_tasks(MAIN)
    tau = resolve_taus(ctx, taus)
    name = "ensemble" if ensemble else "single"
    how = "notebooks/02_m2_distill.ipynb"
    m2 = require_checkpoint(ctx, "m2", name, how)
    m2_ckpt = ctx.checkpoint_path("m2", name)
    idx = ctx.indices(unlabeled=(ctx.profile.unlabeled, ctx.p))
    prefix, tag = _greedy_prefix(ctx, m2, m2_ckpt, idx)
    members = {f"m2-{name}": (m2, m2_ckpt)}
    if ensemble:
        members.update(m1_members(ctx, tuple(s for s in SUBSETS if s != MAIN)))
    ts = build_teachers(ctx, members, idx, prefix, tag)
    stage = kd_stage(ctx, "m3", tasks, ts, tau, labeled=False)
    return train_and_record(ctx, "m3", name, require_checkpoint(ctx, "m2", name, how), stage, idx,
                            params={"ensemble": ensemble, "init": f"m2-{name}", "tau_source": tau_source(taus),
                                    "unlabeled": ctx.profile.unlabeled}, progress=progress,
                            max_epochs=ctx.profile.kd_max_epochs)
