"""Device choice, seeding and determinism (docs/design.md §4, §6)."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. An explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from repro.errors import ConfigError

        raise ConfigError(f"device={device!r} asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; deterministic kernels on CPU. Returns a generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def usable_cores() -> int:
    """The CPU cores this process may run on (its CPU affinity, as set by ``taskset`` or a SLURM allocation;
    else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else max(os.cpu_count() or 1, 1)


def set_threads(profile) -> None:
    """Pin torch's intra-op thread count to ``profile.num_threads`` (when set).

    A CPU run's numbers depend on it: matrix products split their sums over the threads, so another
    count rounds differently (by one float32 ulp in a batch's loss), and training amplifies that into
    another model (issue 21: the committed M1{T1} p=70 seed 1 was 0.514, a retrain 0.529). The smoke
    and quick profiles therefore fix the count instead of taking the machine's core count.
    """
    n = getattr(profile, "num_threads", None)
    if n and torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else :func:`platform.processor`)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numerics() -> dict:
    """What decides a CPU run's floating-point results besides the code and the seed: the intra-op
    thread count, the vector instruction set torch dispatches to (``AVX2``, ``AVX512``, ...; the
    environment variable ``ATEN_CPU_CAPABILITY`` lowers it) and the CPU. Two runs that differ here may
    train different models from the same seed (recorded in every result JSON)."""
    return {"threads": int(torch.get_num_threads()), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu": cpu_name(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU (fp32 there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
