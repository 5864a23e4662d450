"""How long steps show their progress: a tqdm bar on a terminal or in Jupyter, plain lines in a log.

``$REPRO_PROGRESS`` decides (``lines`` or ``bar``); sweeps set ``lines`` for their kernels,
whose output they stream line by line. Unset, a Jupyter kernel shows a bar and a script shows
a bar only when stderr is a terminal (a bar redrawn with carriage returns is unreadable in a
log file). In lines mode training prints one :func:`epoch_line` per epoch instead of its bar.
"""

from __future__ import annotations

import importlib.util
import os
import sys

PROGRESS_ENV = "REPRO_PROGRESS"


def plain_lines() -> bool:
    """True when progress should be one printed line per step instead of a tqdm bar."""
    mode = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if mode in ("lines", "bar"):
        return mode == "lines"
    if "ipykernel" in sys.modules:
        return False
    return not sys.stderr.isatty()


def epoch_line(desc: str, epoch: int, max_epochs: int, loss: float, score: float) -> str:
    """``m1 T1+T2 p=15 s=0 epoch 3/30: loss 1.234 val 0.456``."""
    return f"{desc} epoch {epoch}/{max_epochs}: loss {loss:.3f} val {score:.3f}"


def tqdm_class():
    """tqdm's notebook bar inside Jupyter when ipywidgets can draw it, else the text bar.

    ``tqdm.auto`` makes the same choice but warns ("IProgress not found") in every kernel
    without ipywidgets, a sweep's kernels included; this never warns.
    """
    if ("ipykernel" in sys.modules and not plain_lines()
            and importlib.util.find_spec("ipywidgets") is not None):
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm
