"""Checkpoints: model config, weights and what decodes its outputs (classes, vocabulary), written atomically (docs/design.md §6).

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)``, whose
unpickler accepts only tensors and plain containers (dict, list, str, numbers, None) and refuses
any other global *before* calling it, so a pickled ``os.system(...)`` is rejected, not run.
Everything this project writes into a checkpoint is of those types. Every way a file can be
wrong ends in one :class:`~repro.errors.CheckpointError` naming the file and the fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repro.errors import CheckpointError, ConfigError, MissingStageError
from repro.io import atomic_save


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint of this project, trained for another run (data set, split, profile, vocabulary)."""


def save_checkpoint(path: str | Path, model, prepared, extra: dict[str, Any] | None = None) -> Path:
    """Model config + weights + everything needed to decode its outputs (classes, vocabulary).

    ``extra`` records the run (stage, p, seed, profile settings, data identity); a later stage
    compares it with its own (:func:`repro.experiments.context.check_checkpoint`).
    """
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


REQUIRED_KEYS = ("model_config", "state_dict", "coarse_classes", "fine_classes", "vocab", "split_hash")


def read_payload(path: str | Path, map_location="cpu") -> dict[str, Any]:
    """The checkpoint's contents, read as data only (see the module docstring); checked for shape."""
    path = Path(path)
    if not path.exists():
        raise MissingStageError(f"checkpoint {path} does not exist; run the stage that writes it first")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); delete it and run the stage that writes it again")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every unreadable file gets one clear message
        text = str(e).split("WeightsUnpickler error:")[-1]  # torch's own cause, past its generic preamble
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = lines[0] if lines else type(e).__name__
        unsafe = "global" in str(e).lower()  # "Unsupported global: ..." / "unsupported GLOBAL posix.system ..."
        why = ("it holds Python objects other than tensors and plain containers, which are refused "
               "unexecuted (a checkpoint must be data, not code)") if unsafe else \
              f"it is not a readable PyTorch file, or it is truncated ({type(e).__name__}: {first[:160]})"
        raise CheckpointError(f"cannot load checkpoint {path}: {why}. Use a checkpoint written by this "
                              "project (<results root>/runs/<profile>/<data key>/p<p>/seed<seed>/*.pt)") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not this project's "
                              f"checkpoint dict (keys {list(REQUIRED_KEYS)})")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it was not written by this project's "
                              f"save_checkpoint (found keys {sorted(map(str, payload))[:8]})")
    if not isinstance(payload["model_config"], dict) or not isinstance(payload["state_dict"], dict):
        raise CheckpointError(f"checkpoint {path}: model_config and state_dict must be dicts")
    return payload


def load_checkpoint(path: str | Path, map_location="cpu"):
    """``(model, payload)`` from a checkpoint written by :func:`save_checkpoint` (data only, checked)."""
    from repro.models.mtlnet import MTLNet

    payload = read_payload(path, map_location)
    cfg = payload["model_config"]
    try:
        model = MTLNet.from_config(cfg)
    except (ConfigError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} describes a model this project cannot build "
                              f"(encoder {cfg.get('encoder')!r}): {e}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the model its config describes "
                              f"(another encoder, class list or vocabulary?): {' '.join(lines[1:3])[:300]}") from None
    n_coarse = (cfg.get("num_classes") or {}).get("coarse")
    if n_coarse is not None and n_coarse != len(payload["coarse_classes"]):
        raise CheckpointError(f"checkpoint {path}: T1 head has {n_coarse} outputs but {len(payload['coarse_classes'])} "
                              "class names are stored")
    model.eval()
    return model, payload
