"""Ablation 1 · compression: the MTL teacher M1{T1,T2,T3} distilled into a much smaller student.

The student is the same network with a narrow trainable part (profile overrides
:data:`COMPRESSION_STUDENT`: neck, T1/T2 head and caption decoder widths) on the same frozen,
tapped trunk. It is trained from scratch on L_p twice, with the same budget: with the M2 loss from
the teacher (``compress-student-kd``: Σ_t (1 − α) CE_t + α τ² KL_t, the profile's α, τ =
:data:`COMPRESSION_TAU` for every task) and with plain CE (``compress-student-nokd``, the M1 loss).
:func:`compression_cost` counts parameters and FLOPs (``torch.utils.flop_counter``) and times CPU
inference of the three models, end to end from the image and from the cached trunk features.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from repro.experiments.ablations.variants import run_supervised, summary, with_profile
from repro.experiments.context import Context, train_and_record
from repro.io import write_json
from repro.names import ABLATION_STAGE, MAIN, NOTEBOOK_OF, SOS, notebook_path, subset_tasks

COMPRESSION_STUDENT = {"neck_hidden": 32, "head_hidden": 32, "decoder_hidden": 32, "decoder_embed": 32}
COMPRESSION_TAU = 4.0
COMPRESSION_COST_FILE = "compression_cost.json"   # beside the result JSONs of one (p, seed)
LATENCY_BATCHES = (1, 32)
STUDENT_KD, STUDENT_NOKD = "compress-student-kd", "compress-student-nokd"


def run_compression(ctx: Context, student: dict | None = None, tau: float = COMPRESSION_TAU, latency: bool = True,
                    progress: bool = True) -> dict[str, Any]:
    """Teacher (M1{T1,T2,T3}, trained if missing), the student with and without KD, and their costs."""
    from repro.experiments.kd_stage import build_teachers, kd_stage, m1_members, true_caption_prefix
    from repro.experiments.m1 import run_m1

    student = dict(COMPRESSION_STUDENT if student is None else student)
    tasks = subset_tasks(MAIN)
    teacher = run_m1(ctx, MAIN, progress=progress)
    sctx = with_profile(ctx, **student)
    idx = ctx.indices("train", p=ctx.p)
    ts = build_teachers(ctx, m1_members(ctx, (MAIN,)), idx, true_caption_prefix(ctx, idx), "true")
    stage = kd_stage(sctx, ABLATION_STAGE, tasks, ts, {t: float(tau) for t in tasks}, labeled=True)
    common = {"item": "compression", "student": student, "init": "scratch"}
    kd = train_and_record(sctx, ABLATION_STAGE, STUDENT_KD, sctx.new_model(tasks), stage, idx,
                          params={**common, "teacher": f"m1-{MAIN}", "tau": float(tau)}, progress=progress)
    nokd = run_supervised(sctx, STUDENT_NOKD, tasks, params=common, progress=progress)
    cost = compression_cost(ctx, latency=latency)
    return {"p": ctx.p, "seed": ctx.seed, "student": student, "tau": float(tau),
            "runs": {"teacher": summary(teacher), "student_kd": summary(kd), "student_nokd": summary(nokd)},
            "cost": cost}


def infer(model, x: torch.Tensor, from_trunk: bool, steps: int) -> dict[str, torch.Tensor]:
    """One inference pass: T1/T2 logits and ``steps`` greedy caption steps (no early stop, so the
    work does not depend on the image)."""
    f = model.features(x, from_trunk)
    out = {t: model.heads[t](f) for t in ("coarse", "fine") if t in model.heads}
    if "caption" in model.heads:
        dec = model.heads["caption"]
        state = dec.init_state(f)
        tok = torch.full((x.shape[0],), SOS, dtype=torch.long, device=x.device)
        ids = []
        for _ in range(steps):
            logits, state = dec.step(tok, state)
            tok = logits.argmax(-1)
            ids.append(tok)
        out["caption"] = torch.stack(ids, 1)
    return out


def count_parameters(model) -> dict[str, int]:
    """``{"trainable": …, "total": …}`` parameter counts (the frozen trunk counts in the total only)."""
    return {"trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "total": int(sum(p.numel() for p in model.parameters()))}


def _rnn_flops(input_shape, hx, params, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.lstm`` / ``aten.gru`` (no formula in torch's counter): 2 · rows · cols of every
    weight matrix per time step and sequence (the gates' matmuls; elementwise gate work not counted)."""
    steps = 1
    for s in input_shape[:-1]:
        steps *= int(s)
    return sum(2 * int(w[0]) * int(w[1]) * steps for w in params if len(w) == 2)


@torch.inference_mode()
def count_flops(model, x: torch.Tensor, from_trunk: bool, steps: int) -> int:
    """FLOPs per image of :func:`infer` (``torch.utils.flop_counter.FlopCounterMode``, a multiply-add counts 2;
    the recurrent cell's matmuls are added by :func:`_rnn_flops`)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    # keyed by overload (so the counter does not decompose the op) and by packet (where it looks the count up)
    rnn = [torch.ops.aten.lstm, torch.ops.aten.lstm.input, torch.ops.aten.gru, torch.ops.aten.gru.input]
    counter = FlopCounterMode(display=False, custom_mapping={op: _rnn_flops for op in rnn})
    with counter:
        infer(model, x, from_trunk, steps)
    return int(counter.get_total_flops() // x.shape[0])


@torch.inference_mode()
def median_latency_ms(model, x: torch.Tensor, from_trunk: bool, steps: int, repeats: int = 20,
                      budget_s: float = 1.0, warmup: int = 1) -> dict[str, float]:
    """Median wall time of :func:`infer` in ms per image of the batch ``x``: up to ``repeats`` timed runs
    after ``warmup``, stopping once ``budget_s`` seconds are spent (at least 3 runs)."""
    model.eval()
    for _ in range(warmup):
        infer(model, x, from_trunk, steps)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        infer(model, x, from_trunk, steps)
        times.append(time.perf_counter() - t0)
    return {"ms_per_image": 1000.0 * statistics.median(times) / x.shape[0], "runs": len(times)}


def compression_models(ctx: Context) -> dict[str, Any]:
    """The trained teacher and students of this ``(p, seed)``, keyed ``teacher``, ``student_kd``, ``student_nokd``."""
    from repro.experiments.context import require_checkpoint

    how = "repro.experiments.ablations.compression.run_compression (notebook 07)"
    return {"teacher": require_checkpoint(ctx, "m1", MAIN, notebook_path(NOTEBOOK_OF["m1"])),
            "student_kd": require_checkpoint(ctx, ABLATION_STAGE, STUDENT_KD, how),
            "student_nokd": require_checkpoint(ctx, ABLATION_STAGE, STUDENT_NOKD, how)}


def compression_cost(ctx: Context, latency: bool = True, repeats: int = 20, budget_s: float = 1.0,
                     write: bool = True) -> dict[str, Any]:
    """Parameters, FLOPs per image and (with ``latency``) median CPU latency of the three models.

    FLOPs and latency are counted end to end from a normalised image (the frozen trunk included) and
    from the cached trunk features (the trainable part only), on real test images, decoding
    ``max_caption_len + 1`` caption steps. Latency: batch 1 and 32, ``torch.get_num_threads()`` threads
    (the profile's ``num_threads`` where set), median of up to ``repeats`` runs within ``budget_s``
    seconds per (model, input, batch) (:func:`median_latency_ms`; the run counts are recorded).
    Written to ``<run results>/compression_cost.json``.
    """
    from repro.models.encoders import preprocess

    if ctx.profile.num_threads:
        torch.set_num_threads(ctx.profile.num_threads)
    steps = ctx.profile.max_caption_len + 1
    test = ctx.indices("test")
    bank = ctx.bank()
    out: dict[str, Any] = {"p": ctx.p, "seed": ctx.seed, "threads": torch.get_num_threads(), "caption_steps": steps,
                           "image_size": ctx.profile.image_size, "models": {}}

    def inputs(model, b: int, from_image: bool) -> torch.Tensor:
        """``b`` test images (repeated if the test set is smaller): normalised images or cached trunk features."""
        sel = torch.as_tensor(np.resize(test, b), dtype=torch.long)
        if from_image:
            return preprocess(np.asarray(ctx.prepared.images)[sel.numpy()], model.encoder_spec)
        return bank.batch(sel).cpu()

    for key, model in compression_models(ctx).items():
        model = model.to("cpu").eval()
        row: dict[str, Any] = {"params": count_parameters(model)}
        row["flops_image"] = count_flops(model, inputs(model, 1, True), False, steps)
        row["flops_features"] = count_flops(model, inputs(model, 1, False), True, steps)
        if latency:
            timed = {f"{src}_b{b}": median_latency_ms(model, inputs(model, b, src == "image"), src == "features", steps,
                                                      repeats, budget_s)
                     for src in ("image", "features") for b in LATENCY_BATCHES}
            row["latency_ms"] = {k: v["ms_per_image"] for k, v in timed.items()}
            row["latency_runs"] = {k: v["runs"] for k, v in timed.items()}
        out["models"][key] = row
    if write:
        write_json(ctx.run_results / COMPRESSION_COST_FILE, out)
    return out
