"""What runs inside one job of a sweep (executors ``local`` and ``slurm``; :mod:`repro.sweep.executors`).

A job gets the runs of one unit (a (p, seed) chain, or the once-notebooks before or after the chains) and
runs them with the sweep's own run loop (:func:`repro.sweep.run.run_loop`): a run whose result exists is
skipped, each notebook is executed by papermill in the chain's kernel, results are written atomically by
the notebooks. The job takes no lock and writes no ``sweep.json``: the controller holds the lock and keeps
the record. What the job did is written after every run to its progress file
(``<job folder>/progress.json``, atomic), which the controller reads while the job runs and after it ends,
however it ended.

A job is :class:`submitit.helpers.Checkpointable`: one that reaches its time limit or is preempted is
requeued with the same runs and resumes at its next missing result; runs it finished in an earlier
attempt count as done, under ``--force`` too. SIGTERM (``scancel``) and SIGINT (the local executor's
cancel) stop it like Ctrl-C stops a sweep: the kernel is shut down, the running notebook is recorded as
interrupted, and its half-written executed notebook is left for the next sweep to remove.
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from pathlib import Path
from typing import Any, Sequence

from submitit import JobEnvironment
from submitit.helpers import Checkpointable

from repro.io import read_json, write_json
from repro.sweep.chain import KernelPool
from repro.sweep.kernel import DEFAULT_KERNEL, check_kernel, kernel_env
from repro.sweep.lock import signals_as_interrupt, utc_now
from repro.sweep.plan import Run
from repro.sweep.record import MemorySampler, RunOutcome

PROGRESS_FILE = "progress.json"
#: the reason recorded for the runs a job did not reach because it was stopped
JOB_STOPPED = "the job stopped first"


def progress_path(job_folder: str | os.PathLike) -> Path:
    return Path(job_folder) / PROGRESS_FILE


def read_progress(path: Path) -> dict[str, Any]:
    """A job's progress file (``{}`` before its first write)."""
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class ChainJob(Checkpointable):
    """The callable a job runs: ``runs`` (at ``positions`` of a sweep of ``total`` runs) in one process."""

    def __init__(self, runs: Sequence[Run], positions: Sequence[int], total: int, force: bool,
                 stop_on_error: bool, kernel: str | None, chain: bool):
        self.runs, self.positions, self.total = list(runs), list(positions), total
        self.force, self.stop_on_error, self.kernel, self.chain = force, stop_on_error, kernel, chain

    def __call__(self) -> dict[str, Any]:
        env = JobEnvironment()
        return run_job(self, progress_path(env.paths.folder), str(env.job_id))


def run_job(job: ChainJob, progress: Path, job_id: str) -> dict[str, Any]:
    """Run ``job``'s runs, writing ``progress`` after each; returns the last progress document."""
    from repro.sweep.run import KERNEL_ARGUMENTS, close_outcomes, progress_as_lines, run_loop

    def emit(line: str) -> None:
        print(line, flush=True)

    outcomes = [RunOutcome(r, job=job_id) for r in job.runs]
    earlier = read_progress(progress)
    for o in outcomes:  # a requeued job: what an earlier attempt finished stays done
        state = earlier.get("runs", {}).get(o.run.key, {})
        if state.get("status") == "done":
            o.restore(state)
    todo = [i for i, o in enumerate(outcomes) if o.status != "done"]
    doc: dict[str, Any] = {"job": job_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "attempt": int(earlier.get("attempt", 0)) + 1, "started": utc_now(), "finished": None,
                           "runs": {}}

    def save(_: int = 0) -> None:
        doc["runs"] = {o.run.key: o.state() for o in outcomes}
        doc["updated"] = utc_now()
        write_json(progress, doc)

    save()
    kernel = job.kernel or DEFAULT_KERNEL
    check_kernel(kernel)
    sampler = MemorySampler().start()
    pool = KernelPool(kernel, KERNEL_ARGUMENTS, share=job.chain)
    try:
        with kernel_env(), progress_as_lines(), signals_as_interrupt():
            run_loop([job.runs[i] for i in todo], [outcomes[i] for i in todo], pool, sampler, {"name": ""}, emit,
                     job.force, job.stop_on_error, save=save, positions=[job.positions[i] for i in todo],
                     total=job.total)
    finally:
        with suppress(Exception):  # a kernel that will not shut down must not cost the record
            pool.close()
        sampler.stop()
        close_outcomes(outcomes, JOB_STOPPED)
        doc["finished"] = utc_now()
        save()
    return doc
