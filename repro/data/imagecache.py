"""Decode-once image cache (docs/design.md §2): every JPEG is decoded and resized once per resolution.

The cache is a ``.npy`` file (uint8, ``[N, size, size, 3]``, manifest order)
opened as a copy-on-write memory map (writable in memory, so torch can wrap it; the file never changes), under ``<cache_dir>/images/``. Its name holds
the size and a hash of the ordered image list with each file's SHA-256 (:func:`repro.data.identity.file_digests`),
so other bytes under the same name, or another manifest, get a new cache, while a copy of the same images
shares it. A JSON file beside it records the build time, the size in bytes, the bad images and how many
images of each decoded mode were converted (``modes``).

Decoding is faithful to the file's bit depth: 16-bit grayscale (``I;16``, or ``I`` with values up to
65,535) is divided by 257 (65,535 -> 255), not clipped at 255; a float image (``F``) in [0, 1] is
multiplied by 255; other modes (palette, grayscale, CMYK, RGBA, ...) go through Pillow's RGB conversion.
The file is written to a space reserved on disk first (:func:`repro.io.reserve_space`), so a full disk
is one error naming the folder and the bytes needed, never a SIGBUS while the memory map is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from repro.data.identity import file_digests
from repro.errors import DataError
from repro.io import atomic_path, clean_stale_temps, reserve_space, write_json
from repro.paths import cache_dir
from repro.progress import tqdm_class

#: below this many images one process decodes them (starting a pool costs more than it saves)
POOL_THRESHOLD = 400


WORKERS = 2


#: 16-bit integer modes Pillow opens (``I`` holds 16-bit PNGs in older Pillow versions, and 32-bit data)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def cache_key(manifest: pd.DataFrame, size: int, hash_root: str | os.PathLike | None = None) -> str:
    """Hash of the ordered (image, file SHA-256) list and the size (16 hex digits); ``hash_root``: the cache
    folder holding the per-file digests (:func:`repro.data.identity.file_digests`)."""
    h = hashlib.sha256(f"v2|{int(size)}".encode())
    digests = file_digests(manifest["path"].astype(str).tolist(), hash_root)
    for image, digest in zip(manifest["image"].astype(str), digests):
        h.update(f"|{image}|{digest}".encode())
    return h.hexdigest()[:16]


def cache_paths(manifest: pd.DataFrame, size: int, cache_root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(array .npy, info .json)`` paths of the cache for ``manifest`` at ``size`` px."""
    folder = Path(cache_root) if cache_root is not None else cache_dir() / "images"
    stem = f"{int(size)}px_n{len(manifest)}_{cache_key(manifest, size, folder.parent)}"
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def to_rgb8(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB, scaled by its bit depth (see the module docstring); ValueError for pixel values
    outside the range its mode declares (a 32-bit or float image with no known scale)."""
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        top = 1.0 if im.mode == "F" else 65535.0
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= top):
            raise ValueError(f"mode {im.mode} image with values {lo:g}..{hi:g} outside 0..{top:g}: no known bit "
                             "depth to scale it to 8 bits; save it as an 8-bit or 16-bit image")
        a8 = np.rint(a * (255.0 / top)).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def decode_image(path: str, size: int) -> np.ndarray:
    """One image as uint8 ``[size, size, 3]`` RGB (:func:`to_rgb8`), resized with antialiased bilinear filtering.

    Raises OSError/ValueError (wrapped by the caller) for an unreadable or corrupt file.
    """
    return decode_with_mode(path, size)[0]


def decode_with_mode(path: str, size: int) -> tuple[np.ndarray, str]:
    """:func:`decode_image` and the mode the file was decoded from (``"RGB"``, ``"L"``, ``"I;16"``, ...)."""
    with Image.open(path) as im:
        mode = im.mode
        im = to_rgb8(im)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.shape != (size, size, 3):
        raise ValueError(f"decoded shape {arr.shape}")
    return arr, mode


def _decode_job(args: tuple[int, str, int]) -> tuple[int, np.ndarray | None, str]:
    i, path, size = args
    try:
        arr, mode = decode_with_mode(path, size)
        return i, arr, mode
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        return i, None, f"{type(e).__name__}: {e}"


def _build(manifest: pd.DataFrame, size: int, npy: Path, info: Path, skip_bad_images: bool,
           workers: int) -> list[str]:
    n = len(manifest)
    paths = manifest["path"].astype(str).tolist()
    images = manifest["image"].astype(str).tolist()
    bad: list[str] = []
    t0 = time.perf_counter()
    with atomic_path(npy) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        reserve_space(tmp, npy)
        jobs = [(i, p, size) for i, p in enumerate(paths)]
        bar = tqdm_class()(total=n, desc=f"decoding {n} images at {size}px", unit="img", mininterval=1.0)
        if workers > 1 and n >= POOL_THRESHOLD:
            with get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
                results = pool.imap_unordered(_decode_job, jobs, chunksize=64)
                bad_rows, modes = _consume(results, arr, bar)
        else:
            bad_rows, modes = _consume(map(_decode_job, jobs), arr, bar)
        bar.close()
        if bad_rows and not skip_bad_images:
            i, why = bad_rows[0]
            more = f" ({len(bad_rows) - 1} more bad image(s))" if len(bad_rows) > 1 else ""
            raise DataError(
                f"cannot decode image file {paths[i]} ({why}){more}. Replace the file, remove it from the data, "
                "or pass skip_bad_images=True / --skip-bad-images to skip bad images (they are then listed "
                "in the data report)."
            )
        bad = [images[i] for i, _ in bad_rows]
        arr.flush()
        del arr
        os.chmod(tmp, 0o644)
    seconds = time.perf_counter() - t0
    write_json(info, {
        "size": int(size), "images": n, "bytes": npy.stat().st_size, "build_seconds": round(seconds, 3),
        "workers": workers if n >= POOL_THRESHOLD else 1, "bad_images": bad,
        "bad_reasons": {images[i]: why for i, why in bad_rows}, "modes": modes,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return bad


def _consume(results, arr: np.ndarray, bar) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """Write decoded images into ``arr``: ``(sorted [(row, why)] of bad images, {decoded mode: images})``."""
    bad: list[tuple[int, str]] = []
    modes: dict[str, int] = {}
    for i, img, what in results:
        if img is None:
            arr[i] = 0
            bad.append((i, what))
        else:
            arr[i] = img
            modes[what] = modes.get(what, 0) + 1
        bar.update(1)
    bad.sort()
    return bad, dict(sorted(modes.items()))


def load_image_cache(manifest: pd.DataFrame, size: int, skip_bad_images: bool = False,
                     cache_root: str | os.PathLike | None = None,
                     workers: int = WORKERS) -> tuple[np.ndarray, list[str]]:
    """The images of ``manifest`` as a copy-on-write uint8 memmap ``[N, size, size, 3]`` in manifest order.

    Built on first use (a progress bar, plain lines in a log; a pool of ``workers`` processes,
    temp file + rename), reused afterwards. A corrupt or unreadable JPEG is a
    :class:`DataError` naming the file unless ``skip_bad_images``; then its row
    is all zeros and its image name is returned in ``bad``.
    """
    if len(manifest) == 0:
        raise DataError("cannot cache the images of an empty manifest.")
    size = int(size)
    npy, info = cache_paths(manifest, size, cache_root)
    clean_stale_temps(npy.parent)  # what a killed build left behind
    if npy.exists() and info.exists():
        meta = json.loads(info.read_text(encoding="utf-8"))
        bad = list(meta.get("bad_images", []))
        if bad and not skip_bad_images:
            reasons = meta.get("bad_reasons", {})
            path = dict(zip(manifest["image"].astype(str), manifest["path"].astype(str)))[bad[0]]
            raise DataError(
                f"cannot decode image file {path} ({reasons.get(bad[0], 'corrupt')}). Replace the file, remove it "
                "from the data, or pass skip_bad_images=True / --skip-bad-images to skip bad images."
            )
    else:
        bad = _build(manifest, size, npy, info, skip_bad_images, workers)
    arr = np.load(npy, mmap_mode="c")
    if arr.shape != (len(manifest), size, size, 3) or arr.dtype != np.uint8:
        raise DataError(f"image cache {npy} has shape {arr.shape} {arr.dtype}, expected "
                        f"{(len(manifest), size, size, 3)} uint8; delete it to have it rebuilt.")
    return arr, bad


def cache_info(manifest: pd.DataFrame, size: int, cache_root: str | os.PathLike | None = None) -> dict | None:
    """The JSON record of an existing cache (build time, bytes, bad images), or ``None``."""
    _, info = cache_paths(manifest, size, cache_root)
    return json.loads(info.read_text(encoding="utf-8")) if info.exists() else None
