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


@contextmanager
def sweep_lock(folder: Path, log: Callable[[str], None], command: str = "sweep") -> Iterator[None]:
    """One sweep or ``train`` per results folder; a lock left by a dead process (kill -9) is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now(), "command": command}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            pid, host = other.get("pid"), other.get("host")
            if isinstance(pid, int) and (host != me["host"] or pid_alive(pid)) and pid != me["pid"]:
                raise SweepLockedError(
                    f"another {other.get('command', 'sweep')} (pid {pid} on {host}, started {other.get('started')}) "
                    f"is using {folder}; "
                    f"wait for it to end, or delete {lock} if that process is gone") from None
            log(f"removing stale sweep lock {lock} (pid {pid} is gone)")
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
