"""Model inputs for every (image, view): cached frozen-trunk outputs, or uint8 images for full fine-tuning.

With a frozen trunk (``trainable = k``) the trunk runs once per image and view
(:mod:`repro.models.featcache`) and training touches only the trainable top — the
whole study then fits a 2-core CPU. With ``trainable = "all"`` the decoded
uint8 images are normalised (and flipped for the ``hflip`` view) on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from repro.models.encoders import preprocess


def image_cache_key(prepared, size: int, hash_root=None) -> str:
    """Identity of the image-cache content: the ordered (image, file SHA-256) list and the resolution
    (:func:`repro.data.imagecache.cache_key`), so other bytes under the same names get other features;
    ``hash_root``: the cache folder holding the per-file digests."""
    from repro.data.imagecache import cache_key

    return f"{prepared.dataset_name}-{size}-{cache_key(prepared.manifest, size, hash_root)}"


class InputBank:
    """Inputs of all images in manifest order, per view, ready to be indexed by batch."""

    def __init__(self, prepared, model, views=("orig", "hflip"), device: torch.device | str = "cpu",
                 cache_root=None, precision: str = "fp32", fold_bn: bool = False):
        if prepared.images is None:
            raise ValueError("prepare_data(..., with_images=True) is needed to build model inputs")
        self.views = tuple(views)
        self.device = torch.device(device)
        self.from_trunk = model.trainable != "all"
        self.spec = model.encoder_spec
        self.cache_record = None
        if self.from_trunk:
            from repro.models.featcache import trunk_feature_cache

            size = int(prepared.images.shape[1])
            feats = trunk_feature_cache(
                model, prepared.images, views=self.views,
                cache_key=image_cache_key(prepared, size, cache_root), root=cache_root, precision=precision,
                fold_bn=fold_bn,
            )
            self.cache_record = feats.record()  # how the cache was built (notebook 00 reports it)
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

    @classmethod
    def from_maps(cls, maps: dict[str, torch.Tensor], spec, device: torch.device | str = "cpu") -> "InputBank":
        """A bank over trunk outputs already in memory, ``{view: [N, C, h, w]}`` (rows indexed 0..N-1)."""
        bank = cls.__new__(cls)
        bank.views, bank.device, bank.from_trunk, bank.spec = tuple(maps), torch.device(device), True, spec
        bank.data = {v: torch.as_tensor(m) for v, m in maps.items()}
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


def random_map_flips(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation on cached trunk maps ``[B, C, h, w]``: each map flipped left-right with
    probability ``prob`` (drawn from ``generator``). Vectors (pooled, tapped features) are returned as they are.

    A flipped map is not the trunk's map of the flipped image (the learned filters are not mirror-symmetric:
    that one is the cached ``hflip`` view); it is an extra perturbation of the trained stages' input."""
    if x.dim() != 4 or prob <= 0:
        return x
    flip = (torch.rand(x.shape[0], generator=generator) < float(prob)).to(x.device)
    if not bool(flip.any()):
        return x
    return torch.where(flip.view(-1, 1, 1, 1), torch.flip(x, dims=[3]), x)
