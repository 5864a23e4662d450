"""The knowledge-distillation stage: teachers' cached outputs on the student's images, the caption prefix, and the M2/M3 loss (paper Eqs. 2–3; docs/design.md §4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from repro.distill.losses import AGGREGATIONS, REDUCTIONS, caption_mask, m2_loss, m3_loss
from repro.distill.teacher_outputs import cached_greedy_prefix, cached_outputs
from repro.distill.teachers import TeacherSet
from repro.engine.stage import Stage, label_tensors, t1_class_weights, weights_record
from repro.errors import ConfigError
from repro.experiments.context import Context
from repro.experiments.m1 import m1_checkpoint
from repro.names import SUBSETS


def build_teachers(ctx: Context, members: dict[str, Any], idx: np.ndarray, prefix: np.ndarray | None,
                   prefix_tag: str) -> TeacherSet:
    """``members``: name -> (model, checkpoint path). Outputs are loaded from / written to the cache."""
    bank = ctx.bank()
    cache = ctx.run_artifacts / "teacher_cache"
    outs = {name: cached_outputs(cache, ckpt, model, bank, idx, prefix, prefix_tag) for name, (model, ckpt) in members.items()}
    return TeacherSet(np.asarray(idx), outs, prefix, len(ctx.prepared.manifest))


def kd_stage(ctx: Context, name: str, tasks, teachers: TeacherSet, taus: dict[str, float], labeled: bool,
             kd_reduction: str | None = None, aggregation: str | None = None) -> Stage:
    """M2 (``labeled``: Eq. 2 with α) or M3 (Eq. 3, KD only: never reads a label).

    ``kd_reduction`` / ``aggregation`` (None: the profile's ``kd_reduction`` / ``ensemble``) select the KL
    reduction (:data:`REDUCTIONS`) and how several teachers of a task combine (:data:`AGGREGATIONS`)."""
    prof = ctx.profile
    reduction = prof.kd_reduction if kd_reduction is None else kd_reduction
    aggregation = prof.ensemble if aggregation is None else aggregation
    for value, allowed, what in ((reduction, REDUCTIONS, "kd_reduction"), (aggregation, AGGREGATIONS, "ensemble aggregation")):
        if value not in allowed:
            raise ConfigError(f"{what}={value!r}: use one of {list(allowed)}")
    labels = label_tensors(ctx.prepared) if labeled else None
    weights = t1_class_weights(ctx.prepared, teachers.idx, prof.class_balance) if labeled else {}

    def make_batch(idx, view_ids):
        b: dict[str, Any] = {"teacher": teachers.batch(tasks, idx, view_ids)}
        if labeled:
            b.update({t: labels[t][idx] for t in tasks})
        if "caption" in tasks:
            prefix = torch.from_numpy(teachers.prefix[view_ids.numpy(), teachers.rows(idx)])
            b["prefix"], b["mask"] = prefix, caption_mask(prefix)
        return b

    def loss(outputs, batch):
        if labeled:
            return m2_loss(outputs, batch, batch["teacher"], tasks, taus, alpha=prof.alpha,
                           reduction=reduction, aggregation=aggregation, caption_mask=batch.get("mask"),
                           class_weights=weights)
        return m3_loss(outputs, batch["teacher"], tasks, taus, reduction=reduction,
                       aggregation=aggregation, caption_mask=batch.get("mask"))

    params = {"taus": dict(taus), "alpha": prof.alpha if labeled else None, "kd_reduction": reduction,
              "aggregation": aggregation,
              "class_weights": weights_record(weights), "teachers": {t: teachers.for_task(t) for t in tasks}}
    # KD per decoding step needs the student forced with the same prefix as the teacher
    return Stage(name, tuple(tasks), make_batch, loss, teacher_forcing=1.0, params=params)


def true_caption_prefix(ctx: Context, idx: np.ndarray) -> np.ndarray:
    caps = np.asarray(ctx.prepared.captions)[idx]
    return np.broadcast_to(caps, (len(ctx.profile.views),) + caps.shape).copy()


def teacher_greedy_prefix(ctx: Context, model, ckpt, idx: np.ndarray) -> tuple[np.ndarray, str]:
    """The main teacher's greedy captions of ``idx`` (cached beside the teacher outputs)."""
    return cached_greedy_prefix(ctx.run_artifacts / "teacher_cache", ckpt, model, ctx.bank(), idx,
                                max_len=ctx.profile.max_caption_len + 1)


def m1_members(ctx: Context, subsets=SUBSETS) -> dict[str, tuple]:
    return {s: (m1_checkpoint(ctx, s), ctx.checkpoint_path("m1", s)) for s in subsets}
