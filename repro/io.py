"""Atomic file writes, one way for every file the project writes (docs/design.md §6).

Every writer goes through :func:`atomic_path`: the content is written to a temp file
beside the target, with a name unique to this process, then renamed into place with
``os.replace``; a reader never sees half a file, and two processes never share a temp
file. On top of it: :func:`atomic_write_text`, :func:`write_json`, :func:`atomic_save`
(a binary payload written through a file object: ``np.save``, ``np.savez``, ``torch.save``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix, so ``np.save`` and ``savefig`` keep the format);
    on success it replaces ``path``, on any error it is removed. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


#: the temp names of :func:`atomic_path`: ``.<stem>.<pid>.<8 hex>.tmp<suffix>``
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts as alive)."""
    if not isinstance(pid, int) or pid <= 0:  # kill(0 or -1, 0) would ask about process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def clean_stale_temps(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Remove temp files of :func:`atomic_path` left in ``folder`` by a process that no longer runs
    (killed with SIGKILL, or a power cut); those of live processes are kept. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for q in (folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*")):
        m = _TEMP_NAME.match(q.name)
        if m and q.is_file() and not pid_alive(int(m["pid"])):
            try:
                q.unlink()
                removed.append(q)
            except FileNotFoundError:  # removed by another process meanwhile
                pass
    return removed


def _default_mode(tmp: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (fsync'd, with the usual file mode)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _default_mode(tmp)
    return Path(path)


def atomic_save(path: str | os.PathLike, save: Callable[[Any], None]) -> Path:
    """``save(binary_file)`` into ``path`` atomically, e.g. ``lambda f: torch.save(payload, f)``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            save(f)
        _default_mode(tmp)
    return Path(path)


def _clean(o: Any) -> Any:
    """NaN/inf become ``null`` so that the files are strict JSON; numpy values become Python ones."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, strict JSON (numpy values allowed; NaN written as null)."""
    text = json.dumps(_clean(obj), indent=2, sort_keys=False, default=_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
