"""Teacher outputs computed once per (teacher checkpoint, image, view) and stored compactly (float16).

Teachers never run inside the student's loop. A cache file is keyed by the
teacher checkpoint's content hash, the caption prefix it was forced with and
the image set, so a retrained teacher invalidates it automatically.
For captions the stored logits are per decoding step over a teacher-forced
prefix: the true caption on labeled images, the main teacher's greedy caption
on unlabeled ones (docs/design.md §4).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from repro.device import autocast
from repro.io import atomic_save
from repro.phases import TEACHER_CACHES, phase


def file_hash(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def array_hash(a: np.ndarray, n: int = 12) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:n]


@torch.inference_mode()
def compute_outputs(model, bank, idx: np.ndarray, prefix: np.ndarray | None = None,
                    batch_size: int = 256) -> dict[str, np.ndarray]:
    """Eval-mode logits of ``model`` on images ``idx`` for every view of ``bank``.

    Returns task -> float16 array ``[n_views, len(idx), ...]``; ``prefix``
    (``[n_views, len(idx), T]`` token ids) is the caption the decoder is forced with.
    """
    model.eval()
    n_views = len(bank.views)
    out: dict[str, list[list[torch.Tensor]]] = {t: [[] for _ in range(n_views)] for t in model.tasks}
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    for vi in range(n_views):
        for start in range(0, len(idx_t), batch_size):
            b = idx_t[start:start + batch_size]
            x = bank.batch(b, torch.full_like(b, vi))
            caps = None
            if "caption" in model.tasks:
                caps = torch.as_tensor(prefix[vi, start:start + batch_size], dtype=torch.long, device=bank.device)
            with autocast(bank.device):
                o = model(x, captions=caps, from_trunk=bank.from_trunk)
            for t in model.tasks:
                out[t][vi].append(o[t].float().cpu().half())
    return {t: torch.stack([torch.cat(chunks) for chunks in per_view]).numpy() for t, per_view in out.items()}


@torch.inference_mode()
def greedy_prefix(model, bank, idx: np.ndarray, max_len: int, batch_size: int = 256) -> np.ndarray:
    """The main teacher's greedy caption of every image and view: ``[n_views, len(idx), max_len]`` int."""
    model.eval()
    res = []
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    for vi in range(len(bank.views)):
        chunks = []
        for start in range(0, len(idx_t), batch_size):
            b = idx_t[start:start + batch_size]
            with autocast(bank.device):
                ids = model.generate(bank.batch(b, torch.full_like(b, vi)), from_trunk=bank.from_trunk, max_len=max_len)
            ids = ids[0] if isinstance(ids, tuple) else ids
            ids = ids.cpu()
            if ids.shape[1] < max_len:
                ids = torch.nn.functional.pad(ids, (0, max_len - ids.shape[1]))
            chunks.append(ids)
        res.append(torch.cat(chunks))
    return torch.stack(res).numpy().astype(np.int64)


def cached_outputs(cache_dir: Path, ckpt: Path, model, bank, idx: np.ndarray, prefix: np.ndarray | None,
                   prefix_tag: str) -> dict[str, np.ndarray]:
    """Load or compute (and store, atomically) the outputs of the teacher in ``ckpt``.

    A teacher without the caption task never reads the prefix, so its file does not depend on it: the
    τ study (no prefix) and M3 (the M2's greedy prefix) share the T1-/T2-only teachers' outputs."""
    tag = prefix_tag if "caption" in model.tasks else "noprefix"
    key = f"{file_hash(ckpt)}-{tag}-{array_hash(idx)}-{'_'.join(bank.views)}"
    path = Path(cache_dir) / f"{key}.npz"
    with phase(TEACHER_CACHES):
        if path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        out = compute_outputs(model, bank, idx, prefix)
        atomic_save(path, lambda f: np.savez(f, **out))
    return out


def cached_greedy_prefix(cache_dir: Path, ckpt: Path, model, bank, idx: np.ndarray,
                         max_len: int) -> tuple[np.ndarray, str]:
    """Load or compute (and store) the greedy captions of the teacher in ``ckpt``; returns them and their tag."""
    tag = f"greedy{file_hash(ckpt)}"
    path = Path(cache_dir) / f"prefix-{tag}-{array_hash(idx)}-{'_'.join(bank.views)}.npy"
    with phase(TEACHER_CACHES):
        if path.exists():
            return np.load(path), tag
        arr = greedy_prefix(model, bank, idx, max_len=max_len)
        atomic_save(path, lambda f: np.save(f, arr))
    return arr, tag
