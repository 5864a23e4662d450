"""Checkpoints: model config, weights and what decodes its outputs (classes, vocabulary), written atomically (docs/design.md §6).

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)``, whose
unpickler accepts only tensors and plain containers (dict, list, str, numbers, None) and refuses
any other global *before* calling it, so a pickled ``os.system(...)`` is rejected, not run.
Everything this project writes into a checkpoint is of those types. Every way a file can be
wrong ends in one :class:`~repro.errors.CheckpointError` naming the file and the fault; that includes
the stored profile and model sizes, validated (known fields, types, ranges: :func:`check_stored_profile`,
:func:`check_model_config`) before anything is built or allocated from them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from repro.errors import CheckpointError, ConfigError, MissingStageError
from repro.io import atomic_save
from repro.models.trunk_weights import RECORD_KEY, leave_out_trunk, restore_trunk
from repro.profiles import Profile


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint of this project, trained for another run (data set, split, profile, vocabulary)."""


def save_checkpoint(path: str | Path, model, prepared, extra: dict[str, Any] | None = None) -> Path:
    """Model config + weights + everything needed to decode its outputs (classes, vocabulary).

    A frozen trunk that is the pretrained encoder's is left out and recorded instead
    (:mod:`repro.models.trunk_weights`); :func:`load_checkpoint` rebuilds and checks it.

    ``extra`` records the run (stage, p, seed, profile settings, data identity); a later stage
    compares it with its own (:func:`repro.experiments.context.check_checkpoint`).
    """
    state, trunk = leave_out_trunk(model)
    payload = {
        "model_config": model.config,
        "state_dict": state,
        "coarse_classes": list(prepared.coarse_classes),
        "fine_classes": list(prepared.fine_classes),
        "vocab": prepared.vocab.to_dict(),
        "split_hash": prepared.split_hash,
        "extra": extra or {},
    }
    if trunk is not None:
        payload[RECORD_KEY] = trunk
    return atomic_save(path, lambda f: torch.save(payload, f))


#: inclusive ranges of the stored profile's numbers (fields not named here: any value of their type)
PROFILE_RANGES: dict[str, tuple[float, float]] = {
    "image_size": (16, 2048), "max_caption_len": (1, 256), "batch_size": (1, 65536), "max_epochs": (0, 100000),
    "patience": (0, 100000), "min_epochs": (0, 100000), "kd_max_epochs": (0, 100000), "t2_min_count": (0, 10**7),
    "vocab_min_count": (0, 10**7), "split_seed": (0, 2**32 - 1), "tau_seed": (0, 2**32 - 1),
    "max_patients": (3, 10**8), "decoder_hidden": (1, 65536), "decoder_embed": (1, 65536),
    "head_hidden": (1, 65536), "neck_hidden": (1, 65536), "t1_subclasses": (1, 1024), "num_threads": (1, 4096),
    "lr": (0, 100), "momentum": (0, 1), "weight_decay": (0, 100), "teacher_forcing": (0, 1), "alpha": (0, 1),
    "default_tau": (1e-6, 1e6), "taus": (1e-6, 1e6), "neck_dropout": (0, 1), "input_dropout": (0, 1),
    "class_balance": (0, 100),
}


#: inclusive ranges of the model sizes in ``model_config`` (what the network allocates)
MODEL_RANGES: dict[str, tuple[int, int]] = {
    "vocab_size": (4, 10**6), "embed": (1, 65536), "hidden": (1, 65536), "head_hidden": (1, 65536),
    "neck_hidden": (1, 65536), "subclasses": (1, 1024), "num_classes": (1, 10**6),
}


#: settings whose stored form (``Profile.to_dict``) differs from the field's declared type
STORED_TYPES = {"extra": "dict"}

_BASE_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
               "dict": (dict,), "tuple": (list, tuple)}


def _fits(value: Any, annotation: str) -> bool:
    """Whether ``value`` (as read back from a checkpoint: tuples become lists) has the annotated type."""
    for alt in (a.strip() for a in annotation.split("|")):
        base, _, inner = alt.partition("[")
        types = _BASE_TYPES.get(base.strip())
        if types is None or isinstance(value, bool) and bool not in types:
            continue
        if not isinstance(value, types):
            continue
        if base.strip() == "tuple":
            elem = inner.split(",")[0].strip()
            return all(_fits(v, elem) for v in value)
        return True
    return False


def _in_range(value: Any, lo: float, hi: float) -> bool:
    vals = value if isinstance(value, (list, tuple)) else [value]
    return all(v is None or (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi) for v in vals)


def check_stored_profile(path: str | Path, prof: Any) -> None:
    """CheckpointError unless the profile stored in a checkpoint has only :class:`~repro.profiles.Profile`
    fields, each of its declared type and, for sizes and rates, within :data:`PROFILE_RANGES`."""
    if not isinstance(prof, dict):
        raise CheckpointError(f"checkpoint {path}: the stored profile is a {type(prof).__name__}, not a dict of "
                              "profile settings; use a checkpoint written by this project")
    known = {f.name: f.type for f in fields(Profile)}
    known.update(STORED_TYPES)
    unknown = sorted(str(k) for k in prof if k not in known)
    if unknown:
        raise CheckpointError(f"checkpoint {path}: unknown profile setting(s) {unknown[:5]} in its stored profile; "
                              f"known settings are {sorted(known)}. Use a checkpoint written by this project")
    for key, value in prof.items():
        if not _fits(value, str(known[key])):
            raise CheckpointError(f"checkpoint {path}: stored profile setting {key}={value!r:.60} is not of type "
                                  f"{known[key]}; use a checkpoint written by this project")
        if key in PROFILE_RANGES and not _in_range(value, *PROFILE_RANGES[key]):
            lo, hi = PROFILE_RANGES[key]
            raise CheckpointError(f"checkpoint {path}: stored profile setting {key}={value!r:.60} is outside "
                                  f"{lo:g}..{hi:g}; use a checkpoint written by this project")
    if isinstance(prof.get("trainable"), str) and prof["trainable"] != "all":
        raise CheckpointError(f"checkpoint {path}: stored profile setting trainable={prof['trainable']!r:.60} "
                              "is neither 'all' nor a number of stages")


def check_model_config(path: str | Path, cfg: dict[str, Any]) -> None:
    """CheckpointError when a size in ``model_config`` is not an integer within :data:`MODEL_RANGES`
    (checked before the network is built, so an absurd size never reaches an allocation)."""
    for key, (lo, hi) in MODEL_RANGES.items():
        value = cfg.get(key)
        values = list(value.values()) if isinstance(value, dict) else [value]
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise CheckpointError(f"checkpoint {path}: model size {key}={value!r:.60} is not an integer in "
                                      f"{lo}..{hi}; use a checkpoint written by this project")


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
    check_model_config(path, payload["model_config"])
    extra = payload.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise CheckpointError(f"checkpoint {path}: 'extra' must be a dict, got {type(extra).__name__}")
    if extra and "profile" in extra:
        check_stored_profile(path, extra["profile"])
    return payload


#: checkpoints this process has loaded, newest last: (path, size, mtime_ns, map_location) -> (model, payload)
_LOADED: dict[tuple[str, int, int, str], tuple[Any, dict[str, Any]]] = {}
LOADED_MAX = 16   # about 15 MB each for a quick model (the Lite0 encoder's weights are part of it)


def load_checkpoint(path: str | Path, map_location="cpu"):
    """``(model, payload)`` from a checkpoint written by :func:`save_checkpoint` (data only, checked).

    A chain loads the same teachers again and again (the τ study, the ensemble, M2, M3: about 50 loads of
    about 12 files per (p, seed)), so a file this process has already loaded, unchanged since (same path,
    size and modification time), is copied from memory instead of read, checked and built again; the
    caller gets its own copy of the model to train or move. Building a model never draws from torch's
    global random stream, so a run's numbers do not depend on which checkpoints were loaded before it.
    """
    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, str(map_location))
    except OSError:
        key = None
    hit = _LOADED.get(key) if key else None
    if hit is None:
        with torch.random.fork_rng(devices=[]):
            hit = _read_checkpoint(p, map_location)
        if key:
            _LOADED[key] = hit
            while len(_LOADED) > LOADED_MAX:
                del _LOADED[next(iter(_LOADED))]
    else:
        _LOADED[key] = _LOADED.pop(key)
    model, payload = hit
    return copy.deepcopy(model), dict(payload)


def _read_checkpoint(path: str | Path, map_location="cpu"):
    from repro.models.mtlnet import MTLNet

    payload = read_payload(path, map_location)
    cfg = payload["model_config"]
    try:
        model = MTLNet.from_config(cfg)
    except (ConfigError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} describes a model this project cannot build "
                              f"(encoder {cfg.get('encoder')!r}): {e}") from None
    state = payload["state_dict"]
    if RECORD_KEY in payload:
        state = restore_trunk(path, cfg, state, payload[RECORD_KEY])
    try:
        model.load_state_dict(state)
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
