"""Frozen-trunk output cache (docs/design.md §3): the trunk runs once per (image, view), training runs only the top.

Files live under ``cache_dir()/features/<encoder>-k<k>[-taps.<stages>]-<trunk>-<H>px-<images>/<view>.npy``
where ``<trunk>`` fingerprints the trunk's actual weights (so a pretrained, a
random and a fine-tuned trunk never share a file) and ``<images>`` is the
image-cache key (:func:`repro.models.inputbank.image_cache_key`: the ordered image list with each
file's SHA-256), so other images under the same names never reuse another data set's features. Each view is one ``.npy`` array ``[N, C, h, w]`` (float16 by
default), opened as a copy-on-write memory map, written atomically (temp file +
rename) and reused when present.

A trunk with ``taps`` (the ``quick`` profile) stores one pooled vector per image and view:
EfficientNet-Lite0 tapped at block4-6 -> 2 x (112 + 192 + 320) = 1,248 values (2.5 KB; 5,503
ODIR images: 14 MB per view), whatever the image size.

On-disk size of a map = N x C x h x w x 2 bytes per view (float16). EfficientNet-Lite0
with ``trainable=1`` (trunk = stem..block6, 320 channels at H/32):
160 px -> 320 x 5 x 5 = 16 KB per image and view (5,503 ODIR images: 88 MB per
view); 224 px -> 320 x 7 x 7 = 31 KB (173 MB per view). ResNet-50 with
``trainable=1`` (trunk = up to layer3, 1024 channels at H/16) at 224 px:
1024 x 14 x 14 = 392 KB per image and view (2.2 GB per view).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from repro.device import usable_cores
from repro.errors import ConfigError
from repro.names import PRECISIONS
from repro.io import atomic_path, atomic_write_text, clean_stale_temps, reserve_space
from repro.models.encoders import EncoderSpec, FrozenTrunk, fold_batchnorm, preprocess, split_encoder
from repro.paths import cache_dir
from repro.phases import FEATURE_BUILD, phase
from repro.progress import tqdm_class

VIEWS = ("orig", "hflip")


def trunk_fingerprint(trunk: torch.nn.Module) -> str:
    """Short hash of the trunk's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha1()
    for name, t in trunk.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        a = t.detach().to("cpu", torch.float32).contiguous().numpy()
        h.update(f"{name}{tuple(a.shape)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def images_fingerprint(images: np.ndarray) -> str:
    """Content hash of an image array (used when no ``cache_key`` is given)."""
    h = hashlib.sha1(str(tuple(images.shape)).encode())
    step = 256
    for i in range(0, len(images), step):
        h.update(np.ascontiguousarray(images[i:i + step]).tobytes())
    return h.hexdigest()[:12]


def _resolve(model_or_spec, trainable) -> tuple[FrozenTrunk, EncoderSpec, str | int]:
    if isinstance(model_or_spec, EncoderSpec):
        if trainable is None:
            raise ConfigError("trunk_feature_cache(spec, ...) needs trainable=k to know where the trunk ends")
        trunk, _ = split_encoder(model_or_spec, trainable)
        return trunk, model_or_spec, trainable
    trunk = getattr(model_or_spec, "trunk", None)
    spec = getattr(model_or_spec, "encoder_spec", None)
    if not isinstance(trunk, FrozenTrunk) or spec is None:
        raise ConfigError(f"trunk_feature_cache needs an MTLNet or an EncoderSpec, got {type(model_or_spec).__name__}")
    return trunk, spec, model_or_spec.trainable


FOLD_TAG = "bnfold"  # in the folder name of features computed with the BatchNorm folded into the convolutions


class CachedFeatures(dict):
    """``{view: array}`` as :func:`trunk_feature_cache` returns it, with the cache ``folder`` it was read from."""

    def __init__(self, *args, folder: Path, **kw):
        super().__init__(*args, **kw)
        self.folder = Path(folder)

    def record(self) -> dict:
        """How this cache was built, from each view's metadata: ``build_s`` (seconds of the build, summed over
        the views, whenever it ran), precision, BatchNorm folding, threads and the folder's name."""
        metas = {}
        for view in self:
            meta = self.folder / f"{view}.json"
            metas[view] = json.loads(meta.read_text()) if meta.exists() else {}
        first = next(iter(metas.values()), {})
        return {"folder": self.folder.name, "views": list(self),
                "build_s": round(sum(float(m.get("seconds", 0.0)) for m in metas.values()), 2),
                "build_s_per_view": {v: m.get("seconds") for v, m in metas.items()},
                "precision": first.get("precision"), "batchnorm_folded": first.get("batchnorm_folded", False),
                "threads": first.get("threads"), "images": first.get("images")}


@contextlib.contextmanager
def batch_workers(device: torch.device):
    """Yield how many batches run at once: on a CPU one per core this process may use (its CPU affinity), each
    on one torch thread; elsewhere one. The torch thread count is restored afterwards."""
    if device.type != "cpu":
        yield 1
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield usable_cores()
    finally:
        torch.set_num_threads(before)


def native_bf16(device=None) -> bool:
    """Whether bf16 arithmetic is native on ``device``: a CUDA device, or a CPU whose oneDNN has bf16 kernels."""
    if device is not None and torch.device(device).type == "cuda":
        return True
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check else False
    except Exception:  # noqa: BLE001 - an older build without the check: treat as not native
        return False


def feature_dir(spec: EncoderSpec, trunk: FrozenTrunk, trainable, size: tuple[int, int], cache_key: str,
                root: Path | None = None, precision: str = "fp32", fold_bn: bool = False) -> Path:
    """Folder of the cached trunk outputs for this (encoder, trunk weights, k, image size, image cache,
    precision, BatchNorm folded or not); fp32 features keep the folder name without a precision part, and
    features of a trunk with its BatchNorm folded (:func:`~repro.models.encoders.fold_batchnorm`) carry
    ``-bnfold``."""
    h, w = size
    px = f"{h}px" if h == w else f"{h}x{w}px"
    safe_key = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(cache_key))
    taps = f"-taps.{'.'.join(trunk.taps)}" if getattr(trunk, "taps", None) else ""
    prec = ("" if precision == "fp32" else f"-{precision}") + (f"-{FOLD_TAG}" if fold_bn else "")
    name = f"{spec.name}-k{trainable}{taps}-{trunk_fingerprint(trunk)}-{px}{prec}-{safe_key}"
    return (root or cache_dir()) / "features" / name


def trunk_feature_cache(model_or_spec, images: np.ndarray, views: tuple[str, ...] = VIEWS, batch_size: int = 64,
                        cache_key: str | None = None, dtype=np.float16, trainable: str | int | None = None,
                        device: torch.device | str | None = None, root: Path | None = None,
                        progress: bool = True, precision: str = "fp32",
                        fold_bn: bool = False) -> "CachedFeatures":
    """Frozen-trunk outputs ``{view: array [N, C, h, w]}`` of uint8 ``images [N, H, W, 3]``, computed once and cached.

    ``model_or_spec`` is an ``MTLNet`` (its trunk, encoder and ``trainable``) or an
    ``EncoderSpec`` together with ``trainable=k``. View ``hflip`` is the trunk
    output of the horizontally flipped images. The trunk runs on the device
    of its parameters unless ``device`` is given. With ``trainable="all"`` there is
    no trunk and nothing to cache: that is a :class:`ConfigError`. ``precision="bf16"`` runs the trunk under
    bf16 autocast (stored as ``dtype`` all the same); the precision is part of the cache folder's name.
    ``fold_bn=True`` runs a copy of the trunk with each BatchNorm folded into its convolution (the same function up
    to float rounding, about 1.5x as fast on a CPU); that too is part of the folder's name. The build uses every
    core this process may use, whatever the run's thread count (:func:`batch_workers`): batches run in parallel,
    each on one torch thread, so the stored features do not depend on the number of cores
    (``tests/test_models.py``).
    """
    trunk, spec, k = _resolve(model_or_spec, trainable)
    if k == "all" or len(trunk) == 0:
        raise ConfigError(
            f"trainable={k!r} leaves no frozen trunk for {spec.name}: there is nothing to cache; "
            "feed normalised images to the model instead (from_trunk=False)"
        )
    if precision not in PRECISIONS:
        raise ConfigError(f"feature precision {precision!r}: use one of {list(PRECISIONS)} (profile setting feature_precision)")
    bad = [v for v in views if v not in VIEWS]
    if bad:
        raise ConfigError(f"unknown view(s) {bad}; allowed: {list(VIEWS)}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
    n, hgt, wid = (int(s) for s in images.shape[:3])
    if n == 0:
        raise ConfigError("no images to encode (an empty image array)")
    key = cache_key if cache_key is not None else f"img{images_fingerprint(images)}"
    folder = feature_dir(spec, trunk, k, (hgt, wid), key, root, precision, fold_bn)
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder)  # what a killed build left behind
    if device is None:
        p = next(trunk.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)

    out = CachedFeatures(folder=folder)
    for view in views:
        path = folder / f"{view}.npy"
        if not path.exists():
            if precision == "bf16" and not native_bf16(device):
                warnings.warn("feature_precision='bf16' on a CPU without native bf16 (AVX-512 BF16 / AMX): PyTorch "
                              "emulates it, far slower than fp32; use feature_precision='fp32' here", stacklevel=2)
            with phase(FEATURE_BUILD):
                _compute(trunk, spec, images, view, path, batch_size, np.dtype(dtype), device, progress, precision,
                         fold_bn)
        arr = np.load(path, mmap_mode="c")
        if arr.shape[0] != n:
            raise ConfigError(f"cached features {path} hold {arr.shape[0]} rows, expected {n}; delete the file")
        out[view] = arr
    return out


def _compute(trunk: FrozenTrunk, spec: EncoderSpec, images: np.ndarray, view: str, path: Path, batch_size: int,
             dtype: np.dtype, device: torch.device, progress: bool, precision: str = "fp32",
             fold_bn: bool = False) -> None:
    """Write the trunk outputs of one view to ``path`` (atomically). On a CPU the batches run on one Python thread
    per core, each with one torch thread (about 1.5x the throughput of one batch at a time on every core)."""
    n = images.shape[0]
    net = fold_batchnorm(trunk) if fold_bn else trunk.eval()
    t0 = time.perf_counter()
    starts = list(range(0, n, batch_size))

    def run(start: int) -> np.ndarray:
        chunk = np.asarray(images[start:start + batch_size])
        if view == "hflip":
            chunk = chunk[:, :, ::-1, :]
        cast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
        with torch.inference_mode(), cast:  # both are per thread
            return net(preprocess(chunk, spec, device=device)).float().cpu().numpy()

    bar = tqdm_class()(total=len(starts), desc=f"trunk {spec.name} {view} {images.shape[1]}px",
                       disable=not progress, leave=False, unit="batch")
    arr = None
    with atomic_path(path) as tmp, batch_workers(device) as workers, bar, ThreadPoolExecutor(workers) as pool:
        for start, y in zip(starts, pool.map(run, starts)):
            if arr is None:   # the first batch gives the output's shape
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n,) + y.shape[1:])
                reserve_space(tmp, path)
            arr[start:start + len(y)] = y
            bar.update(1)
        arr.flush()
        shape = arr.shape
        del arr
    meta = {"encoder": spec.name, "weights": spec.weights, "view": view, "shape": list(shape), "dtype": str(dtype),
            "images": [int(s) for s in images.shape], "precision": precision, "batch_size": batch_size,
            "batchnorm_folded": bool(fold_bn),
            "threads": workers, "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
