"""Grad-CAM of each head: class-score (T1, T2) or caption log-likelihood (T3) targets on the encoder's last stage (paper Fig. 5; docs/design.md §5)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from repro.errors import ConfigError
from repro.models.encoders import preprocess
from repro.names import PAD, TASKS


def target_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM layer: the last encoder stage before pooling (last stage of ``model.top``, else of the trunk).

    A tapped trunk (``quick``) is explained at its FIRST tapped stage (EfficientNet-Lite0 block4,
    stride 16: 16 x 16 at 256 px): every tapped stage lies at or after it, so the gradients of all
    the pooled features flow through this map, at twice the resolution of the last stage.
    """
    taps = getattr(model.trunk, "taps", None)
    if taps:
        return model.trunk.stages[taps[0]]
    for part in (model.top, model.trunk):
        stages = getattr(part, "stages", None)
        if stages is not None and len(stages):
            return list(stages.values())[-1]
    raise ConfigError("this model's encoder has no stages, so it has no feature map for Grad-CAM")


def target_layer_name(model: nn.Module) -> str:
    """The encoder stage name of :func:`target_layer` (e.g. ``"block4"``)."""
    layer = target_layer(model)
    for part in (model.top, model.trunk):
        for name, stage in getattr(part, "stages", {}).items():
            if stage is layer:
                return name
    return type(layer).__name__


@torch.no_grad()
def cam_map_size(model: nn.Module, image_size: int) -> tuple[int, int]:
    """``(h, w)`` of the Grad-CAM layer's map for ``image_size`` px inputs (one dummy forward)."""
    shape: list[tuple[int, int]] = []
    hook = target_layer(model).register_forward_hook(lambda m, i, o: shape.append(tuple(o.shape[-2:])))
    try:
        was = model.training
        model.eval()
        model._features(torch.zeros(1, 3, image_size, image_size, device=model_device(model)), from_trunk=False)
        model.train(was)
    finally:
        hook.remove()
    return shape[0]


def caption_log_likelihood(decoder: nn.Module, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """``log p(caption | image)`` per image ``(B,)``: teacher-forced decoder log-probs summed up to and incl. EOS.

    ``captions`` are ids ``(B, T)`` as the project stores them (tokens, EOS, then
    PAD); PAD positions are masked. The decoder must be in eval mode (no
    scheduled sampling, no dropout).
    """
    logits = decoder(features, captions)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, captions.unsqueeze(-1)).squeeze(-1)
    return (logp * (captions != PAD)).sum(dim=1)


class HeadOutput(nn.Module):
    """``forward(images) ->`` the output of ONE head of ``model``, the model that ``GradCAM`` explains.

    * ``"coarse"`` / ``"fine"``: the logits ``(B, C)``, exactly ``model(images)[task]``;
    * ``"caption"``: ``(B, 1)``, the log-likelihood of the greedy caption
      (:func:`caption_log_likelihood`), or of ``captions`` when they are set.

    ``images`` are normalised full images (``from_trunk=False``).
    """

    def __init__(self, model: nn.Module, task: str, captions: torch.Tensor | None = None, max_len: int = 15):
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; use one of {list(TASKS)}")
        if task not in model.tasks:
            raise ConfigError(f"this model has no {task!r} head (tasks {list(model.tasks)})")
        self.model = model
        self.task = task
        self.captions = captions
        self.max_len = int(max_len)
        self.input_grad = not any(p.requires_grad for p in target_layer(model).parameters())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_grad and not images.requires_grad:
            images = images.detach().requires_grad_(True)
        if self.task != "caption":
            return self.model(images)[self.task]
        feats = self.model._features(images, from_trunk=False)
        ids = self.captions
        if ids is None:
            with torch.no_grad():
                ids = self.model.decoder.greedy(feats.detach(), self.max_len)[0]
        return caption_log_likelihood(self.model.decoder, feats, ids.to(feats.device).long()).unsqueeze(1)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _class_targets(targets, n: int) -> list[int] | None:
    if targets is None:
        return None
    if np.ndim(targets) == 0:
        return [int(targets)] * n
    out = [int(t) for t in np.asarray(targets).reshape(-1)]
    if len(out) != n:
        raise ConfigError(f"{len(out)} target classes for {n} images; give one class per image or a single int")
    return out


def _check_hooks(ag, task: str, cause: BaseException | None = None) -> None:
    """The target layer's forward and gradient hooks must each have fired exactly once."""
    if len(ag.activations) != 1 or len(ag.gradients) != 1:
        raise RuntimeError(
            f"Grad-CAM hooks on the target layer fired {len(ag.activations)} (forward) and {len(ag.gradients)} "
            f"(gradient) times for task {task!r}; expected once each (does the head's score depend on the "
            f"target layer's output?)") from cause


def cam_maps(model: nn.Module, images_uint8, task: str, targets=None, batch_size: int = 16,
             max_len: int = 15) -> np.ndarray:
    """Grad-CAM maps ``[N, H, W]`` (float32, min-max scaled per image to [0, 1]) of head ``task``.

    ``images_uint8`` are ``[N, H, W, 3]``, normalised here as the encoder
    expects. ``targets``: for T1/T2 a class index (int, or one per image; default: the
    predicted class); for T3 caption ids ``[N, T]`` (tokens, EOS, PAD; default:
    the greedy caption). The model is left in the train/eval mode it had.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images_uint8 = np.asarray(images_uint8)
    n = len(images_uint8)
    if task == "caption":
        caps = None if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.long)
        if caps is not None and (caps.dim() != 2 or len(caps) != n):
            raise ConfigError(f"caption targets must be ids of shape [N={n}, T], got {tuple(caps.shape)}")
        classes = None
    else:
        caps, classes = None, _class_targets(targets, n)
    wrapper = HeadOutput(model, task, max_len=max_len)
    was_training = model.training
    cam = GradCAM(model=wrapper, target_layers=[target_layer(model)])
    out: list[np.ndarray] = []
    try:
        for s in range(0, n, batch_size):
            x = preprocess(images_uint8[s:s + batch_size], model.encoder_spec, device=model_device(model))
            wrapper.captions = None if caps is None else caps[s:s + batch_size]
            tg = None
            if task == "caption":
                tg = [ClassifierOutputTarget(0)] * len(x)
            elif classes is not None:
                tg = [ClassifierOutputTarget(c) for c in classes[s:s + batch_size]]
            ag = cam.activations_and_grads
            try:
                maps = cam(input_tensor=x, targets=tg)
            except (AttributeError, TypeError, IndexError) as e:  # grad-cam's own error when a hook did not fire
                _check_hooks(ag, task, e)
                raise
            _check_hooks(ag, task)
            out.append(np.asarray(maps, dtype=np.float32))
    finally:
        cam.activations_and_grads.release()
        wrapper.captions = None
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    maps = np.concatenate(out) if out else np.zeros((0,) + images_uint8.shape[1:3], np.float32)
    return np.clip(np.nan_to_num(maps, nan=0.0), 0.0, 1.0)
