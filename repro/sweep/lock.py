"""One writer (a sweep or ``train``) per results folder: the lock file, and SIGTERM turned into an interrupt so every cleanup runs (docs/design.md §6)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from repro.errors import ReproError
from repro.io import pid_alive


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


LOCK_FILE = ".sweep.lock"


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM arrived while a sweep ran; a KeyboardInterrupt, so it is handled like Ctrl-C."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SweepLockedError(ReproError):
    """Another live sweep is using the same results folder."""


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`SweepInterrupted` (like Ctrl-C) so that every cleanup path runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SweepInterrupted(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def lock_holder(folder: Path) -> dict[str, Any]:
    """Who holds the lock of results folder ``folder``: ``{pid, host, started, command}`` (``{}``: nobody, or an
    unreadable lock file)."""
    try:
        held = json.loads((folder / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return held if isinstance(held, dict) else {}


@contextmanager
def sweep_lock(folder: Path, log: Callable[[str], None], command: str = "sweep") -> Iterator[None]:
    """One sweep or ``train`` per results folder; a lock left by a dead process of this host (kill -9) is
    taken over. The lock file records the holder's pid, host, start time and command. A lock of another
    host is never taken over: its pid cannot be checked from here (on a shared file system a foreign pid
    looks dead), so the error names the holder and the file to delete once that sweep is known to be gone."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now(), "command": command}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            other = lock_holder(folder)
            pid, host = other.get("pid"), other.get("host")
            if isinstance(pid, int) and (host != me["host"] or pid_alive(pid)) and pid != me["pid"]:
                where = host if host == me["host"] else f"{host} (another host: its pid cannot be checked from here)"
                raise SweepLockedError(
                    f"another {other.get('command', 'sweep')} (pid {pid} on {where}, started {other.get('started')}) "
                    f"is using {folder}; "
                    f"wait for it to end, or delete {lock} if that process is gone") from None
            log(f"removing stale sweep lock {lock} (pid {pid} on this host is gone; it was taken {other.get('started')})")
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - lost a race with another sweep twice
        raise SweepLockedError(f"could not take the sweep lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
