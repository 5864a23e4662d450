"""Provenance every run records: the git commit, library versions and peak memory (docs/design.md §6)."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from pathlib import Path


def git_commit() -> str | None:
    """The project's current commit (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide the numbers."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("torch", "torchvision", "timm", "numpy", "nltk", "sacrebleu"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is recorded as absent
            out[mod] = "absent"
    return out


def peak_memory_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0
