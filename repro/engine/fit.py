"""Training engine: the profile's optimiser (SGD-Nesterov as in the paper, or AdamW), early stopping on
the validation score (:func:`validation_score`: the mean over the trained tasks of their main metric,
:data:`repro.names.PRIMARY`: T1 balanced accuracy, T2 top-1, T3 ``bleu_paper``), the best epoch's weights
restored (``restore_best=False`` keeps the last epoch's), one test evaluation, one atomic result JSON per
run (paper §4.1; docs/design.md §4, §6).

A *stage* (M1, M2, M3, τ-study) is described by which tasks it trains, how a
batch is assembled (labels, teacher outputs, caption prefix) and its loss,
a function returning a dict of named terms whose ``"total"`` is minimised
(mdistiller style). The engine is the same for every stage.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from repro.device import autocast
from repro.engine.evaluate import predict, score_predictions
from repro.engine.stage import Stage, to_device, trim_captions
from repro.errors import ConfigError, DataError
from repro.models.inputbank import random_map_flips
from repro.names import PRIMARY, TASKS
from repro.progress import epoch_line, plain_lines, tqdm_class


def validation_score(metrics: dict[str, Any], tasks) -> float:
    """Model selection score: mean over the trained tasks of their main metric (:data:`repro.names.PRIMARY`:
    T1 balanced accuracy, T2 top-1 accuracy, T3 ``bleu_paper``)."""
    vals = [metrics[t][PRIMARY[t][0]] for t in tasks if t in metrics]
    return float(np.mean(vals)) if vals else float("nan")


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_score: float
    train_images_per_s: float
    train_seconds: float
    tested_epoch: int = -1   # the epoch whose weights the model holds after fit (best_epoch when restored)


OPTIMIZERS = ("sgd", "adamw")
#: history keys of the learning rates, in the order of the optimiser's groups (:func:`param_groups`)
LR_KEYS = ("lr", "lr/encoder")
LR_SCHEDULES = ("constant", "onecycle")


def make_optimizer(params, profile, total_steps: int):
    """``(optimizer, scheduler or None)`` of a profile.

    ``sgd``: SGD with Nesterov momentum (the paper); ``adamw``: AdamW. ``onecycle``: the LR warms
    up over the first 10 % of ``total_steps`` to ``profile.lr`` and decays (cosine) to ~0 at the last
    step, stepped once per batch; ``constant`` keeps ``profile.lr``.
    """
    if profile.optimizer not in OPTIMIZERS or profile.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"optimizer={profile.optimizer!r} / lr_schedule={profile.lr_schedule!r}: "
                          f"use one of {OPTIMIZERS} / {LR_SCHEDULES}")
    if profile.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=profile.lr, weight_decay=profile.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=profile.lr, momentum=profile.momentum, nesterov=True,
                              weight_decay=profile.weight_decay)
    if profile.lr_schedule == "constant" or total_steps < 2:
        return opt, None
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: one_cycle(step, int(total_steps)))


def param_groups(model, profile) -> list:
    """The trainable parameters for :func:`make_optimizer`: one list, or with ``profile.encoder_lr`` two
    groups, the trained encoder stages (``model.top``) at ``encoder_lr`` and the rest (heads, neck) at ``lr``."""
    params = [p for p in model.parameters() if p.requires_grad]
    top = getattr(model, "top", None)
    if profile.encoder_lr is None or top is None:
        return params
    top_ids = {id(p) for p in top.parameters() if p.requires_grad}
    if not top_ids:
        return params
    return [{"params": [p for p in params if id(p) not in top_ids]},
            {"params": [p for p in params if id(p) in top_ids], "lr": float(profile.encoder_lr)}]


def one_cycle(step: int, total: int, warmup: float = 0.1, start: float = 0.04) -> float:
    """LR factor at ``step`` of ``total``: linear warm-up from ``start`` to 1 over the first
    ``w = max(1, round(warmup * total))`` steps, then cosine decay ``(1 + cos(pi (step - w) / (total - w))) / 2``."""
    w = max(1, round(warmup * total))
    if step < w:
        return start + (1.0 - start) * step / w
    return 0.5 * (1.0 + math.cos(math.pi * min(step - w, total - w) / max(total - w, 1)))


def validates(epoch: int, profile) -> bool:
    """Whether 1-based ``epoch`` is scored on validation: every ``profile.val_every``-th epoch and the last."""
    every = max(1, int(getattr(profile, "val_every", 1) or 1))
    return epoch % every == 0 or epoch >= profile.max_epochs


def fit(model, bank, prepared, train_idx: np.ndarray, val_idx: np.ndarray, stage: Stage, profile,
        generator: torch.Generator, desc: str = "", progress: bool = True, restore_best: bool = True,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``model`` on ``train_idx`` with early stopping on ``val_idx``; the best state is restored.

    ``restore_best=False`` (the authors' code): every epoch is trained, no early stopping, and the model
    keeps its last epoch's weights; the best validation epoch is still recorded (``best_epoch``).
    Each epoch's history row holds the mean of every loss term (``train/<term>``), the validation values
    (``val/...``) and the learning rate of the epoch's last step (``lr``; ``lr/encoder`` for the encoder
    top's own group); ``on_epoch(row)`` is called with it (the TensorBoard curves, :mod:`repro.engine.tb_log`)."""
    if len(train_idx) == 0:
        raise DataError(f"stage {stage.name}: the training set is empty; check the split and p")
    device = bank.device
    params = param_groups(model, profile)
    bs = profile.batch_size
    steps_per_epoch = sum(1 for s in range(0, len(train_idx), bs) if len(train_idx) - s >= 2)
    opt, sched = make_optimizer(params, profile, profile.max_epochs * max(steps_per_epoch, 1))
    tf_saved = getattr(model, "teacher_forcing", None)
    if stage.teacher_forcing is not None and tf_saved is not None:
        model.teacher_forcing = stage.teacher_forcing
    top = getattr(model, "top", None)
    bf16_saved = getattr(top, "train_bf16", None)  # profile.cpu_bf16: the encoder top trains under CPU bf16
    if bf16_saved is not None:
        top.train_bf16 = bool(profile.cpu_bf16)
    n_views = len(bank.views)
    train_t = torch.as_tensor(train_idx, dtype=torch.long)
    history: list[dict[str, Any]] = []
    best_state, best_score, best_epoch = None, -float("inf"), -1
    seen, busy = 0, 0.0
    lines = progress and plain_lines()
    bar = tqdm_class()(range(profile.max_epochs), desc=desc or stage.name, leave=False, disable=not progress or lines)
    try:
        for epoch in bar:
            model.train()
            perm = train_t[torch.randperm(len(train_t), generator=generator)]
            views = torch.randint(n_views, (len(perm),), generator=generator)
            sums: dict[str, float] = {}
            n_batches, lrs = 0, []
            t0 = time.perf_counter()
            for start in range(0, len(perm), bs):
                b, v = perm[start:start + bs], views[start:start + bs]
                if len(b) < 2:
                    continue
                batch = trim_captions(stage.make_batch(b, v))
                x = bank.batch(b, v)
                if profile.map_flip and bank.from_trunk:
                    x = random_map_flips(x, profile.map_flip, generator)
                prefix = batch.get("prefix")
                with autocast(device):
                    out = model(x, captions=None if prefix is None else prefix.to(device), from_trunk=bank.from_trunk)
                    terms = stage.loss(out, to_device(batch, device))
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                lrs = [g["lr"] for g in opt.param_groups]
                opt.step()
                if sched is not None:
                    sched.step()
                for k, val in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(val.detach())
                n_batches += 1
                seen += len(b)
            busy += time.perf_counter() - t0
            row = {"epoch": epoch + 1, **{f"train/{k}": v / max(n_batches, 1) for k, v in sums.items()},
                   **dict(zip(LR_KEYS, lrs))}
            if not validates(epoch + 1, profile):  # profile.val_every > 1: no model selection this epoch
                row["val/score"] = float("nan")
                history.append(row)
                if on_epoch:
                    on_epoch(row)
                continue
            val_preds = predict(model, bank, val_idx, max_len=profile.max_caption_len + 1)
            val_metrics = score_predictions(prepared, val_idx, val_preds, detail=False)
            score = validation_score(val_metrics, stage.tasks)
            row.update({"val/score": score, **_flat_val(val_metrics)})
            history.append(row)
            if on_epoch:
                on_epoch(row)
            bar.set_postfix(loss=f"{row.get('train/total', float('nan')):.3f}", val=f"{score:.3f}")
            if lines:
                print(epoch_line(desc or stage.name, epoch + 1, profile.max_epochs,
                                 row.get("train/total", float("nan")), score), flush=True)
            if score > best_score:
                best_score, best_epoch = score, epoch + 1
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            elif restore_best and epoch + 1 - best_epoch >= profile.patience and epoch + 1 >= profile.min_epochs:
                break
    finally:
        if tf_saved is not None:
            model.teacher_forcing = tf_saved
        if bf16_saved is not None:
            top.train_bf16 = bf16_saved
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    tested = best_epoch if restore_best else len(history)
    return FitResult(history, best_epoch, best_score, seen / busy if busy else float("nan"), busy, tested)


def _flat_val(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"val/{t}/{k}": float(v) for t, m in metrics.items() for k, v in m.items()
            if t in TASKS and isinstance(v, (int, float))}
