"""Batch runs of the numbered notebooks with papermill: plan, run, resume (docs/design.md §1, §6).

A *run* is one notebook executed for one ``(profile, p, seed)``.  Every notebook
follows one contract: its first code cell is tagged ``parameters`` and defines
some of ``profile, p, seed, data_root, results_dir``; when it finishes it writes
ONE result JSON,

* ``<results_dir>/p<p>/seed<seed>/<stem>.json`` if it has ``p`` and ``seed`` parameters,
* ``<results_dir>/<stem>.json`` otherwise (``00_data``, ``06_report``).

The result JSON is what counts: a run whose result exists is complete and a
resumed sweep skips it; a run killed half-way has no result (the notebook writes
it last) and is run again.  Executed notebooks are written under a temporary
name and renamed when the run ends, so a half-executed notebook never sits at
the final path; they live in ``<results_dir>/executed/`` (git-ignored).

Each sweep that starts a run appends one *segment* to ``<results_dir>/sweep.json``,
beside the results it produces (atomic rewrites after every run), with the runs'
status and wall time, peak memory, git commit and timestamps; a resumed sweep adds
a segment, so the file keeps the whole history, and a sweep that skips every run
leaves the file as it was.  One sweep at a time may use a results folder (lock file
``.sweep.lock``, a stale lock of a dead process is taken over).

The runs of one (p, seed) that follow each other in the plan (01 -> 04 -> 02 -> 03) share one kernel
(:mod:`repro.sweep.chain`): imports and data preparation are paid once per chain, each notebook still
starts from an empty namespace and writes its own executed notebook and result. Each run's wall time
is split into phases (kernel start, data preparation, feature and teacher caches, training, validation,
evaluation, writing, other; :mod:`repro.phases`), recorded per run and summed in ``phases_s``.

While a notebook runs, its printed output (training progress, one line per epoch,
and warnings) is streamed line by line, prefixed with the run's name, to the sweep's
log (:class:`LineStream`); the sweep's own progress bar shows only on a terminal.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from repro.progress import PROGRESS_ENV
from repro.errors import ConfigError
from repro.io import read_json, tag_is_stale
from repro.names import INLINE, SWEEP_FILE
from repro.paths import project_relative
from repro.provenance import git_commit
from repro.sweep.chain import KERNEL_START, KernelPool
from repro.sweep.kernel import DEFAULT_KERNEL, check_kernel, kernel_env
from repro.sweep.lock import signals_as_interrupt, sweep_lock, utc_now
from repro.sweep.plan import Run
from repro.sweep.record import MemorySampler, RunOutcome, SweepRecord, SweepReport, error_line, fmt_seconds

try:  # psutil samples the kernels' memory while they run (getrusage only sees reaped children)
    import psutil
except ImportError:  # pragma: no cover - psutil is a declared dependency
    psutil = None


PARTIAL_GLOB = ".*.partial.ipynb"
OTHER = "other"


PARTIAL_SUFFIX = ".partial.ipynb"


def clean_partials(folder: Path) -> None:
    """Remove half-written executed notebooks of killed runs (the caller holds the lock): those of a process
    of this host that is gone, and those named before names carried the host; a partial of another host's
    process is kept (its pid cannot be checked here) until its run is run again (:func:`_run_one`)."""
    executed = folder / "executed"
    if executed.is_dir():
        for q in executed.rglob(PARTIAL_GLOB):
            tag = q.name[1:-len(PARTIAL_SUFFIX)].partition(".")[2]
            if tag.isdigit() or tag_is_stale(tag):
                q.unlink(missing_ok=True)


class LineStream:
    """A file-like sink for a kernel's stdout/stderr: each line goes to ``emit``, prefixed.

    A line ended by a carriage return is a progress bar redrawing itself: of those, one
    every ``redraw_s`` seconds is shown (the first at once), so that a long step stays
    visible in a log without a line per redraw.
    """

    def __init__(self, emit: Callable[[str], None], prefix: str, redraw_s: float = 30.0):
        self.emit, self.prefix, self.redraw_s = emit, prefix, redraw_s
        self.buf, self.shown = "", -float("inf")

    def _line(self, line: str) -> None:
        if line.strip():
            self.emit(f"{self.prefix}{line.rstrip()}")

    def write(self, text: str) -> int:
        self.buf += text.replace("\r\n", "\n")
        while True:
            cut = min((i for i in (self.buf.find("\n"), self.buf.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                return len(text)
            line, end, self.buf = self.buf[:cut], self.buf[cut], self.buf[cut + 1:]
            if end == "\n":
                self._line(line)
            elif line.strip() and time.monotonic() - self.shown >= self.redraw_s:
                self.shown = time.monotonic()
                self._line(line)

    def flush(self) -> None:
        self._line(self.buf)
        self.buf = ""


@contextmanager
def progress_as_lines() -> Iterator[None]:
    """Kernels started inside print training progress as plain lines (:mod:`repro.progress`)."""
    saved = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "lines"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = saved


KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]  # no per-run transport warnings in sweep logs


def _execute(run: Run, pool: KernelPool, out: RunOutcome, emit: Callable[[str], None]) -> None:
    """papermill-execute ``run`` in the pool's kernel for its chain; its phase timings go to ``out``."""
    run.executed.parent.mkdir(parents=True, exist_ok=True)
    stream = LineStream(emit, f"    {run.name} | ")
    kernel, start_s = pool.for_run(run)
    try:
        kernel.execute(run, stream, KERNEL_ARGUMENTS)
    finally:
        stream.flush()
        out.phases = {**({KERNEL_START: round(start_s, 3)} if start_s else {}), **kernel.phases}


STATUSES = ("done", "skipped", "failed", "running", "interrupted", "not run", "pending", "queued")


def one_results_folder(runs: Sequence[Run]) -> Path:
    """The one results folder all ``runs`` write to (a ConfigError naming them when there are several)."""
    folders = {r.results_dir for r in runs}
    if len(folders) != 1:
        raise ConfigError(f"one sweep writes to one results folder; these runs use {sorted(map(str, folders))}")
    return folders.pop()


def new_segment(outcomes: Sequence[RunOutcome], command: str, force: bool, stop_on_error: bool, chain: bool,
                kernel: str, kernel_cmd: str, executor: str) -> dict[str, Any]:
    """This invocation's segment of ``sweep.json``: what was asked, by whom (host and pid), and every run."""
    runs = [o.run for o in outcomes]
    return {
        "command": command, "status": "running", "profile": runs[0].profile,
        "started": utc_now(), "updated": None, "finished": None, "wall_s": 0.0, "peak_memory_mb": None,
        "notebooks": list(dict.fromkeys(r.stem for r in runs)),
        "ps": sorted({r.p for r in runs if r.p is not None}),
        "seeds": sorted({r.seed for r in runs if r.seed is not None}),
        "force": force, "stop_on_error": stop_on_error, "chain": chain, "executor": executor,
        "git_commit": git_commit(), "host": socket.gethostname(), "pid": os.getpid(), "python": sys.executable,
        "python_version": sys.version.split()[0], "kernel": kernel, "kernel_command": kernel_cmd,
        "counts": {}, "runs": [o.to_dict() for o in outcomes],
    }


def update_segment(segment: dict[str, Any], outcomes: Sequence[RunOutcome], t0: float) -> None:
    """The segment's counts, wall time so far (a killed segment keeps its last value) and update time."""
    segment["counts"] = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    segment["wall_s"] = round(time.monotonic() - t0, 3)
    segment["updated"] = utc_now()


def close_outcomes(outcomes: Sequence[RunOutcome], reason: str = "sweep interrupted") -> None:
    """At the end of a segment (or a job) no run is left pending or running: a started one was interrupted,
    the others were not run (``reason``)."""
    for o in outcomes:
        if o.status in ("pending", "queued", "running"):
            o.status, o.reason = ("interrupted", None) if o.started else ("not run", reason)


def run_sweep(
    runs: Sequence[Run],
    force: bool = False,
    log: Callable[[str], None] = print,
    stop_on_error: bool = False,
    kernel_name: str | None = None,
    command: str = "sweep",
    chain: bool = True,
) -> SweepReport:
    """Execute ``runs`` in order with papermill; resumable; records ``sweep.json`` once a run starts.

    * A run whose result JSON exists is skipped (unless ``force``).
    * A failing run keeps its executed notebook (with the error in it) and is
      reported with the error's last line; the sweep goes on, but later runs of
      the same (p, seed) that run after it (:attr:`Run.rank`) are skipped ("depends on
      failed <stem>"), and a failed once-notebook (``00_data``) blocks every
      later run.  ``stop_on_error`` stops at the first failure.
    * A run that ends without writing its result JSON counts as failed.
    * Ctrl-C or SIGTERM: the kernel is shut down, the half-executed notebook is
      removed, ``sweep.json`` records the segment as interrupted, and the
      ``KeyboardInterrupt`` (:class:`SweepInterrupted` for SIGTERM) is re-raised;
      rerunning the same command resumes.
    * Every run uses the kernel ``kernel_name`` (default ``python3``), which must
      start this interpreter (:func:`check_kernel`); kernels import ``repro``
      from this checkout. With ``chain`` (default) the runs of one (p, seed) that
      follow each other share one kernel (:mod:`repro.sweep.chain`); ``chain=False``
      starts a kernel per run. A failed or interrupted run's kernel is shut down.
    """
    from tqdm import tqdm

    runs = list(runs)
    emit = tqdm.write if log is print else log
    if not runs:
        emit("nothing to run")
        return SweepReport([])
    folder = one_results_folder(runs)
    kernel = kernel_name or DEFAULT_KERNEL
    kernel_cmd = check_kernel(kernel)
    outcomes = [RunOutcome(r) for r in runs]

    with sweep_lock(folder, emit):
        clean_partials(folder)
        t0 = time.monotonic()
        segment = new_segment(outcomes, command, force, stop_on_error, chain, kernel, kernel_cmd, INLINE)
        record = SweepRecord(folder / SWEEP_FILE, segment, emit)
        # the bar only on a terminal (disable=None): a log gets the plain "[i/n] run: ..." lines
        bar = tqdm(total=len(runs), unit="run", desc=f"sweep {runs[0].profile}", dynamic_ncols=True, disable=None)
        current: dict[str, Any] = {"name": "", "t": 0.0, "shown": 0.0}
        live = sys.stderr.isatty()

        def on_sample(mb: float) -> None:  # elapsed time and memory of the current run, every 2 s on a terminal
            now = time.monotonic()
            if current["name"] and now - current["shown"] >= 2.0:
                current["shown"] = now
                bar.set_postfix_str(f"{current['name']} {now - current['t']:.0f}s {mb:.0f}MiB", refresh=live)

        sampler = MemorySampler(on_sample=on_sample).start()
        pool = KernelPool(kernel, KERNEL_ARGUMENTS, share=chain)
        interrupted: BaseException | None = None

        def save(i: int) -> None:
            segment["runs"][i] = outcomes[i].to_dict()
            update_segment(segment, outcomes, t0)
            record.save()

        try:
            with kernel_env(), progress_as_lines(), signals_as_interrupt():
                run_loop(runs, outcomes, pool, sampler, current, emit, force, stop_on_error, save=save,
                         before=lambda run: bar.set_postfix_str(run.name), after=lambda: bar.update(1))
        except KeyboardInterrupt as exc:
            interrupted = exc
        except BaseException:
            segment["status"] = "crashed"
            raise
        finally:
            current["name"] = ""
            with suppress(Exception):  # a kernel that will not shut down must not cost the record
                pool.close()
            bar.close()
            segment["peak_memory_mb"] = sampler.stop()
            segment["wall_s"] = round(time.monotonic() - t0, 3)
            segment["finished"] = utc_now()
            if segment["status"] == "running":
                segment["status"] = "interrupted" if interrupted else "finished"
            close_outcomes(outcomes)
            for i in range(len(outcomes)):
                segment["runs"][i] = outcomes[i].to_dict()
            save(len(outcomes) - 1)

    report = SweepReport(outcomes, segment["wall_s"], segment["peak_memory_mb"], interrupted is not None,
                         record.path if record.active else None)
    emit(report.summary())
    if interrupted is not None:
        emit("sweep interrupted: completed runs keep their results; run the same command again to resume")
        raise interrupted
    return report


def run_loop(runs: Sequence[Run], outcomes: Sequence[RunOutcome], pool: KernelPool, sampler: MemorySampler,
             current: dict[str, Any], emit: Callable[[str], None], force: bool, stop_on_error: bool,
             save: Callable[[int], None], positions: Sequence[int] | None = None, total: int | None = None,
             before: Callable[[Run], None] | None = None, after: Callable[[], None] | None = None) -> None:
    """The run loop of a sweep, and of a job that runs part of one (:mod:`repro.sweep.job`): each run is
    skipped (:func:`skip_reason`) or executed in the pool's kernel, and ``save(i)`` is called after each.

    ``positions`` (default ``0..n-1``) and ``total`` (default ``n``) number the runs in the lines printed
    (``[3/7] ...``): a job's runs keep their place in the whole sweep."""
    positions = list(range(len(runs))) if positions is None else list(positions)
    total = len(runs) if total is None else total
    failed_at: dict[tuple[int, int] | None, tuple[float, str]] = {}
    for i, (run, out) in enumerate(zip(runs, outcomes)):
        label = f"[{positions[i] + 1}/{total}]"
        if before:
            before(run)
        skip = skip_reason(run, force, failed_at, stop_on_error and any(o.status == "failed" for o in outcomes))
        if skip:
            out.status, out.reason = skip
        else:
            _run_one(run, out, pool, sampler, current, emit, label, lambda: save(i))
            if out.status != "done":
                pool.close()  # what follows starts from a fresh kernel
            if out.status == "failed":
                key = (run.p, run.seed) if run.per_run else None
                failed_at[key] = min(failed_at.get(key, (run.rank, run.stem)), (run.rank, run.stem))
        if out.status in ("skipped", "not run"):
            emit(f"{label} {run.name}: {out.label}")
        save(i)
        if after:
            after()


def skip_reason(run: Run, force: bool, failed_at: dict[tuple[int, int] | None, tuple[float, str]],
                 stopped: bool) -> tuple[str, str] | None:
    """``(status, reason)`` of a run the sweep does not execute, or ``None`` to run it.

    The resume rule: a run whose result JSON exists is complete (unless ``force``). A run that depends
    on a failed earlier run (:func:`failed_dependency`) is skipped; after a failure with ``stop_on_error``
    (``stopped``) nothing more runs."""
    if run.result.exists() and not force:
        return "skipped", "result exists"
    blocker = failed_dependency(run, failed_at)
    if blocker:
        return "skipped", f"depends on failed {blocker}"
    if stopped:
        return "not run", "stopped after a failure"
    return None


def failed_dependency(run: Run, failed_at: dict[tuple[int, int] | None, tuple[float, str]]) -> str | None:
    """Stem of a failed earlier run this run depends on (same p and seed, or a failed once-notebook)."""
    hits = [failed_at.get(None)] + ([failed_at.get((run.p, run.seed))] if run.per_run else [])
    for hit in hits:
        if hit and hit[0] < run.rank:
            return hit[1]
    return None


def _with_other(phases: dict[str, float], wall_s: float) -> dict[str, float]:
    """The run's phases plus ``other``: its wall time outside every recorded phase (imports, tables, figures,
    papermill's own work); never negative."""
    other = wall_s - sum(phases.values())
    return {**phases, OTHER: round(max(other, 0.0), 3)}


def _run_one(run: Run, out: RunOutcome, pool: KernelPool, sampler: MemorySampler, current: dict[str, Any],
             emit: Callable[[str], None], label: str, save: Callable[[], None]) -> None:
    from papermill.exceptions import PapermillExecutionError

    out.status, out.started = "running", utc_now()
    current.update(name=run.name, t=time.monotonic())
    save()
    emit(f"{label} {run.name}: running")
    sampler.start_run()
    t = time.monotonic()
    partial = run.partial
    for stale in run.executed.parent.glob(f".{run.executed.stem}.*.partial.ipynb"):
        stale.unlink(missing_ok=True)
    try:
        _execute(run, pool, out, emit)
    except PapermillExecutionError as exc:
        out.status, out.error = "failed", error_line(exc)
    except KeyboardInterrupt:
        out.status = "interrupted"
        partial.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure of one run is reported, the sweep goes on
        out.status, out.error = "failed", error_line(exc)
    else:
        out.status = "done"
    finally:
        out.wall_s = time.monotonic() - t
        out.phases = _with_other(out.phases, out.wall_s)
        out.finished = utc_now()
        out.peak_memory_mb = sampler.end_run()
        current["name"] = ""
    if out.status == "done":
        try:
            read_json(run.result)
        except FileNotFoundError:
            out.status, out.error = "failed", f"the notebook finished but wrote no result at {run.result}"
        except (OSError, ValueError) as exc:
            out.status, out.error = "failed", f"unreadable result {run.result}: {exc}"
    if partial.exists():
        os.replace(partial, run.executed)
        out.executed = run.executed
    if out.status == "done":
        emit(f"{label} {run.name}: done in {fmt_seconds(out.wall_s)} -> {project_relative(run.result)}")
    else:
        emit(f"{label} {run.name}: FAILED after {fmt_seconds(out.wall_s)}: {out.error}"
             + (f"\n    executed notebook: {out.executed}" if out.executed else ""))
