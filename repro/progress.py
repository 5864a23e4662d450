"""How long steps show their progress: a tqdm bar on a terminal or in Jupyter, plain lines in a log.

``$REPRO_PROGRESS`` decides (``lines`` or ``bar``); sweeps set ``lines`` for their kernels,
whose output they stream line by line. Unset, a Jupyter kernel shows a bar and a script shows
a bar only when stderr is a terminal (a bar redrawn with carriage returns is unreadable in a
log file). In lines mode training prints one :func:`epoch_line` per epoch instead of its bar,
and every other bar (:func:`tqdm_class`) is a :class:`LogBar`: one plain line at most every
:data:`LOG_INTERVAL_S` seconds while it runs, and one when it ends.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO

PROGRESS_ENV = "REPRO_PROGRESS"
LOG_INTERVAL_S = 30.0  # the most often a LogBar prints a line while it runs


def plain_lines() -> bool:
    """True when progress should be one printed line per step instead of a tqdm bar."""
    mode = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if mode in ("lines", "bar"):
        return mode == "lines"
    if in_jupyter():
        return False
    return not sys.stderr.isatty()


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (an imported ``ipykernel`` alone, as under pytest, does not count)."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def epoch_line(desc: str, epoch: int, max_epochs: int, loss: float, score: float) -> str:
    """``m1 T1+T2 p=15 s=0 epoch 3/30: loss 1.234 val 0.456``."""
    return f"{desc} epoch {epoch}/{max_epochs}: loss {loss:.3f} val {score:.3f}"


def duration_text(seconds: float) -> str:
    """``42s``, ``1m05s`` or ``2h03m``."""
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class LogBar:
    """tqdm's interface as plain lines for a log: at most one line every ``interval`` seconds, and a last
    one when the bar closes; never a carriage return.

    ``trunk efficientnet_lite0 orig 256px: 12/43 batch (28%), 30s, about 1m17s left``. ``interval``
    defaults to :data:`LOG_INTERVAL_S`, ``clock`` to ``time.monotonic``. The arguments tqdm takes and this
    does not need (``leave``, ``mininterval``, ``dynamic_ncols``, ...) are accepted and ignored.
    """

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 disable: bool | None = False, unit: str = "it", file: TextIO | None = None,
                 interval: float | None = None, clock: Callable[[], float] | None = None, **_: Any):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self.total, self.desc, self.unit = total, desc or "", unit
        self.disable = bool(disable)
        self.file = file
        self.interval = LOG_INTERVAL_S if interval is None else float(interval)
        self.clock = clock or time.monotonic
        self.n = 0
        self.postfix = ""
        self.start = self.last = self.clock()
        self.closed = False

    # -- what a loop calls
    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LogBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def update(self, n: float = 1) -> None:
        self.n += n
        if not self.disable and self.clock() - self.last >= self.interval:
            self._emit(done=False)

    def close(self) -> None:
        if not self.closed and not self.disable:
            self._emit(done=True)
        self.closed = True

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self, *_: Any, **__: Any) -> None:
        """Nothing to redraw: a log gets lines only (tqdm's interface)."""

    def clear(self, *_: Any, **__: Any) -> None:
        """Nothing to clear: a log gets lines only (tqdm's interface)."""

    @classmethod
    def write(cls, s: str, file: TextIO | None = None, end: str = "\n", nolock: bool = False) -> None:
        print(s, end=end, file=file or sys.stderr, flush=True)

    # -- the line
    def line(self, done: bool = False) -> str:
        """``<desc>: <n>/<total> <unit> (<pct>%), <elapsed>[, about <eta> left | done][, <postfix>]``."""
        elapsed = self.clock() - self.start
        count = f"{self.n:g}/{self.total:g} {self.unit}" if self.total else f"{self.n:g} {self.unit}"
        if self.total:
            count += f" ({100 * self.n / self.total:.0f}%)"
        parts = [count, f"done in {duration_text(elapsed)}" if done else duration_text(elapsed)]
        if not done and self.total and 0 < self.n < self.total:
            parts.append(f"about {duration_text(elapsed * (self.total - self.n) / self.n)} left")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)

    def _emit(self, done: bool) -> None:
        self.last = self.clock()
        print(self.line(done), file=self.file or sys.stderr, flush=True)


def tqdm_class():
    """The progress bar class: :class:`LogBar` when progress goes to a log (:func:`plain_lines`), else
    tqdm's notebook bar inside Jupyter when ipywidgets can draw it, else the text bar.

    ``tqdm.auto`` makes the same choice but warns ("IProgress not found") in every kernel
    without ipywidgets, a sweep's kernels included; this never warns.
    """
    if plain_lines():
        return LogBar
    if in_jupyter() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm
