"""What a sweep's job asks of SLURM, and what the queue says of it (docs/design.md §6).

:class:`JobResources`: partition, time limit, GPUs, CPUs, memory and other sbatch settings of one job,
with defaults per profile (:data:`PROFILE_RESOURCES`: a GPU for ``paper``, none for the CPU profiles)
that the ``--slurm-*`` options override. :func:`submitit_parameters` turns them into submitit's
``update_parameters`` keywords for the ``slurm`` or the ``local`` executor.

:func:`queue_states` asks ``squeue`` for the state of the sweep's jobs. submitit reads job states
from ``sacct``, which needs SLURM's accounting database; without one (the local SLURM of
``scripts/local_slurm.sh``, small clusters) ``sacct`` fails and submitit reports every job as UNKNOWN,
so a cancelled job would look alive forever. ``squeue -t all`` lists pending, running and recently
ended jobs (for ``MinJobAge``, 300 s by default) with their state; a job it no longer lists has ended.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Any, Iterable

from repro.errors import ConfigError
from repro.names import SLURM

#: seconds a squeue call may take before the state is taken as unknown for this poll
SQUEUE_TIMEOUT_S = 30
#: states of a job that is still queued or running (squeue's long names)
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                           "REQUEUE_FED", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED",
                           "RESV_DEL_HOLD"})
#: what :func:`queue_states` reports for a job squeue no longer lists
GONE = "GONE"


@dataclass(frozen=True)
class JobResources:
    """What one job (one (p, seed) chain) asks for."""

    time_min: int                  # wall-time limit; a job that reaches it is requeued and resumes (Checkpointable)
    cpus: int = 1                  # CPUs per job (--cpus-per-task)
    gpus: int = 0                  # GPUs per job (--gpus-per-node); 0: no GPU requested
    mem_gb: float | None = None    # memory per job (--mem); None: the cluster's default
    partition: str | None = None   # None: the cluster's default partition
    options: tuple[tuple[str, str], ...] = ()  # other sbatch settings, e.g. (("account", "lab"), ("qos", "high"))

    def describe(self) -> str:
        parts = [f"time {self.time_min} min", f"{self.cpus} CPU", f"{self.gpus} GPU",
                 f"mem {self.mem_gb:g} GB" if self.mem_gb else "default mem",
                 f"partition {self.partition}" if self.partition else "default partition"]
        parts += [f"--{k}={v}" if v else f"--{k}" for k, v in self.options]
        return ", ".join(parts)


#: per-profile defaults; the time limits are a chain's measured wall time with a wide margin (quick, one CPU
#: per chain: 1–3 min, results/quick/sweep.json), the paper's a guess for a GPU (a job that reaches its
#: limit is requeued and resumes at its next missing result)
PROFILE_RESOURCES: dict[str, JobResources] = {
    "smoke": JobResources(time_min=30, cpus=1),
    "quick": JobResources(time_min=60, cpus=1, mem_gb=6),
    "finetune": JobResources(time_min=240, cpus=2, mem_gb=8),
    "paper": JobResources(time_min=720, cpus=8, gpus=1, mem_gb=32),
}
#: a profile missing from :data:`PROFILE_RESOURCES` (one added later) gets these
DEFAULT_RESOURCES = JobResources(time_min=240, cpus=2)


def parse_option(text: str) -> tuple[str, str]:
    """``--slurm-option KEY=VALUE`` (or a bare ``KEY`` for a flag) as ``(key, value)``."""
    key, _, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not key or not all(c.isalnum() or c in "-_" for c in key):
        raise ConfigError(f"--slurm-option {text!r}: give an sbatch setting as KEY=VALUE without dashes, "
                          "e.g. --slurm-option account=mylab or --slurm-option exclusive")
    return key, value.strip()


def resources_for(profile: str, partition: str | None = None, time_min: int | None = None,
                  gpus: int | None = None, cpus: int | None = None, mem_gb: float | None = None,
                  options: Iterable[str] = ()) -> JobResources:
    """The profile's :data:`PROFILE_RESOURCES`, each given value replacing its default."""
    base = PROFILE_RESOURCES.get(profile, DEFAULT_RESOURCES)
    given = {"partition": partition, "time_min": time_min, "gpus": gpus, "cpus": cpus, "mem_gb": mem_gb}
    for name, value in given.items():
        if name != "partition" and value is not None and value < (1 if name in ("time_min", "cpus") else 0):
            raise ConfigError(f"--slurm-{name.split('_')[0]} {value} is not allowed: give a number >= "
                              f"{1 if name in ('time_min', 'cpus') else 0}")
    extra = tuple(parse_option(o) for o in options)
    return replace(base, **{k: v for k, v in given.items() if v is not None},
                   options=tuple(dict(base.options + extra).items()))


def submitit_parameters(res: JobResources, executor: str, name: str) -> dict[str, Any]:
    """``update_parameters`` keywords of a submitit ``AutoExecutor`` for ``executor`` (``slurm`` or ``local``).

    A GPU count of 0 requests nothing (``--gpus-per-node=0`` fails on a cluster without GPU resources);
    the local executor takes only the time limit and the GPUs."""
    params: dict[str, Any] = {"timeout_min": res.time_min, "name": name}
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    if executor != SLURM:
        return params
    params["cpus_per_task"] = res.cpus
    if res.mem_gb:
        params["mem_gb"] = res.mem_gb
    if res.partition:
        params["slurm_partition"] = res.partition
    if res.options:
        params["slurm_additional_parameters"] = {k: (v if v else True) for k, v in res.options}
    return params


def slurm_missing() -> str | None:
    """Why jobs cannot be submitted to SLURM from here (``None``: sbatch, squeue and scancel are found)."""
    missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        return (f"{', '.join(missing)} not found: --executor slurm runs on a machine that submits to a SLURM "
                "cluster (scripts/local_slurm.sh start runs a one-node SLURM here)")
    return None


def queue_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """``{job id: state}`` from ``squeue -t all`` for the given jobs of this user; :data:`GONE` for a job it
    does not list. ``None`` when squeue did not answer (the controller asks again at its next poll)."""
    ids = list(job_ids)
    if not ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T"],
                             capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    listed = dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)
    return {i: listed.get(i, GONE) for i in ids}
