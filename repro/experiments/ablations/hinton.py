"""Ablation 2 · the conventional KD sweep (Hinton et al. 2015): α × T on T1.

A T1-only student (fresh initialisation, the profile's neck and head) is distilled on L_p from the
T1 head of the main teacher M1{T1,T2,T3} with the M2 loss of one task,
``(1 − α) CE + α T² KL(softmax(t/T) ‖ softmax(s/T))`` (:func:`repro.distill.losses.m2_loss` through
:func:`repro.experiments.kd_stage.kd_stage`), early-stopped on validation T1 balanced accuracy.
The student without KD is M1{T1} (same network, initialisation and budget).
"""

from __future__ import annotations

from typing import Any

from repro.experiments.ablations.variants import summary, with_profile
from repro.experiments.context import Context, train_and_record
from repro.names import ABLATION_STAGE, MAIN

HINTON_ALPHAS = (0.1, 0.5, 0.9, 0.95)
HINTON_TAUS = (1.0, 4.0, 10.0)


def hinton_name(alpha: float, tau: float) -> str:
    """``hinton-a0.5-T4``."""
    return f"hinton-a{float(alpha):g}-T{float(tau):g}"


def run_hinton(ctx: Context, alphas=HINTON_ALPHAS, taus=HINTON_TAUS, progress: bool = True) -> dict[str, Any]:
    """Every (α, T) student of the grid at ``ctx.p``, plus M1{T1} (no KD); trains the teachers it lacks."""
    from repro.experiments.kd_stage import build_teachers, kd_stage, m1_members, true_caption_prefix
    from repro.experiments.m1 import run_m1

    run_m1(ctx, MAIN, progress=progress)
    plain = run_m1(ctx, "T1", progress=progress)
    idx = ctx.indices("train", p=ctx.p)
    teachers = build_teachers(ctx, m1_members(ctx, (MAIN,)), idx, true_caption_prefix(ctx, idx), "true")
    runs = {}
    for alpha in alphas:
        actx = with_profile(ctx, alpha=float(alpha))
        for tau in taus:
            name = hinton_name(alpha, tau)
            stage = kd_stage(actx, ABLATION_STAGE, ("coarse",), teachers, {"coarse": float(tau)}, labeled=True)
            res = train_and_record(actx, ABLATION_STAGE, name, actx.new_model(("coarse",)), stage, idx,
                                   params={"item": "hinton", "alpha": float(alpha), "tau": float(tau),
                                           "teacher": f"m1-{MAIN}", "init": "scratch"}, progress=progress)
            runs[name] = {**summary(res), "alpha": float(alpha), "tau": float(tau),
                          "val_score": float(res["best_val_score"])}
    return {"p": ctx.p, "seed": ctx.seed, "teacher": f"m1-{MAIN}", "no_kd": summary(plain), "runs": runs}
