"""Ablation 4 · transfer learning: an ImageNet-initialised vs a randomly initialised encoder, for M1 and M3.

A random trunk cannot stay frozen (its features would be noise), so for both inits the whole encoder
(every stage, ``trainable="all"``, no taps or neck) is trained from the images, with the same heads,
optimiser, epochs and seed — only the encoder's initial weights differ. To fit a CPU budget the images
are small and the epochs few (:data:`TRANSFER_SETTINGS`). Per init:

* ``transfer-<init>-m1``: M1 (paper Eq. 1) on L_p for the tasks :data:`TRANSFER_SUBSET`;
* ``transfer-<init>-m3``: that M1 distilled into a copy of itself on the unlabeled set, KD only (the
  existing M3 stage and loss, Eq. 3; τ = the profile's ``default_tau`` for every task).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from repro.errors import ConfigError
from repro.experiments.ablations.variants import summary
from repro.experiments.context import Context, make_context, require_checkpoint, train_and_record
from repro.names import ABLATION_STAGE, subset_tasks

INITS = ("imagenet", "random")
MODELS = ("m1", "m3")       # per init: M1 on L_p, then that M1 distilled on the unlabeled set
TRANSFER_SUBSET = "T1+T2"   # no caption head: it would add the LSTM decoder and greedy decoding per validation

# per profile: image size, batch and epochs of the image-trained encoder (other profiles: their own settings);
# small batches give the few epochs enough optimiser steps (quick, p = 15: ~65 M1 steps, ~120 M3 steps)
TRANSFER_SETTINGS: dict[str, dict[str, int]] = {
    "smoke": {"image_size": 32, "batch_size": 16, "max_epochs": 1, "kd_max_epochs": 1},
    "quick": {"image_size": 32, "batch_size": 32, "max_epochs": 2, "kd_max_epochs": 1},
}


def transfer_name(init: str, model: str) -> str:
    """``transfer-imagenet-m1``, ``transfer-random-m3``, …"""
    return f"transfer-{init}-{model}"


def transfer_settings(profile) -> dict[str, int]:
    """Image size, batch and epochs of the transfer runs of ``profile`` (its own where the table has none)."""
    own = {"image_size": profile.image_size, "batch_size": profile.batch_size, "max_epochs": profile.max_epochs,
           "kd_max_epochs": profile.kd_max_epochs or profile.max_epochs}
    return {**own, **TRANSFER_SETTINGS.get(profile.name, {})}


def transfer_context(ctx: Context, init: str, bank_from: Context | None = None) -> Context:
    """``ctx`` with images at the transfer size and an encoder of init ``init`` trained whole.

    ``bank_from``: a transfer context of the other init whose model inputs (the same images) are shared.
    """
    if init not in INITS:
        raise ConfigError(f"transfer init {init!r} is not one of {list(INITS)}")
    s = transfer_settings(ctx.profile)
    if bank_from is not None:
        base = bank_from
    else:
        base = make_context(ctx.profile, p=ctx.p, seed=ctx.seed, data_root=ctx.prepared.data_root,
                            results_dir=ctx.results_dir, runs_dir=ctx.runs_dir,
                            skip_bad_images=len(ctx.prepared.bad_images) > 0, image_size=s["image_size"])
    prof = ctx.profile.with_overrides(image_size=s["image_size"], pretrained=init == "imagenet", trainable="all",
                                      taps=None, neck_hidden=None, batch_size=s["batch_size"], max_epochs=s["max_epochs"],
                                      kd_max_epochs=s["kd_max_epochs"])
    return replace(base, profile=prof, _bank=base._bank if bank_from is not None else None)


def trained_part(model) -> dict[str, Any]:
    """What a transfer run trains: encoder stages, parameter counts, the encoder's initial weights."""
    enc = sum(p.numel() for p in model.top.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trained_stages": list(model.top.stages.keys()), "frozen_stages": list(model.trunk.stages.keys()),
            "encoder_params_trained": int(enc), "params_trained": int(total),
            "encoder_weights": model.config.get("encoder_weights")}


def _params(tctx: Context, init: str, model_kind: str, model) -> dict[str, Any]:
    prof = tctx.profile
    return {"item": "transfer", "init": init, "model": model_kind, "subset": TRANSFER_SUBSET,
            "encoder": prof.encoder, "trainable": prof.trainable, "image_size": prof.image_size,
            "batch_size": prof.batch_size, "epochs": prof.max_epochs if model_kind == "m1" else prof.kd_max_epochs,
            **trained_part(model)}


def run_transfer_init(tctx: Context, init: str, progress: bool = True) -> dict[str, dict]:
    """M1 and M3 of one init in a transfer context (:func:`transfer_context`); their result JSON."""
    from repro.engine.stage import supervised_stage, t1_class_weights
    from repro.experiments.kd_stage import build_teachers, kd_stage

    tasks = subset_tasks(TRANSFER_SUBSET)
    prof = tctx.profile
    m1_name, m3_name = transfer_name(init, "m1"), transfer_name(init, "m3")
    idx = tctx.indices("train", p=tctx.p)
    model = tctx.new_model(tasks)
    stage = supervised_stage(tctx.prepared, tasks, class_weights=t1_class_weights(tctx.prepared, idx, prof.class_balance))
    m1 = train_and_record(tctx, ABLATION_STAGE, m1_name, model, stage, idx,
                          params=_params(tctx, init, "m1", model), progress=progress)

    how = "repro.experiments.ablations.transfer.run_transfer (notebook 07, section 4)"
    teacher = require_checkpoint(tctx, ABLATION_STAGE, m1_name, how)
    unl = tctx.indices(unlabeled=(prof.unlabeled, tctx.p))
    ts = build_teachers(tctx, {m1_name: (teacher, tctx.checkpoint_path(ABLATION_STAGE, m1_name))}, unl, None, "none")
    taus = {t: float(prof.default_tau) for t in tasks}
    student = require_checkpoint(tctx, ABLATION_STAGE, m1_name, how)
    m3 = train_and_record(tctx, ABLATION_STAGE, m3_name, student, kd_stage(tctx, "m3", tasks, ts, taus, labeled=False),
                          unl, params={**_params(tctx, init, "m3", student), "init_from": f"{ABLATION_STAGE}-{m1_name}",
                                       "unlabeled": prof.unlabeled},
                          progress=progress, max_epochs=prof.kd_max_epochs)
    return {"m1": m1, "m3": m3}


def run_transfer(ctx: Context, inits=INITS, progress: bool = True) -> dict[str, Any]:
    """Both inits' M1 and M3 at ``ctx``'s p and seed; a plain dict of what was trained and the test metrics."""
    runs: dict[str, Any] = {}
    first: Context | None = None
    for init in inits:
        tctx = transfer_context(ctx, init, bank_from=first)
        for kind, res in run_transfer_init(tctx, init, progress=progress).items():
            keep = ("init", "model", "subset", "image_size", "batch_size", "epochs", "trainable", "trained_stages",
                    "encoder_params_trained", "params_trained", "encoder_weights")
            runs[res["name"]] = {**summary(res), **{k: res["params"].get(k) for k in keep},
                                 "wall_s": float(res.get("wall_s", float("nan")))}
        first = first or tctx
    return {"p": ctx.p, "seed": ctx.seed, "subset": TRANSFER_SUBSET, "settings": transfer_settings(ctx.profile),
            "runs": runs}
