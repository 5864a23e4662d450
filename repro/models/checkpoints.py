"""Checkpoints: model config, weights and what decodes its outputs (classes, vocabulary), written atomically (docs/design.md §6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repro.errors import MissingStageError
from repro.io import atomic_save


def save_checkpoint(path: str | Path, model, prepared, extra: dict[str, Any] | None = None) -> Path:
    """Model config + weights + everything needed to decode its outputs (classes, vocabulary)."""
    payload = {
        "model_config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "coarse_classes": list(prepared.coarse_classes),
        "fine_classes": list(prepared.fine_classes),
        "vocab": prepared.vocab.to_dict(),
        "split_hash": prepared.split_hash,
        "extra": extra or {},
    }
    return atomic_save(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location="cpu"):
    """``(model, payload)`` from a checkpoint written by :func:`save_checkpoint`."""
    from repro.models.mtlnet import MTLNet

    path = Path(path)
    if not path.exists():
        raise MissingStageError(f"checkpoint {path} does not exist; run the stage that writes it first")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    model = MTLNet.from_config(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
