"""Helpers shared by the ablations: a context with profile overrides, M1-style runs under the ablation stage."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from repro.experiments.context import Context, train_and_record
from repro.names import ABLATION_STAGE


def with_profile(ctx: Context, **overrides: Any) -> Context:
    """The same experiment with profile overrides (model sizes, α, class balance, …), sharing the model inputs."""
    ctx.bank()
    return replace(ctx, profile=ctx.profile.with_overrides(**overrides))


def run_supervised(ctx: Context, name: str, tasks, params: dict, stage=None, progress: bool = True) -> dict[str, Any]:
    """An M1 run (paper Eq. 1, or ``stage``) of ``ctx.new_model(tasks)`` on L_p, recorded as ``ablation-<name>``."""
    from repro.engine.stage import supervised_stage, t1_class_weights

    idx = ctx.indices("train", p=ctx.p)
    if stage is None:
        stage = supervised_stage(ctx.prepared, tuple(tasks),
                                 class_weights=t1_class_weights(ctx.prepared, idx, ctx.profile.class_balance))
    return train_and_record(ctx, ABLATION_STAGE, name, ctx.new_model(tasks), stage, idx, params=params,
                            progress=progress)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The plain-dict view of one result for a notebook's JSON: name, test metrics (numbers only), best epoch."""
    test = result["metrics"]["test"]
    keep = {"coarse": ("accuracy", "balanced_accuracy", "macro_f1"), "fine": ("top1",), "caption": ("bleu_paper",)}
    return {"name": result["name"], "stage": result["stage"], "best_epoch": result["best_epoch"],
            "test": {t: {k: float(test[t][k]) for k in ks if k in test[t]} for t, ks in keep.items() if t in test}}
