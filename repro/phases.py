"""Where a process spends its time: wall seconds per named phase (docs/design.md §6).

The library marks its expensive steps with :func:`phase` (data preparation, cache builds, training,
validation, test evaluation, writing); each second is counted once, in the innermost open phase, so the
phases of a notebook never add up to more than its wall time. The sweep reads and clears the totals
of a kernel after every notebook (:func:`take_json`) and records them per run and summed in
``sweep.json``; whatever a notebook spends outside every phase (imports, tables, figures) is the
sweep's ``other``.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Iterator

#: the phases the library records, in the order ``sweep.json`` lists them (the sweep adds its own)
DATA = "data_preparation"
FEATURE_BUILD = "feature_cache_build"
FEATURES = "feature_loading"
MODEL_SETUP = "model_setup"          # building a model (its encoder with pretrained weights) or loading a checkpoint
TEACHER_CACHES = "teacher_caches"
TRAINING = "training"
BASELINE_FITS = "baseline_fits"      # the logistic-regression probe's fits (notebook 01)
VALIDATION = "validation"
EVALUATION = "evaluation"
WRITING = "writing"
LIBRARY_PHASES = (DATA, FEATURE_BUILD, FEATURES, MODEL_SETUP, TEACHER_CACHES, TRAINING, BASELINE_FITS, VALIDATION,
                  EVALUATION, WRITING)

_totals: dict[str, float] = {}
_stack: list[list] = []   # [name, start of the current exclusive stretch]


def _add(name: str, seconds: float) -> None:
    _totals[name] = _totals.get(name, 0.0) + seconds


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the wall time of the block under ``name``, minus the time of phases opened inside it."""
    now = time.perf_counter()
    if _stack:
        outer = _stack[-1]
        _add(outer[0], now - outer[1])
    _stack.append([name, now])
    try:
        yield
    finally:
        now = time.perf_counter()
        inner = _stack.pop()
        _add(inner[0], now - inner[1])
        if _stack:
            _stack[-1][1] = now


def move(src: str, dst: str, seconds: float) -> None:
    """Re-attribute ``seconds`` already counted under ``src`` to ``dst`` (a step timed inside a phase
    by the code itself, e.g. the validation passes inside a fit)."""
    seconds = max(0.0, min(float(seconds), _totals.get(src, 0.0)))
    if seconds:
        _add(src, -seconds)
        _add(dst, seconds)


def totals() -> dict[str, float]:
    """Seconds per phase so far in this process (closed stretches only)."""
    return {k: v for k, v in _totals.items() if v > 0}


def take() -> dict[str, float]:
    """The totals, rounded to ms, and reset to zero (the sweep calls this after each notebook)."""
    out = {k: round(v, 3) for k, v in totals().items()}
    _totals.clear()
    return out


def take_json() -> str:
    """:func:`take` as JSON text (what the sweep reads back from a kernel)."""
    return json.dumps(take())
