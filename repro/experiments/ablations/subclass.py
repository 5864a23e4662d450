"""Ablation 3 · subclass distillation (Müller, Kornblith & Hinton 2020) on T1.

* Teacher: M1{T1} whose T1 head has n sub-logits per class (profile ``t1_subclasses = n``; class
  logit = logsumexp of its sub-logits), trained with CE + β·L_aux
  (:func:`repro.distill.losses.subclass_teacher_loss`; L_aux spreads the examples over the subclasses).
* Student (same network, fresh initialisation) distils the teacher's sub-logits on L_p:
  (1 − α) CE + α τ² KL over the n·C sub-classes (:func:`repro.distill.losses.subclass_kd_loss`).
* Comparisons at the same p, budget, α and τ: plain KD of a T1-only student from M1{T1}
  (``subclass-plainkd``), plain KD from the subclass teacher's class logits (``subclass-n<n>-classkd``),
  and M1{T1} itself (the student without KD, and the teacher without subclasses).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from repro.errors import ConfigError
from repro.experiments.ablations.variants import run_supervised, summary, with_profile
from repro.experiments.context import Context, train_and_record
from repro.names import ABLATION_STAGE, SUBCLASS_OUTPUT

SUBCLASS_N = 4          # sub-logits per T1 class (5 classes -> 20 subclasses)
SUBCLASS_BETA = 1.0     # weight β of the auxiliary loss
SUBCLASS_AUX_TAU = 1.0  # its temperature T_aux
SUBCLASS_TAU = 4.0      # distillation temperature τ (every student of this item)
SUBCLASS_ALPHA = 0.5    # distillation weight α (every student of this item)
PLAIN_KD = "subclass-plainkd"   # the student with conventional KD from M1{T1}


def subclass_name(n: int, role: str = "") -> str:
    """``subclass-n4`` (student), ``subclass-n4-teacher``, ``subclass-n4-classkd``."""
    return f"subclass-n{int(n)}" + (f"-{role}" if role else "")


def subclass_names(n: int) -> tuple[str, ...]:
    """Every result name one run with ``n`` sub-logits per class writes (``ablation-<name>.json``)."""
    return subclass_name(n, "teacher"), subclass_name(n), subclass_name(n, "classkd"), PLAIN_KD


@torch.inference_mode()
def sub_logits(model, bank, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Eval-mode sub-logits ``[n_views, len(idx), C·n]`` (float32) of a subclass model for every view of ``bank``."""
    model.eval()
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    views = []
    for vi in range(len(bank.views)):
        chunks = [model(bank.batch(b, torch.full_like(b, vi)), from_trunk=bank.from_trunk)[SUBCLASS_OUTPUT]
                  for b in idx_t.split(batch_size)]
        views.append(torch.cat(chunks).float().cpu())
    return torch.stack(views).numpy()


def teacher_stage(ctx: Context, idx, beta: float, aux_tau: float):
    """The M1 stage of T1 with the subclass loss CE + β·L_aux (class-balanced CE as the profile says)."""
    from repro.distill.losses import subclass_teacher_loss
    from repro.engine.stage import supervised_stage, t1_class_weights

    weights = t1_class_weights(ctx.prepared, idx, ctx.profile.class_balance)
    base = supervised_stage(ctx.prepared, ("coarse",), class_weights=weights)

    def loss(outputs, batch):
        return subclass_teacher_loss(outputs, batch, ("coarse",), beta, aux_tau, class_weights=weights)

    return replace(base, loss=loss, params={**base.params, "beta": float(beta), "aux_tau": float(aux_tau)})


def student_stage(ctx: Context, teachers, tau: float, alpha: float):
    """KD of a subclass student from the teacher's sub-logits on labeled T1 data."""
    from repro.distill.losses import subclass_kd_loss
    from repro.engine.stage import Stage, label_tensors, t1_class_weights, weights_record

    labels = label_tensors(ctx.prepared)["coarse"]
    weights = t1_class_weights(ctx.prepared, teachers.idx, ctx.profile.class_balance)

    def make_batch(idx, view_ids):
        return {"coarse": labels[idx], "teacher": teachers.batch((SUBCLASS_OUTPUT,), idx, view_ids)}

    def loss(outputs, batch):
        return subclass_kd_loss(outputs, batch, batch["teacher"][SUBCLASS_OUTPUT], tau, alpha,
                                reduction=ctx.profile.kd_reduction, class_weights=weights)

    params = {"taus": {"coarse": float(tau)}, "alpha": float(alpha), "kd_reduction": ctx.profile.kd_reduction,
              "class_weights": weights_record(weights), "teachers": {"coarse": teachers.for_task(SUBCLASS_OUTPUT)}}
    return Stage(ABLATION_STAGE, ("coarse",), make_batch, loss, params=params)


def run_subclass(ctx: Context, n: int = SUBCLASS_N, beta: float = SUBCLASS_BETA, aux_tau: float = SUBCLASS_AUX_TAU,
                 tau: float = SUBCLASS_TAU, alpha: float = SUBCLASS_ALPHA, progress: bool = True) -> dict[str, Any]:
    """Subclass teacher, its sub-logit student, and the plain-KD comparisons at ``ctx.p`` (see the module docstring)."""
    from repro.distill.teachers import TeacherSet
    from repro.experiments.kd_stage import build_teachers, kd_stage
    from repro.experiments.m1 import m1_checkpoint, run_m1
    from repro.models.checkpoints import load_checkpoint

    if int(n) < 2:
        raise ConfigError(f"subclass distillation needs n >= 2 sub-logits per T1 class, got n={n!r}")
    idx = ctx.indices("train", p=ctx.p)
    plain = run_m1(ctx, "T1", progress=progress)
    sctx = with_profile(ctx, t1_subclasses=int(n), alpha=float(alpha))
    common = {"item": "subclass", "n": int(n), "beta": float(beta), "aux_tau": float(aux_tau)}
    tname = subclass_name(n, "teacher")
    teacher_res = run_supervised(sctx, tname, ("coarse",), params={**common, "role": "teacher"},
                                 stage=teacher_stage(sctx, idx, beta, aux_tau), progress=progress)
    t_ckpt = sctx.checkpoint_path(ABLATION_STAGE, tname)
    teacher = load_checkpoint(t_ckpt, map_location=ctx.device)[0].to(ctx.device)
    bank = ctx.bank()
    sub = TeacherSet(idx, {tname: {SUBCLASS_OUTPUT: sub_logits(teacher, bank, idx)}}, None, len(ctx.prepared.manifest))
    kd = {"tau": float(tau), "alpha": float(alpha), "init": "scratch"}
    runs = {"teacher": teacher_res}
    runs["student"] = train_and_record(
        sctx, ABLATION_STAGE, subclass_name(n), sctx.new_model(("coarse",)), student_stage(sctx, sub, tau, alpha), idx,
        params={**common, **kd, "role": "student", "teacher": f"{ABLATION_STAGE}-{tname}"}, progress=progress)
    actx = with_profile(ctx, alpha=float(alpha))
    for key, name, members in (
            ("classkd", subclass_name(n, "classkd"), {tname: (teacher, t_ckpt)}),
            ("plainkd", PLAIN_KD, {"T1": (m1_checkpoint(ctx, "T1"), ctx.checkpoint_path("m1", "T1"))})):
        ts = build_teachers(actx, members, idx, None, "none")
        stage = kd_stage(actx, ABLATION_STAGE, ("coarse",), ts, {"coarse": float(tau)}, labeled=True)
        runs[key] = train_and_record(actx, ABLATION_STAGE, name, actx.new_model(("coarse",)), stage, idx,
                                     params={**common, **kd, "role": key, "teacher": next(iter(members))},
                                     progress=progress)
    return {"p": ctx.p, "seed": ctx.seed, "n": int(n), "beta": float(beta), "aux_tau": float(aux_tau),
            "tau": float(tau), "alpha": float(alpha), "no_kd": summary(plain),
            "runs": {k: summary(r) for k, r in runs.items()}}
