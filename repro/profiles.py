"""The three run profiles, defined in one place (docs/design.md §4).

``smoke``  CI: a few hundred images, low resolution, 1-2 epochs, minutes.
``quick``  CPU: EfficientNet-Lite0 frozen at 256 px, multi-scale pooled features cached once, a shared
           trainable neck + heads, class-balanced T1 loss; all stages, all p, 3 seeds.
``paper``  GPU: ResNet-50, 224 px, full fine-tuning, batch 128 (the paper's setting).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from repro.errors import ConfigError


@dataclass(frozen=True)
class Profile:
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
    taus: tuple[float, ...] = (0.5, 1.0, 5.0, 10.0)
    default_tau: float = 1.0
    kd_reduction: str = "batchmean"
    ensemble: str = "mean_prob"
    unlabeled: str = "all"
    device: str = "auto"
    num_threads: int | None = None
    split_seed: int = 0
    feature_precision: str = "fp32"      # frozen-trunk forward of the feature cache: "fp32" or "bf16" (autocast)
    val_every: int = 1                   # score validation (model selection) every k-th epoch and the last
    caption_max_epochs: int | None = None  # epoch cap of every stage that trains T3 (None: the stage's own cap)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["views"] = list(self.views)
        d["taps"] = None if self.taps is None else list(self.taps)
        d["taus"] = list(self.taus)
        return d

    def with_overrides(self, **kw: Any) -> "Profile":
        unknown = sorted(set(kw) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown profile setting(s) {unknown}; known: {sorted(self.__dataclass_fields__)}")
        return replace(self, **kw)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", image_size=96, trainable=0, taps=("block4", "block5", "block6"), neck_hidden=64,
        optimizer="adamw", lr=3e-3, weight_decay=0.01, lr_schedule="onecycle", class_balance=0.6,
        max_patients=240, batch_size=32, max_epochs=2, patience=2, vocab_min_count=1, t2_min_count=3,
        kd_max_epochs=1,
    ),
    "quick": Profile(
        name="quick", image_size=256, trainable=0, taps=("block4", "block5", "block6"), neck_hidden=512,
        optimizer="adamw", lr=1e-3, weight_decay=0.01, lr_schedule="onecycle", class_balance=0.6,
        decoder_hidden=256, decoder_embed=128, batch_size=128, max_epochs=8, patience=8, kd_max_epochs=4,
        tau_seed=0,
    ),
    "paper": Profile(
        name="paper", encoder="resnet50", image_size=224, trainable="all", batch_size=128,
        lr=0.01, max_epochs=30, patience=5, decoder="lstm",
    ),
}


def get_profile(name: str | Profile, **overrides: Any) -> Profile:
    """The named profile, with optional overrides (an unknown name or setting is a ConfigError)."""
    if isinstance(name, Profile):
        prof = name
    else:
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
        prof = PROFILES[name]
    return prof.with_overrides(**overrides) if overrides else prof
