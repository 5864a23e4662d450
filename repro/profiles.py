"""The run profiles, defined in one place (docs/design.md §4).

``smoke``  CI: a few hundred images, low resolution, 1-2 epochs, minutes.
``quick``  CPU: EfficientNet-Lite0 frozen at 256 px, multi-scale pooled features cached once, a shared
           trainable neck + heads, class-balanced T1 loss; all stages, all p, 3 seeds.
``finetune`` CPU: EfficientNet-Lite0 at 256 px frozen up to a cut (``trainable`` = the number k of last
           stages trained; default 2: block6 + head trained on cached block5 maps), the frozen part's maps
           cached once per image and view (fp16), heads, decoder, losses, class balance and selection as in
           ``quick``; the claims study at p = 15 and 70, 3 seeds.
``paper``  GPU: ResNet-50, 224 px, full fine-tuning, batch 128 (the paper's setting).

``$REPRO_PROFILE_OVERRIDES`` (:data:`PROFILE_OVERRIDES_ENV`), a JSON object ``{profile name: {setting: value}}``,
overrides settings of the named profiles wherever they are looked up by name in this process and its
children (notebook kernels): the tests run the ``paper`` profile at 64 px through the notebooks with it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from repro.errors import ConfigError
from repro.names import PAPER_TAUS


def _frozen(key: str, value: Any) -> Any:
    """``value`` with lists made tuples, so that a profile holding it can be hashed."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(key, v) for v in value)
    try:
        hash(value)
    except TypeError:
        raise ConfigError(f"profile setting extra[{key!r}] = {value!r} cannot be hashed; give a number, a string, "
                          "a bool or a list of them") from None
    return value


@dataclass(frozen=True)
class Profile:
    """One run profile: every setting that decides data preparation, models and training.

    Frozen and hashable (``extra`` is held as sorted ``(key, value)`` pairs; a mapping given for it is
    converted), so a profile, not its name, keys what is computed from it (the prepared data of
    :func:`repro.experiments.context.make_context`).
    """

    name: str
    encoder: str = "efficientnet_lite0"
    pretrained: bool = True
    image_size: int = 224
    trainable: str | int = "all"         # "all" or the number k of last encoder stages trained
    taps: tuple[str, ...] | None = None  # frozen encoder read at these stages (mean+max pooled, concatenated)
    neck_hidden: int | None = None       # width of the shared trainable neck on the tapped features
    neck_dropout: float = 0.5            # dropout after the neck's hidden layer
    input_dropout: float = 0.2           # dropout on the tapped features (before the neck)
    head_hidden: int = 512               # hidden width of the T1/T2 MLP heads (the authors': 512)
    t1_subclasses: int = 1               # sub-logits per T1 class (> 1: subclass head, class logit = logsumexp)
    optimizer: str = "sgd"               # "sgd" (Nesterov, the paper) or "adamw"
    lr_schedule: str = "constant"        # "constant" or "onecycle" (warm-up 10 %, cosine decay to the last epoch)
    class_balance: float = 0.0           # T1 CE weights (N / (K n_c)) ** class_balance: 0 plain, 1 fully balanced
    views: tuple[str, ...] = ("orig", "hflip")  # training views; evaluation uses "orig"
    max_patients: int | None = None      # subsample patients (smoke) before splitting
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-6
    max_epochs: int = 30
    patience: int = 5
    min_epochs: int = 1
    kd_max_epochs: int | None = None     # epoch cap of the KD stages (M2, M3, τ study); None: max_epochs
    tau_seed: int | None = None          # None: every seed runs its own τ study; k: seed k's choice serves all seeds
    decoder: str = "lstm"
    decoder_hidden: int = 512            # the caption decoder's state size (the authors': 512)
    decoder_embed: int = 256             # its word embedding size (the authors': 256)
    teacher_forcing: float = 0.5
    max_caption_len: int = 14
    t2_min_count: int = 10
    vocab_min_count: int = 2
    taxonomy: str = "paper5"
    alpha: float = 0.95
    taus: tuple[float, ...] = PAPER_TAUS
    default_tau: float = 1.0
    kd_reduction: str = "batchmean"
    ensemble: str = "mean_prob"
    unlabeled: str = "all"
    device: str = "auto"
    num_threads: int | None = None       # intra-op threads, fixed so a CPU run's numbers do not follow the core count
    split: str = "per_seed"              # "per_seed": seed s uses patient split s; "fixed": split_seed for every seed
    split_seed: int = 0                  # the one split of split="fixed" (the paper's setting)
    encoder_lr: float | None = None      # LR of the trained encoder stages (the encoder top); None: lr
    map_flip: float = 0.0                # training: probability of a left-right flip of a cached trunk map
    cpu_bf16: bool = False               # CPU training: the trained encoder stages under bf16 autocast (finetune: on)
    feature_precision: str = "fp32"      # frozen-trunk forward of the feature cache: "fp32" or "bf16" (autocast)
    fold_batchnorm: bool = False         # feature cache: run the frozen trunk with its BatchNorm folded into the convs
    probe_solver: str = "sklearn"        # the LR probe's solver: "sklearn", "torch" or "torch-fp32" (the same objective)
    val_every: int = 1                   # score validation (model selection) every k-th epoch and the last
    caption_max_epochs: int | None = None  # epoch cap of every stage that trains T3 (None: the stage's own cap)
    tensorboard: str | None = None       # TensorBoard curves folder, relative to the results root (None: off; --tensorboard wins)
    extra: tuple[tuple[str, Any], ...] = ()  # further settings, as (key, value) pairs; a mapping is accepted

    def __post_init__(self) -> None:
        pairs = self.extra.items() if isinstance(self.extra, Mapping) else self.extra
        object.__setattr__(self, "extra", tuple(sorted((str(k), _frozen(str(k), v)) for k, v in pairs)))

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON-ready values (the ``profile_settings`` of a result file; ``extra`` a mapping)."""
        d = asdict(self)
        d["views"] = list(self.views)
        d["taps"] = None if self.taps is None else list(self.taps)
        d["taus"] = list(self.taus)
        d["extra"] = dict(self.extra)
        return d

    def with_overrides(self, **kw: Any) -> "Profile":
        unknown = sorted(set(kw) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown profile setting(s) {unknown}; known: {sorted(self.__dataclass_fields__)}")
        return replace(self, **kw)


def setting_differences(old: Mapping[str, Any], new: Profile) -> dict[str, tuple[Any, Any]]:
    """``{setting: (old value, new value)}`` for every setting (the name aside) in which ``old`` (a profile's
    :meth:`Profile.to_dict`, e.g. a result's ``profile_settings``) differs from profile ``new``. A setting
    ``old`` lacks (one added since it was written) counts at its default, the value it had then."""
    ours, defaults = new.to_dict(), Profile(name=new.name).to_dict()
    return {k: (old.get(k, defaults[k]), v) for k, v in ours.items() if k != "name" and old.get(k, defaults[k]) != v}


DEFAULT_PROFILE = "quick"  # the profile of every command and notebook unless told otherwise

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", image_size=96, trainable=0, taps=("block4", "block5", "block6"), neck_hidden=64,
        optimizer="adamw", lr=3e-3, weight_decay=0.01, lr_schedule="onecycle", class_balance=0.6,
        max_patients=240, batch_size=32, max_epochs=2, patience=2, vocab_min_count=1, t2_min_count=3,
        kd_max_epochs=1, num_threads=1,
    ),
    "quick": Profile(
        name="quick", image_size=256, trainable=0, taps=("block4", "block5", "block6"), neck_hidden=512,
        optimizer="adamw", lr=1e-3, weight_decay=0.01, lr_schedule="onecycle", class_balance=0.6,
        decoder_hidden=256, decoder_embed=128, batch_size=128, max_epochs=8, patience=8, kd_max_epochs=4,
        tau_seed=0, num_threads=1, fold_batchnorm=True, probe_solver="torch-fp32", caption_max_epochs=6,
    ),
    "finetune": Profile(
        name="finetune", image_size=256, trainable=2, encoder_lr=3e-4, map_flip=0.5,
        optimizer="adamw", lr=1e-3, weight_decay=0.01, lr_schedule="onecycle", class_balance=0.6,
        decoder_hidden=256, decoder_embed=128, batch_size=64, max_epochs=8, patience=8, kd_max_epochs=4,
        tau_seed=0, num_threads=2, cpu_bf16=True,
    ),
    "paper": Profile(
        name="paper", encoder="resnet50", image_size=224, trainable="all", batch_size=128,
        lr=0.01, max_epochs=30, patience=5, decoder="lstm",
    ),
}


PROFILE_OVERRIDES_ENV = "REPRO_PROFILE_OVERRIDES"

_ANNOUNCED: set[str] = set()


def env_overrides(name: str) -> dict[str, Any]:
    """Settings ``$REPRO_PROFILE_OVERRIDES`` gives profile ``name`` (JSON lists become tuples); ``{}`` when unset."""
    raw = os.environ.get(PROFILE_OVERRIDES_ENV, "").strip()
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"${PROFILE_OVERRIDES_ENV} is not valid JSON ({e}): {raw!r}; give an object "
                          '{"<profile>": {"<setting>": value}} or unset it') from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"${PROFILE_OVERRIDES_ENV} must be a JSON object of objects "
                          f'{{"<profile>": {{"<setting>": value}}}}, got {raw!r}')
    unknown = sorted(set(table) - set(PROFILES))
    if unknown:
        raise ConfigError(f"${PROFILE_OVERRIDES_ENV} names unknown profile(s) {unknown}; choose one of {sorted(PROFILES)}")
    found = {k: tuple(v) if isinstance(v, list) else v for k, v in table.get(name, {}).items()}
    unknown = sorted(set(found) - set(Profile.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"${PROFILE_OVERRIDES_ENV} gives profile {name!r} unknown setting(s) {unknown}; known: "
                          f"{sorted(Profile.__dataclass_fields__)}. Fix or unset ${PROFILE_OVERRIDES_ENV}")
    if found and raw not in _ANNOUNCED:
        _ANNOUNCED.add(raw)
        print(f"profile settings from ${PROFILE_OVERRIDES_ENV}: {raw}", file=sys.stderr)
    return found


def get_profile(name: str | Profile, **overrides: Any) -> Profile:
    """The named profile, with optional overrides (an unknown name or setting is a ConfigError).

    A profile looked up by name first takes the settings ``$REPRO_PROFILE_OVERRIDES`` gives it
    (:func:`env_overrides`), then ``overrides``.
    """
    if isinstance(name, Profile):
        prof = name
    else:
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
        prof = PROFILES[name]
        from_env = env_overrides(name)
        if from_env:
            prof = prof.with_overrides(**from_env)
    return prof.with_overrides(**overrides) if overrides else prof
