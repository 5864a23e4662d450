"""Teacher outputs of one or more teachers on a set of images, indexed by batch (docs/design.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TeacherSet:
    """Cached outputs of one or more teachers on images ``idx`` (rows aligned with ``idx``)."""

    idx: np.ndarray
    outputs: dict[str, dict[str, np.ndarray]]  # teacher name -> task -> [n_views, n, ...] float16
    prefix: np.ndarray | None                   # [n_views, n, T] caption the teachers were forced with
    n_images: int

    def __post_init__(self):
        self.pos = np.full(self.n_images, -1, dtype=np.int64)
        self.pos[self.idx] = np.arange(len(self.idx))

    def rows(self, idx: torch.Tensor) -> np.ndarray:
        r = self.pos[idx.numpy()]
        if (r < 0).any():
            raise ValueError("an image outside the teacher cache was requested")
        return r

    def for_task(self, task: str) -> list[str]:
        return [name for name, out in self.outputs.items() if task in out]

    def batch(self, tasks, idx: torch.Tensor, view_ids: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        r, v = self.rows(idx), view_ids.numpy()
        return {t: [torch.from_numpy(self.outputs[n][t][v, r]) for n in self.for_task(t)] for t in tasks}
