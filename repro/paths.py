"""Where things live: data root resolution and the project's output folders."""

from __future__ import annotations

import os
from pathlib import Path

from repro.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


ODIR_HELP = (
    "ODIR-5K is not where the code looked. Get it from Kaggle "
    "('Ocular Disease Recognition', andrewmvd/ocular-disease-recognition-odir5k: full_df.csv + "
    "preprocessed_images/) and either put it at data/odir5k inside the project, set $REPRO_DATA "
    "to its folder, or pass --data-root / data_root explicitly."
)


def data_root_candidates(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Candidate data roots in resolution order (docs/design.md §2)."""
    out: list[Path] = []
    if explicit:
        out.append(Path(explicit))
    env = os.environ.get("REPRO_DATA")
    if env:
        out.append(Path(env))
    out.append(PROJECT_ROOT / "data" / "odir5k")
    out.append(PROJECT_ROOT.parent / "shared" / "data" / "odir5k")
    return out


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit argument, then ``$REPRO_DATA``, then ``data/odir5k``, then ``../shared/data/odir5k``.

    An explicit argument that does not exist is an error of its own (it is
    never silently replaced by a fallback).
    """
    if explicit:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise DataError(f"data root {p} does not exist. {ODIR_HELP}")
        return p.resolve()
    env = os.environ.get("REPRO_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise DataError(f"$REPRO_DATA={env} does not exist. {ODIR_HELP}")
        return p.resolve()
    for p in data_root_candidates()[-2:]:
        if p.exists():
            return p.resolve()
    tried = ", ".join(str(p) for p in data_root_candidates())
    raise DataError(f"no data root found (tried {tried}). {ODIR_HELP}")


def results_dir(profile: str, root: Path | None = None) -> Path:
    """Small result JSON of one profile: ``results/<profile>`` (``$REPRO_RESULTS/<profile>`` overrides)."""
    env = os.environ.get("REPRO_RESULTS")
    return (root or (Path(env) if env else PROJECT_ROOT / "results")) / profile


def runs_dir(profile: str, root: Path | None = None) -> Path:
    """Git-ignored heavy artefacts of one profile (checkpoints, teacher caches; ``$REPRO_RUNS`` overrides)."""
    env = os.environ.get("REPRO_RUNS")
    return (root or (Path(env) if env else PROJECT_ROOT / "runs")) / profile


def cache_dir(root: Path | None = None) -> Path:
    """Git-ignored decode-once image and feature caches (``$REPRO_CACHE`` overrides)."""
    env = os.environ.get("REPRO_CACHE")
    return Path(env) if env else (root or PROJECT_ROOT / "cache")


def split_dir() -> Path:
    """Committed split files: ``results/splits`` (every run and reader uses the same file)."""
    return PROJECT_ROOT / "results" / "splits"


def project_relative(path: str | os.PathLike | None, siblings: bool = False) -> str | None:
    """``path`` relative to the project when it lies inside it, so that result files stay portable.

    Outside the project it is returned as given, or with ``siblings=True`` as a relative path
    (``../shared/data/odir5k`` for a folder beside the project). ``None`` stays ``None``.
    """
    if path is None:
        return None
    try:
        if siblings:
            return os.path.relpath(Path(path).resolve(), PROJECT_ROOT)
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:  # outside the project (or, with siblings, another drive on Windows)
        return str(path)
