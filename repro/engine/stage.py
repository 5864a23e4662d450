"""What a training stage reads and minimises: targets per task, the :class:`Stage` record, the supervised (M1) stage, batch helpers (docs/design.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from repro.distill.losses import class_balance_weights, m1_loss
from repro.names import PAD


def label_tensors(prepared) -> dict[str, torch.Tensor]:
    """Targets of every image in manifest order, keyed by task."""
    m = prepared.manifest
    return {
        "coarse": torch.tensor(m["coarse_idx"].to_numpy(), dtype=torch.long),
        "fine": torch.tensor(m["fine_idx"].to_numpy(), dtype=torch.long),
        "caption": torch.tensor(np.asarray(prepared.captions), dtype=torch.long),
    }


@dataclass
class Stage:
    """What one training stage reads and minimises.

    ``make_batch(idx, view_ids) -> dict`` returns everything the loss needs
    except the model outputs (targets, teacher logits, the caption prefix under
    ``"prefix"``); ``loss(outputs, batch) -> dict`` returns named terms.
    """

    name: str
    tasks: tuple[str, ...]
    make_batch: Callable[[torch.Tensor, torch.Tensor], dict[str, Any]]
    loss: Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]]
    teacher_forcing: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


def t1_class_weights(prepared, train_idx, power: float) -> dict[str, torch.Tensor]:
    """``{"coarse": w}``: class-balanced T1 weights from the T1 counts of ``train_idx`` (empty for power 0)."""
    if not power:
        return {}
    counts = np.bincount(prepared.manifest["coarse_idx"].to_numpy()[np.asarray(train_idx)],
                         minlength=len(prepared.coarse_classes))
    return {"coarse": class_balance_weights(counts, power)}


def weights_record(class_weights: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Class weights as JSON-ready lists (rounded), for a stage's recorded parameters."""
    return {t: [round(float(x), 6) for x in w] for t, w in class_weights.items()}


def supervised_stage(prepared, tasks: tuple[str, ...], lambdas: dict | None = None,
                     class_weights: dict | None = None) -> Stage:
    """M1 (paper Eq. 1): Σ_t λ_t CE_t on labeled images (CE_t class-weighted where ``class_weights`` has t)."""
    labels = label_tensors(prepared)
    class_weights = {t: w for t, w in (class_weights or {}).items() if t in tasks}

    def make_batch(idx, view_ids):
        b = {t: labels[t][idx] for t in tasks}
        if "caption" in tasks:
            b["prefix"] = labels["caption"][idx]
        return b

    def loss(outputs, batch):
        return m1_loss(outputs, batch, tasks, lambdas, class_weights)

    params = {"class_weights": weights_record(class_weights)}
    return Stage("m1", tuple(tasks), make_batch, loss, params=params)


def trim_captions(batch: dict[str, Any]) -> dict[str, Any]:
    """Cut the caption tensors of a batch to its longest caption (PAD = 0 after EOS).

    Exact, not an approximation: the steps cut hold only PAD targets, which the
    caption CE ignores, and KD masks steps after EOS. ODIR captions are short
    (2.6 tokens on average), so the decoder runs ~5 steps instead of 15.
    """
    prefix = batch.get("prefix")
    if prefix is None:
        return batch
    n = max(int((prefix != PAD).sum(1).max()), 1)
    if n >= prefix.shape[1]:
        return batch
    out = dict(batch)
    for key in ("prefix", "caption", "mask"):
        if key in out:
            out[key] = out[key][:, :n]
    if "caption" in out.get("teacher", {}):
        out["teacher"] = {**out["teacher"], "caption": [t[:, :n] for t in out["teacher"]["caption"]]}
    return out


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, list):
            out[k] = [t.to(device, non_blocking=True).float() if isinstance(t, torch.Tensor) else t for t in v]
        elif isinstance(v, dict):
            out[k] = to_device(v, device)
        else:
            out[k] = v
    return out
