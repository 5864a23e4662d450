"""Model inputs for every (image, view): cached frozen-trunk outputs, or uint8 images for full fine-tuning.

With a frozen trunk (``trainable = k``) the trunk runs once per image and view
(:mod:`repro.models.featcache`) and training touches only the trainable top — the
whole study then fits a 2-core CPU. With ``trainable = "all"`` the decoded
uint8 images are normalised (and flipped for the ``hflip`` view) on the device.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from repro.models.encoders import preprocess


def image_cache_key(prepared, size: int) -> str:
    """Identity of the image-cache content: the ordered image list and the resolution."""
    h = hashlib.sha1("\n".join(prepared.manifest["image"].astype(str)).encode()).hexdigest()[:12]
    return f"{prepared.dataset_name}-{size}-{h}"


class InputBank:
    """Inputs of all images in manifest order, per view, ready to be indexed by batch."""

    def __init__(self, prepared, model, views=("orig", "hflip"), device: torch.device | str = "cpu",
                 cache_root=None, precision: str = "fp32"):
        if prepared.images is None:
            raise ValueError("prepare_data(..., with_images=True) is needed to build model inputs")
        self.views = tuple(views)
        self.device = torch.device(device)
        self.from_trunk = model.trainable != "all"
        self.spec = model.encoder_spec
        if self.from_trunk:
            from repro.models.featcache import trunk_feature_cache

            size = int(prepared.images.shape[1])
            feats = trunk_feature_cache(
                model, prepared.images, views=self.views,
                cache_key=image_cache_key(prepared, size), root=cache_root, precision=precision,
            )
            # read into memory once: batches then index RAM, not the memory-mapped file
            self.data = {v: torch.from_numpy(np.array(feats[v])) for v in self.views}
        else:
            self.data = {"uint8": torch.from_numpy(np.asarray(prepared.images))}

    @classmethod
    def from_images(cls, images: np.ndarray, spec, views=("orig",), device: torch.device | str = "cpu") -> "InputBank":
        """A bank that feeds whole images through the full network (no trunk cache), e.g. for evaluation."""
        bank = cls.__new__(cls)
        bank.views, bank.device, bank.from_trunk, bank.spec = tuple(views), torch.device(device), False, spec
        bank.data = {"uint8": torch.from_numpy(np.asarray(images))}
        return bank

    def __len__(self) -> int:
        first = next(iter(self.data.values()))
        return int(first.shape[0])

    def batch(self, idx: torch.Tensor, view_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Inputs for images ``idx``; ``view_ids[i]`` indexes ``self.views`` (default: all ``orig``)."""
        idx = idx.long()
        if view_ids is None:
            view_ids = torch.zeros_like(idx)
        if self.from_trunk:
            x = None
            for vi, view in enumerate(self.views):
                sel = view_ids == vi
                if not bool(sel.any()):
                    continue
                part = self.data[view].index_select(0, idx[sel])
                if x is None:
                    x = torch.empty((len(idx),) + tuple(part.shape[1:]), dtype=part.dtype)
                x[sel] = part
            return x.to(self.device, non_blocking=True).float()
        raw = self.data["uint8"].index_select(0, idx).to(self.device, non_blocking=True)
        x = preprocess(raw, self.spec)
        flip = torch.tensor([self.views[int(v)] == "hflip" for v in view_ids], device=x.device)
        if bool(flip.any()):
            x[flip] = torch.flip(x[flip], dims=[3])
        return x.contiguous(memory_format=torch.channels_last)
