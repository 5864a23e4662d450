"""The Jupyter kernel that runs notebooks: it must be this environment's interpreter, and it imports ``repro`` from this checkout (docs/design.md §6)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from repro.errors import ConfigError
from repro.paths import PROJECT_ROOT

DEFAULT_KERNEL = "python3"


def check_kernel(kernel_name: str = DEFAULT_KERNEL) -> str:
    """Make sure ``kernel_name`` starts this interpreter (``sys.executable``); return its command.

    A kernelspec whose command is a bare ``python``/``python3`` is run by
    jupyter_client with ``sys.executable``; an absolute command must live in
    the same ``bin`` folder as this interpreter (same virtual environment).
    A kernel of another environment would run other library versions than the
    ones the sweep records, so it is an error.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise ConfigError(
            f"no Jupyter kernel named {kernel_name!r}; list them with `jupyter kernelspec list` or install one "
            f"for this environment: `{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}`") from None
    cmd = spec.argv[0] if spec.argv else ""
    bare = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if cmd in bare:
        return sys.executable
    here = os.path.dirname(os.path.abspath(sys.executable))
    if os.path.dirname(os.path.abspath(cmd)) == here:
        return cmd
    raise ConfigError(
        f"Jupyter kernel {kernel_name!r} ({spec.resource_dir}) runs {cmd}, not this environment's {sys.executable}. "
        f"Install a kernel for this environment (`{sys.executable} -m ipykernel install --sys-prefix "
        f"--name repro-mtkd`) and pass --kernel repro-mtkd, or run the sweep with that kernel's interpreter.")


def kernel_transport() -> dict:
    """papermill keyword arguments that start the kernel on an encrypted or local channel.

    ipykernel warns "Kernel is running over TCP without encryption" for plain TCP. With CurveZMQ
    available, jupyter_client's documented setting ``KernelManager.transport_encryption = "auto"``
    provisions keys for kernels whose spec declares ``curve`` (ipykernel does); without it, a POSIX
    system uses the ``ipc`` transport (Unix sockets ``<tmp>/repro-kernel-<pid>-<n>``, removed by
    jupyter_client at shutdown).
    """
    import tempfile

    import zmq
    from traitlets.config import Config

    c = Config()
    if zmq.has("curve"):
        c.KernelManager.transport_encryption = "auto"
    elif os.name == "posix" and zmq.has("ipc"):
        c.KernelManager.transport = "ipc"
        c.KernelManager.ip = os.path.join(tempfile.gettempdir(), f"repro-kernel-{os.getpid()}")
    return {"config": c}


@contextmanager
def kernel_env(**extra: str) -> Iterator[None]:
    """Kernels (children) import ``repro`` from this checkout and start quietly; ``extra`` environment
    variables are set for them too. Everything is restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYDEVD_DISABLE_FILE_VALIDATION", *extra)}
    parts = [str(PROJECT_ROOT)] + [q for q in (saved["PYTHONPATH"] or "").split(os.pathsep) if q]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
