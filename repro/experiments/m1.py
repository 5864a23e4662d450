"""M1: the seven task-subset teachers, each trained with cross-entropy on L_p (paper §3.2, Table 3; docs/design.md §4)."""

from __future__ import annotations

from typing import Any

from repro.experiments.context import Context, require_checkpoint, train_and_record
from repro.names import NOTEBOOK_OF, SUBSETS, notebook_path, subset_tasks


def run_m1(ctx: Context, subset: str, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """One M1 teacher (paper Eq. 1) on the labeled set L_p for a task subset such as ``"T1+T3"``."""
    from repro.engine.stage import supervised_stage, t1_class_weights

    tasks = subset_tasks(subset)
    model = ctx.new_model(tasks)
    idx = ctx.indices("train", p=ctx.p)
    weights = t1_class_weights(ctx.prepared, idx, ctx.profile.class_balance)
    stage = supervised_stage(ctx.prepared, tasks, class_weights=weights)
    return train_and_record(ctx, "m1", subset, model, stage, idx,
                            params={"subset": subset}, force=force, progress=progress)


def run_m1_all(ctx: Context, subsets=SUBSETS, force: bool = False, progress: bool = True) -> dict[str, dict]:
    """All seven task-subset teachers, keyed by subset code."""
    return {s: run_m1(ctx, s, force=force, progress=progress) for s in subsets}


def m1_checkpoint(ctx: Context, subset: str):
    return require_checkpoint(ctx, "m1", subset, f"{notebook_path(NOTEBOOK_OF['m1'])} (or `python -m repro train --stage m1`)")
