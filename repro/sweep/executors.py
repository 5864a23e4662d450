"""Where a sweep's notebooks run (``sweep --executor``; docs/design.md §6).

``inline`` (default): this process runs every notebook in its own kernels (:func:`repro.sweep.run.run_sweep`).
``local`` and ``slurm``: this process is the *controller*; each unit of the plan runs as one job,
through submitit (``local``: a subprocess of this machine; ``slurm``: an ``sbatch`` job). A unit is
a (p, seed) chain (01 -> 04 -> 02 -> 03 of one p and seed), or the once-notebooks before the chains
(``00_data``) or after them (``05_gradcam``, ``06_report``) (:func:`plan_units`).

The controller alone holds the results folder's lock, plans, skips the runs whose result exists,
submits the jobs whose units are ready, follows them and writes ``sweep.json`` (each run with the id
of its job, and a ``jobs`` list with each job's log files). A unit is ready when the units it depends
on have ended: every chain waits for the once-notebooks before it, the once-notebooks after the chains
wait for every chain, and with a profile's ``tau_seed = k`` the chain (p, s) that reads the τ study
waits for the chain (p, k) that makes it (the first wave). Inside a job the sweep's own run loop runs
(:mod:`repro.sweep.job`); its progress file says which run it is at.

Ctrl-C or SIGTERM of the controller cancels its jobs (``scancel``), records what they did and stops;
rerunning the same command resumes: a run whose result exists is skipped, so a job that was killed
(``scancel``, a node failure) is submitted again with its missing runs only. A job that reaches its
time limit is requeued by submitit and resumes at its next missing result.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from repro.device import usable_cores
from repro.errors import ConfigError, ReproError
from repro.io import pid_alive, read_json
from repro.names import LOCAL, SLURM, SWEEP_FILE
from repro.paths import project_relative
from repro.profiles import get_profile
from repro.sweep.chain import chain_key
from repro.sweep.job import JOB_STOPPED, ChainJob, progress_path, read_progress
from repro.sweep.kernel import DEFAULT_KERNEL, check_kernel, kernel_env
from repro.sweep.lock import SweepLockedError, signals_as_interrupt, sweep_lock, utc_now
from repro.sweep.plan import TAU_READERS, Run
from repro.sweep.record import RunOutcome, SweepRecord, SweepReport, error_line, fmt_seconds
from repro.sweep.run import (clean_partials, close_outcomes, new_segment, one_results_folder, skip_reason,
                             update_segment)
from repro.sweep.slurm import ACTIVE_STATES, GONE, JobResources, queue_states, slurm_missing, submitit_parameters

#: seconds between two looks at the jobs
POLL_S = {LOCAL: 1.0, SLURM: 5.0}
#: a SLURM job that ended COMPLETED (or left the queue) without its result file: seconds to wait for the
#: file to appear (a shared file system shows it late) before it counts as ended without a result
END_GRACE_S = 60
#: seconds the controller waits for cancelled jobs to end and report, after Ctrl-C
CANCEL_WAIT_S = 60
#: times a job that reached its time limit is requeued (submitit's ``max_num_timeout``)
MAX_REQUEUES = 3
#: folder of the job folders (submitit's pickles, the logs, the progress files), under ``<results root>/<profile>``
JOBS_DIR = "jobs"
#: run statuses that a job has yet to settle
OPEN = ("queued", "running")


class SubmitError(ReproError):
    """A job could not be submitted (sbatch refused it)."""


@dataclass
class Unit:
    """Runs of the plan that one job runs: a (p, seed) chain, or the once-notebooks before or after them."""

    name: str
    runs: list[int]                      # positions in the plan
    after: list[int]                     # units (positions in the unit list) that must end first
    state: str = "waiting"               # waiting | submitted | ended | not submitted
    todo: list[int] = field(default_factory=list)   # the runs given to the job (no result yet, or --force)
    job: Any = None
    record: dict[str, Any] = field(default_factory=dict)   # its entry in the segment's "jobs"
    seen: dict[str, str] = field(default_factory=dict)     # last status shown per run key
    left_queue: float | None = None      # when squeue first showed it ended without a result file
    cancelled: bool = False

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)


def plan_units(runs: Sequence[Run]) -> list[Unit]:
    """The plan's runs as job units, in submission order, with their dependencies (module doc)."""
    per = [i for i, r in enumerate(runs) if r.per_run]
    first = per[0] if per else len(runs)
    head = [i for i, r in enumerate(runs) if not r.per_run and i < first]
    tail = [i for i, r in enumerate(runs) if not r.per_run and i > first]
    units: list[Unit] = []
    if head:
        units.append(Unit(" ".join(runs[i].stem for i in head), head, []))
    before = list(range(len(units)))
    chains: dict[tuple[int, int], list[int]] = {}
    for i in per:
        chains.setdefault(chain_key(runs[i]), []).append(i)
    k = get_profile(runs[0].profile).tau_seed if runs else None
    where: dict[tuple[int, int], int] = {}
    for (p, seed), idx in sorted(chains.items(), key=lambda c: chain_priority(*c[0], k)):
        where[(p, seed)] = len(units)
        units.append(Unit(f"p{p} seed{seed}", idx, list(before)))
    if k is not None:
        for (p, seed), u in where.items():
            if seed != k and (p, k) in where and any(runs[i].number in TAU_READERS for i in units[u].runs):
                units[u].after.append(where[(p, k)])
    if tail:
        units.append(Unit(" ".join(runs[i].stem for i in tail), tail, list(range(len(units)))))
    return units


def chain_priority(p: int, seed: int, tau_seed: int | None) -> tuple[bool, int, int]:
    """Submission order of the chains (the job executors' only freedom): the τ seed's chains first, since the
    other seeds' chains of their p wait for them, then the rest; within each, the largest p first, since
    more labeled images train longer. The short chains come last and fill the cores while the last long ones
    finish: the quick sweep's idle tail shrinks (one core idle for 58 s at the end in p order)."""
    return (tau_seed is not None and seed != tau_seed, -p, seed)


def default_max_jobs(executor: str, resources: JobResources, n_units: int) -> int:
    """Jobs at once: for ``local``, as many as the cores this process may use (its CPU affinity, as under
    ``taskset`` or a cgroup-limited container, not the machine's count) hold at the job's CPU count; for
    ``slurm``, every ready unit (the scheduler queues them)."""
    if executor == LOCAL:
        return max(1, usable_cores() // max(resources.cpus, 1))
    return max(n_units, 1)


def earlier_live_jobs(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(job id, segment)`` of jobs that an earlier controller submitted and did not see end, and that still
    run: SLURM jobs squeue lists as queued or running, local jobs whose process lives on this host."""
    try:
        doc = read_json(folder / SWEEP_FILE)
    except (OSError, ValueError):
        return []
    import socket

    here = socket.gethostname()
    found: list[tuple[str, dict[str, Any]]] = []
    for seg in doc.get("segments", []) if isinstance(doc, dict) else []:
        open_ids = [j["job"] for j in seg.get("jobs") or [] if j.get("ended") is None]
        if not open_ids:
            continue
        if seg.get("executor") == SLURM and slurm_missing() is None:
            states = queue_states(open_ids) or {}
            found += [(i, seg) for i in open_ids if states.get(i) in ACTIVE_STATES]
        elif seg.get("executor") == LOCAL and seg.get("host") == here:
            found += [(i, seg) for i in open_ids if i.isdigit() and pid_alive(int(i))]
    return found


class Controller:
    """Submits the units' jobs, follows them through their progress files and keeps the segment."""

    def __init__(self, runs: list[Run], outcomes: list[RunOutcome], units: list[Unit], executor: str,
                 resources: JobResources, max_jobs: int, force: bool, stop_on_error: bool, kernel: str,
                 chain: bool, segment: dict[str, Any], save: Callable[[], None], emit: Callable[[str], None]):
        import submitit

        self.runs, self.outcomes, self.units, self.executor = runs, outcomes, units, executor
        self.resources, self.max_jobs, self.force, self.stop_on_error = resources, max_jobs, force, stop_on_error
        self.kernel, self.chain, self.segment, self.save, self.emit = kernel, chain, segment, save, emit
        self.failed_at: dict[tuple[int, int] | None, tuple[float, str]] = {}
        folder = runs[0].results_dir / JOBS_DIR
        kwargs = {"slurm_max_num_timeout": MAX_REQUEUES} if executor == SLURM else {}
        self.submitter = submitit.AutoExecutor(folder=folder / "%j", cluster=executor, **kwargs)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        while True:
            self.submit_ready()
            active = self.active()
            if not active and not any(u.state == "waiting" for u in self.units):
                return
            self.poll(active)
            time.sleep(POLL_S[self.executor])

    def active(self) -> list[Unit]:
        return [u for u in self.units if u.state == "submitted"]

    def submit_ready(self) -> None:
        for u in self.units:
            if u.state != "waiting" or any(self.units[d].state in ("waiting", "submitted") for d in u.after):
                continue
            if len(self.active()) >= self.max_jobs:
                return
            stopped = self.stop_on_error and any(o.status == "failed" for o in self.outcomes)
            for i in u.runs:
                skip = skip_reason(self.runs[i], self.force, self.failed_at, stopped)
                if skip:
                    self.outcomes[i].status, self.outcomes[i].reason = skip
                    self.emit(f"{self.label(i)} {self.runs[i].name}: {self.outcomes[i].label}")
                else:
                    u.todo.append(i)
            if u.todo:
                self.submit(u)
            else:
                u.state = "not submitted"

    def submit(self, u: Unit) -> None:
        profile = self.runs[0].profile
        name = f"repro-{profile}-{u.name.replace(' ', '-')}"
        self.submitter.update_parameters(**submitit_parameters(self.resources, self.executor, name))
        todo = [self.runs[i] for i in u.todo]
        try:
            u.job = self.submitter.submit(ChainJob(todo, u.todo, len(self.runs), self.force, self.stop_on_error,
                                                   self.kernel, self.chain))
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal (a bad partition or option) becomes one message
            raise SubmitError(f"could not submit the job of {u.name} ({self.executor}): {error_line(exc)}; check "
                              f"the --slurm-* options ({self.resources.describe()})") from None
        u.state = "submitted"
        for i in u.todo:
            self.outcomes[i].status, self.outcomes[i].job = "queued", u.job_id
        log, err = project_relative(u.job.paths.stdout), project_relative(u.job.paths.stderr)
        u.record = {"job": u.job_id, "unit": u.name, "runs": [r.key for r in todo], "state": "submitted",
                    "submitted": utc_now(), "ended": None, "log": log, "errors": err}
        self.segment["jobs"].append(u.record)
        self.emit(f"job {u.job_id} submitted ({self.executor}): {u.name}, {len(todo)} run(s) "
                  f"({', '.join(dict.fromkeys(r.stem for r in todo))}); log {log}, errors {err}")
        self.save()

    # ------------------------------------------------------------------ following the jobs
    def label(self, i: int) -> str:
        return f"[{i + 1}/{len(self.runs)}]"

    def poll(self, active: list[Unit]) -> None:
        states = queue_states([u.job_id for u in active]) if self.executor == SLURM else None
        for u in active:
            self.read(u)
            ended = self.ended(u, states)
            if ended:
                self.finish(u, ended)

    def read(self, u: Unit) -> None:
        """Take over what the job's progress file says of its runs; print what changed."""
        changed = False
        where = {self.runs[i].key: i for i in u.todo}
        for key, state in read_progress(progress_path(u.job.paths.folder)).get("runs", {}).items():
            i = where.get(key)
            status = state.get("status")
            if i is None or status == "pending" or u.seen.get(key) == status:
                continue
            u.seen[key] = status
            o = self.outcomes[i]
            o.restore(state)
            o.job = u.job_id
            changed = True
            self.emit(self.line(i, u))
            if o.status == "failed":
                self.note_failure(i)
        if changed:
            self.save()

    def line(self, i: int, u: Unit) -> str:
        o, run = self.outcomes[i], self.runs[i]
        head = f"{self.label(i)} {run.name}:"
        if o.status == "done":
            return f"{head} done in {fmt_seconds(o.wall_s)} -> {project_relative(run.result)} (job {u.job_id})"
        if o.status == "failed":
            return f"{head} FAILED after {fmt_seconds(o.wall_s)}: {o.error} (job {u.job_id}, log {u.record['log']})"
        return f"{head} {o.label} (job {u.job_id})"

    def note_failure(self, i: int) -> None:
        run = self.runs[i]
        key = (run.p, run.seed) if run.per_run else None
        self.failed_at[key] = min(self.failed_at.get(key, (run.rank, run.stem)), (run.rank, run.stem))

    def ended(self, u: Unit, states: dict[str, str] | None) -> str | None:
        """The job's end state once it has ended, else ``None``."""
        if self.executor != SLURM:
            return u.job.state if u.job.done() else None
        if u.job.paths.result_pickle.exists():
            state = (states or {}).get(u.job_id)
            return state if state and state not in ACTIVE_STATES and state != GONE else "COMPLETED"
        if states is None:          # squeue did not answer: ask again at the next poll
            return None
        state = states[u.job_id]
        if state in ACTIVE_STATES:
            u.left_queue = None
            return None
        if state in ("COMPLETED", GONE):
            u.left_queue = u.left_queue or time.monotonic()
            if time.monotonic() - u.left_queue < END_GRACE_S:
                return None
        return "left the queue" if state == GONE else state

    def finish(self, u: Unit, state: str) -> None:
        """The job has ended: its last progress, and what it left open."""
        self.read(u)
        u.state = "ended"
        cause = ""
        if u.job.paths.result_pickle.exists():
            exc = u.job.exception()
            cause = f": {error_line(exc)}" if exc else ""
        how = f"job {u.job_id} ended ({state}{cause})"
        for i in u.todo:
            o = self.outcomes[i]
            stopped = o.status == "interrupted" or (o.status == "not run" and o.reason == JOB_STOPPED)
            if o.status not in OPEN and not stopped:
                continue
            before = (o.status, o.reason)
            if u.cancelled:   # by this controller: the sweep is interrupted
                o.status, o.reason = ("interrupted", None) if o.started else ("not run", "sweep interrupted")
            elif o.started:   # by someone else (scancel), a node failure, a crash: the run failed
                o.status, o.reason, o.error = "failed", None, f"{how} during this run; log {u.record['log']}"
                self.note_failure(i)
            else:
                o.status, o.reason = "not run", f"{how} before this run"
            if (o.status, o.reason) != before:
                self.emit(self.line(i, u))
        u.record.update(state=state, ended=utc_now())
        counts = {s: sum(self.outcomes[i].status == s for i in u.todo) for s in ("done", "skipped", "failed")}
        self.emit(f"job {u.job_id} ended ({state}{cause}): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        self.save()

    def cancel(self) -> None:
        """Cancel every job still queued or running, wait (at most :data:`CANCEL_WAIT_S`) for them to end,
        and record what they did."""
        active = self.active()
        if not active:
            return
        self.emit(f"cancelling job(s) {' '.join(u.job_id for u in active)}")
        for u in active:
            u.cancelled = True
            try:
                if self.executor == SLURM:
                    u.job.cancel(check=False)   # scancel: SIGTERM to the job, SIGKILL after the cluster's KillWait
                else:   # submitit's local cancel sends SIGINT, which a process started in the background ignores;
                    os.kill(int(u.job_id), signal.SIGTERM)   # its job controller forwards SIGTERM to the job
            except OSError as exc:
                self.emit(f"could not cancel job {u.job_id}: {exc}")
        deadline = time.monotonic() + CANCEL_WAIT_S
        try:
            while active and time.monotonic() < deadline:
                time.sleep(POLL_S[self.executor])
                states = queue_states([u.job_id for u in active]) if self.executor == SLURM else None
                for u in list(active):
                    self.read(u)
                    if self.executor == SLURM and states and states.get(u.job_id) not in ACTIVE_STATES:
                        self.finish(u, states[u.job_id])
                    elif self.executor != SLURM and u.job.done():
                        self.finish(u, u.job.state)
                    else:
                        continue
                    active.remove(u)
        except KeyboardInterrupt:
            self.emit("stopped waiting for the cancelled jobs")
        for u in active:
            self.emit(f"job {u.job_id} did not end within {CANCEL_WAIT_S} s of its cancellation; "
                      f"its log: {u.record['log']}")


def run_with_jobs(runs: Sequence[Run], executor: str, resources: JobResources, force: bool = False,
                  stop_on_error: bool = False, kernel_name: str | None = None, command: str = "sweep",
                  chain: bool = True, max_jobs: int | None = None,
                  log: Callable[[str], None] = print) -> SweepReport:
    """Run ``runs`` as jobs of ``executor`` (``local`` or ``slurm``), ``max_jobs`` at once (default:
    :func:`default_max_jobs`); the resume rule, failures and interruption as in
    :func:`repro.sweep.run.run_sweep` (module doc)."""
    runs = list(runs)
    emit = log
    if not runs:
        emit("nothing to run")
        return SweepReport([])
    if executor not in (LOCAL, SLURM):
        raise ConfigError(f"executor {executor!r} does not submit jobs; use {LOCAL!r} or {SLURM!r}")
    if executor == SLURM and slurm_missing():
        raise ConfigError(slurm_missing())
    if max_jobs is not None and max_jobs < 1:
        raise ConfigError(f"--max-jobs {max_jobs} is not allowed: give 1 or more jobs at once")
    folder = one_results_folder(runs)
    kernel = kernel_name or DEFAULT_KERNEL
    kernel_cmd = check_kernel(kernel)
    outcomes = [RunOutcome(r) for r in runs]
    units = plan_units(runs)
    limit = max_jobs or default_max_jobs(executor, resources, len(units))

    with sweep_lock(folder, emit):
        leftover = earlier_live_jobs(folder)
        if leftover:
            ids = " ".join(i for i, _ in leftover)
            seg = leftover[0][1]
            how = f"scancel {ids}" if seg.get("executor") == SLURM else f"kill {ids}"
            raise SweepLockedError(
                f"job(s) {ids} of an earlier sweep (pid {seg.get('pid')} on {seg.get('host')}, started "
                f"{seg.get('started')}) still run and write into {folder}: wait for them to end or cancel them "
                f"({how}), then run this command again")
        clean_partials(folder)
        t0 = time.monotonic()
        segment = new_segment(outcomes, command, force, stop_on_error, chain, kernel, kernel_cmd, executor)
        segment.update(resources=asdict(resources), max_jobs=limit, jobs=[])
        record = SweepRecord(folder / SWEEP_FILE, segment, emit)

        def save() -> None:
            segment["runs"] = [o.to_dict() for o in outcomes]
            update_segment(segment, outcomes, t0)
            record.save()

        ctl = Controller(runs, outcomes, units, executor, resources, limit, force, stop_on_error, kernel, chain,
                         segment, save, emit)
        emit(f"sweep of {len(runs)} run(s) in {len(units)} unit(s) as {executor} jobs, at most {limit} at once "
             f"({resources.describe()}); job folders under {project_relative(folder / JOBS_DIR)}")
        interrupted: BaseException | None = None
        try:
            with kernel_env(), signals_as_interrupt():  # jobs import repro from this checkout, like kernels
                ctl.run()
        except KeyboardInterrupt as exc:
            interrupted = exc
            with signals_as_interrupt():
                ctl.cancel()
        except BaseException:
            segment["status"] = "crashed"
            ctl.cancel()
            raise
        finally:
            segment["finished"] = utc_now()
            if segment["status"] == "running":
                segment["status"] = "interrupted" if interrupted else "finished"
            close_outcomes(outcomes)
            peaks = [o.peak_memory_mb for o in outcomes if o.peak_memory_mb]
            segment["peak_memory_mb"] = max(peaks, default=None)
            save()

    report = SweepReport(outcomes, segment["wall_s"], segment["peak_memory_mb"] or 0.0, interrupted is not None,
                         record.path if record.active else None)
    if not segment["jobs"] and all(o.reason == "result exists" for o in outcomes):
        emit("every result exists: nothing to submit")
    emit(report.summary())
    if interrupted is not None:
        emit("sweep interrupted: its jobs were cancelled, completed runs keep their results; "
             "run the same command again to resume")
        raise interrupted
    return report
