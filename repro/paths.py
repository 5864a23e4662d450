"""Where things live: data root resolution and the project's output folders."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from repro.errors import DataError, ReproError

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


DEFAULT_RESULTS_ROOT = PROJECT_ROOT / "out"          # git-ignored; where every run writes unless told otherwise
REFERENCE_RESULTS_ROOT = PROJECT_ROOT / "results"   # committed reference results; written only when asked to
REFERENCE_FIGURES = PROJECT_ROOT / "figures"        # the committed reference's figures (docs/design.md: top level)


class OutputError(ReproError):
    """An output location that cannot be written (a file in the way, no permission, read-only disk)."""


@dataclass(frozen=True)
class Layout:
    """Every output location, derived from one results root ``R`` (docs/design.md §6).

    ``R/<profile>/p<p>/seed<s>/*.json`` results; ``runs/<profile>/<data key>/p<p>/seed<s>/`` checkpoints
    and teacher caches (``runs`` = ``R/runs`` unless ``$REPRO_RUNS``); ``cache`` = ``R/cache`` (content-
    addressed image and feature caches, unless ``$REPRO_CACHE``); ``R/splits`` split files of data other
    than the reference subset.
    """

    root: Path
    runs: Path
    cache: Path

    def results(self, profile: str) -> Path:
        return self.root / profile

    def profile_runs(self, profile: str) -> Path:
        return self.runs / profile

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    def writable_folders(self, profile: str) -> tuple[Path, ...]:
        return (self.results(profile), self.profile_runs(profile), self.cache)


def layout(root: str | os.PathLike | None = None, runs: str | os.PathLike | None = None,
           cache: str | os.PathLike | None = None) -> Layout:
    """The layout of results root ``root`` (else ``$REPRO_RESULTS``, else ``out/``); ``runs`` and ``cache``
    default to ``$REPRO_RUNS`` / ``$REPRO_CACHE``, else ``<root>/runs`` and ``<root>/cache``."""
    env = os.environ.get
    r = Path(root).expanduser() if root else (Path(env("REPRO_RESULTS")) if env("REPRO_RESULTS") else DEFAULT_RESULTS_ROOT)
    ru = Path(runs).expanduser() if runs else (Path(env("REPRO_RUNS")) if env("REPRO_RUNS") else r / "runs")
    c = Path(cache).expanduser() if cache else (Path(env("REPRO_CACHE")) if env("REPRO_CACHE") else r / "cache")
    return Layout(root=r, runs=ru, cache=c)


def layout_for_results(results_dir: str | os.PathLike | None, runs: str | os.PathLike | None = None,
                       cache: str | os.PathLike | None = None) -> Layout:
    """The layout whose ``results(profile)`` is ``results_dir`` (``R/<profile>``, as notebooks pass it)."""
    return layout(Path(results_dir).expanduser().parent if results_dir else None, runs, cache)


def results_dir(profile: str, root: Path | None = None) -> Path:
    """Small result JSON of one profile: ``<root>/<profile>`` (root: ``$REPRO_RESULTS``, else ``out/``)."""
    return layout(root).results(profile)


def runs_dir(profile: str, root: Path | None = None) -> Path:
    """Checkpoints and teacher caches of one profile: ``<runs>/<profile>`` (see :class:`Layout`)."""
    return layout(runs=root).profile_runs(profile)


def cache_dir(root: Path | None = None) -> Path:
    """Content-addressed decode-once image and feature caches (``$REPRO_CACHE``, else ``<results root>/cache``)."""
    return Path(root) if root else layout().cache


def figures_dir(root: Path | None = None) -> Path:
    """Figures beside the results they show: ``<results root>/figures``, except for the committed reference
    ``results/``, whose figures are the project's top-level ``figures/`` (:data:`REFERENCE_FIGURES`);
    ``$REPRO_FIGURES`` overrides both."""
    env = os.environ.get("REPRO_FIGURES")
    if env:
        return Path(env)
    results_root = layout(root).root
    if results_root.resolve() == REFERENCE_RESULTS_ROOT.resolve():
        return REFERENCE_FIGURES
    return results_root / "figures"


def split_dir() -> Path:
    """Committed split files of the reference data: ``results/splits`` (every run and reader uses them)."""
    return REFERENCE_RESULTS_ROOT / "splits"


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it writable by writing and removing a probe file there.

    An :class:`OutputError` names the folder and the cause; checked before any work starts, so that
    nothing is computed only to be lost at the end. The probe is a real write, so it also holds for
    root (for whom permission bits are no obstacle) on a read-only disk or below a regular file.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-probe.{os.getpid()}.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        block = next((q for q in [folder, *folder.parents] if q.exists() and not q.is_dir()), None)
        why = f"{block} is a file, not a folder" if block else (e.strerror or type(e).__name__)
        raise OutputError(f"{what} {folder} is not writable ({why}); choose another location "
                          "(--results-root / --out, or $REPRO_RESULTS)") from None
    return folder


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
