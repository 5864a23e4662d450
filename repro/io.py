"""Atomic file writes, one way for every file the project writes (docs/design.md §6).

Every writer goes through :func:`atomic_path`: the content is written to a temp file
beside the target, with a name unique to this process on this host (:func:`process_tag`), then
renamed into place with ``os.replace``; a reader never sees half a file, and two processes never
share a temp file, even on a file system shared by several hosts. On top of it: :func:`atomic_write_text`, :func:`write_json`, :func:`atomic_save`
(a binary payload written through a file object: ``np.save``, ``np.savez``, ``torch.save``).

A full disk is one :class:`DiskFullError` naming the folder and the bytes needed, and leaves no file that
looks complete: the temp file is removed and the target is never renamed into place. Binary payloads are
serialised in memory first and memory-mapped arrays get their space reserved before they are written
(:func:`reserve_space`), so the error is an ``ENOSPC`` on a plain write, never a SIGBUS or a torch
``unexpected pos`` deep inside a library.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from repro.paths import OutputError

#: errno values of a full disk or an exhausted quota
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OutputError):
    """No space left where a file is written (the folder and the bytes needed are named)."""


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def disk_full_error(path: str | os.PathLike, needed: int | None) -> DiskFullError:
    """The one message of a full disk: which folder, how much the write needed, how much is free, what to do."""
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    return DiskFullError(
        f"no space left on the disk holding {folder}: writing {Path(path).name} needed {_size(needed)}"
        f"{'' if free is None else f' ({_size(free)} free)'}; nothing was left in its place. Free space on that "
        "disk, or write elsewhere: --results-root / $REPRO_RESULTS for results, $REPRO_CACHE for the caches.")


def reserve_space(tmp: str | os.PathLike, target: str | os.PathLike | None = None) -> None:
    """Allocate the blocks of file ``tmp`` (a sparse memory-map file) now, so that writing it later cannot
    fail with SIGBUS on a full disk; a full disk is a :class:`DiskFullError` naming ``target``."""
    nbytes = os.path.getsize(tmp)
    if not hasattr(os, "posix_fallocate") or nbytes == 0:
        return
    try:
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in NO_SPACE:
            raise disk_full_error(target or tmp, nbytes) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


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
def atomic_path(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix, so ``np.save`` and ``savefig`` keep the format);
    on success it replaces ``path``, on any error it is removed. Parent folders are created.
    An ``ENOSPC`` becomes a :class:`DiskFullError` (``needed``: the bytes being written, when known)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{process_tag()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        if tmp.exists():
            tmp.unlink()
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            raise disk_full_error(path, needed) from None
        raise


#: the temp names of :func:`atomic_path`: ``.<stem>.<pid>@<host>.<8 hex>.tmp<suffix>``
_TEMP_NAME = re.compile(r"^\..+\.(?P<tag>\d+@[^/]+?)\.[0-9a-f]{8}\.tmp")
#: a process tag: ``<pid>@<host>``
_TAG = re.compile(r"^(?P<pid>\d+)@(?P<host>[^/@]+)$")


def process_tag(pid: int | None = None) -> str:
    """``<pid>@<host>``: this process (or ``pid`` on this host) in a file name, unique across the hosts
    that share a file system; :func:`tag_is_stale` reads it back."""
    return f"{os.getpid() if pid is None else pid}@{socket.gethostname()}"


def tag_is_stale(tag: str) -> bool:
    """Whether the process a :func:`process_tag` names is known to be gone: it ran on this host and its pid
    is no longer alive. A tag of another host (or one without a host) is never stale: a pid is checked
    only on the host it belongs to."""
    m = _TAG.match(tag)
    return bool(m) and m["host"] == socket.gethostname() and not pid_alive(int(m["pid"]))


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
    """Remove temp files of :func:`atomic_path` left in ``folder`` by a process of this host that no longer
    runs (killed with SIGKILL, or a power cut); those of live processes and of other hosts are kept
    (:func:`tag_is_stale`). Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for q in (folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*")):
        m = _TEMP_NAME.match(q.name)
        if m and q.is_file() and tag_is_stale(m["tag"]):
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
    data = text.encode("utf-8")
    with atomic_path(path, needed=len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _default_mode(tmp)
    return Path(path)


def atomic_save(path: str | os.PathLike, save: Callable[[Any], None]) -> Path:
    """``save(binary_file)`` into ``path`` atomically, e.g. ``lambda f: torch.save(payload, f)``.

    The payload is serialised in memory first, so a full disk fails on one plain write
    (:class:`DiskFullError` with the size), not inside the serialiser."""
    buf = io.BytesIO()
    save(buf)
    data = buf.getbuffer()
    with atomic_path(path, needed=len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
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
