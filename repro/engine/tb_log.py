"""TensorBoard curves of training, opt-in: ``--tensorboard DIR`` (``$REPRO_TENSORBOARD``, which a sweep's
kernels and jobs inherit) or the profile's ``tensorboard`` setting (a folder relative to the results root).

One run directory per trained model, ``<DIR>/<profile>/p<p>/seed<seed>/<stage>-<name>``, and per epoch
(step = epoch) the values of that epoch's row of the result JSON's ``history``: every ``train/<term>``
of the loss, every validation value (``val/score`` and ``val/<task>/<metric>`` of each trained task;
epochs without validation have none) and the learning rate (``lr``; ``lr/encoder`` for the encoder
top's own group). The result JSON stays the source of truth: the curves are the same numbers, written
while training runs so that a long job can be watched (``tensorboard --logdir DIR``). A model trained
again (after a kill, or ``--force``) replaces the curves of its earlier attempt.
"""

from __future__ import annotations

import importlib.util
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from repro.errors import ConfigError
from repro.names import TENSORBOARD_ENV

EVENTS_GLOB = "events.out.tfevents.*"


def require_tensorboard() -> None:
    """A ConfigError saying how to install TensorBoard when it is missing (it writes the event files)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or pip install -e '.[tensorboard]'), or run without --tensorboard")


def tensorboard_root(profile: Any, results_dir: str | os.PathLike) -> Path | None:
    """Where the curves go: ``$REPRO_TENSORBOARD``, else the profile's ``tensorboard`` setting (relative to the
    results root, the parent of ``results_dir``); ``None``: off."""
    given = os.environ.get(TENSORBOARD_ENV)
    if given:
        return Path(given).expanduser()
    setting = getattr(profile, "tensorboard", None)
    if not setting:
        return None
    folder = Path(setting).expanduser()
    return folder if folder.is_absolute() else Path(results_dir).expanduser().parent / folder


def run_dir(root: str | os.PathLike, profile: str, p: int, seed: int, stage: str, name: str) -> Path:
    """The run directory of one model: ``<root>/<profile>/p<p>/seed<seed>/<stage>-<name>``."""
    return Path(root) / profile / f"p{p}" / f"seed{seed}" / f"{stage}-{name}"


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The values of a history row that become scalars: every finite number but the epoch."""
    return {k: float(v) for k, v in row.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class EpochLog:
    """A ``SummaryWriter`` on one run directory; called with each epoch's history row."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(EVENTS_GLOB):  # an earlier attempt of this model: its curves are void
            old.unlink()
        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))

    def __call__(self, row: dict[str, Any]) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, int(row["epoch"]))
        self.writer.flush()   # visible to a watching TensorBoard at once

    def close(self) -> None:
        self.writer.close()


@contextmanager
def epoch_log(profile: Any, results_dir: str | os.PathLike, p: int, seed: int, stage: str,
              name: str) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """The per-epoch callback for :func:`repro.engine.fit.fit` of one model (``None`` when TensorBoard is off)."""
    root = tensorboard_root(profile, results_dir)
    if root is None:
        yield None
        return
    require_tensorboard()
    log = EpochLog(run_dir(root, profile.name, p, seed, stage, name))
    try:
        yield log
    finally:
        log.close()
