"""Batch runs of the numbered notebooks with papermill: plan, run, resume (DESIGN.md §1, §6).

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

Each sweep appends one *segment* to ``<results_dir>/sweep.json`` (atomic
rewrites after every run) with the runs' status and wall time, peak memory,
git commit and timestamps; a resumed sweep adds a segment, so the file keeps
the whole history.  One sweep at a time may use a results folder (lock file
``.sweep.lock``, a stale lock of a dead process is taken over).
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import P_VALUES
from .errors import ConfigError, ReproError
from .paths import PROJECT_ROOT, results_dir as default_results_dir
from .profiles import get_profile
from .runio import git_commit, peak_memory_mb, read_json, write_json

try:  # psutil samples the kernels' memory while they run (getrusage only sees reaped children)
    import psutil
except ImportError:  # pragma: no cover - psutil is a declared dependency
    psutil = None

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
MANAGED_PARAMS = ("profile", "p", "seed", "data_root", "results_dir")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_KERNEL = "python3"
SWEEP_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"
PARTIAL_GLOB = ".*.partial.ipynb"


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM arrived while a sweep ran; a KeyboardInterrupt, so it is handled like Ctrl-C."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SweepLockedError(ReproError):
    """Another live sweep is using the same results folder."""


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------

@dataclass
class Run:
    """One notebook for one ``(profile, p, seed)``: what to execute and where its outputs go."""

    notebook: Path
    parameters: dict[str, Any]
    result: Path
    executed: Path
    profile: str
    results_dir: Path
    number: int
    p: int | None = None
    seed: int | None = None

    @property
    def stem(self) -> str:
        return self.notebook.stem

    @property
    def per_run(self) -> bool:
        """Expanded over p x seed (``False``: runs once per profile)."""
        return self.p is not None

    @property
    def key(self) -> str:
        """Identity in ``sweep.json``: ``<stem>`` or ``<stem>/p<p>/seed<seed>``."""
        return f"{self.stem}/p{self.p}/seed{self.seed}" if self.per_run else self.stem

    @property
    def name(self) -> str:
        return f"{self.stem} p{self.p} seed{self.seed}" if self.per_run else self.stem

    @property
    def partial(self) -> Path:
        """Temporary path of the executed notebook while it runs (renamed when the run ends)."""
        return self.executed.with_name(f".{self.executed.stem}.{os.getpid()}.partial.ipynb")


@dataclass
class _Notebook:
    path: Path
    number: int
    params: dict[str, Any]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def per_run(self) -> bool:
        return "p" in self.params


def _number(stem: str) -> int | None:
    m = re.match(r"(\d+)", stem)
    return int(m.group(1)) if m else None


def resolve_notebook(name: str | os.PathLike, notebooks_dir: str | os.PathLike | None = None) -> Path:
    """A notebook given as a number (``"01"``), a stem (``"01_m1_teachers"``), a unique stem prefix or a path."""
    folder = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    text = str(name)
    if text.endswith(".ipynb") or "/" in text or os.sep in text:
        for cand in (Path(text).expanduser(), folder / text):
            if cand.is_file():
                return cand.resolve()
        raise ConfigError(f"notebook {text} does not exist")
    available = sorted(folder.glob("*.ipynb"))
    if text.isdigit():
        matches = [a for a in available if _number(a.stem) == int(text)]
    else:
        matches = [a for a in available if a.stem == text] or [a for a in available if a.stem.startswith(text)]
    if len(matches) == 1:
        return matches[0].resolve()
    if len(matches) > 1:
        raise ConfigError(f"notebook {text!r} is ambiguous in {folder}: {[m.name for m in matches]}")
    paired = sorted(q.name for q in folder.glob("*.py") if (_number(q.stem) == int(text) if text.isdigit() else q.stem.startswith(text)))
    hint = (f" Only the jupytext script(s) {paired} exist: create the notebook with "
            f"`jupytext --to ipynb {folder}/<name>.py` (or `jupytext --sync`).") if paired else ""
    raise ConfigError(
        f"no notebook {text!r} in {folder}; available: {[a.stem for a in available] or 'none'}.{hint}")


def all_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every numbered notebook of a folder, in numbered order."""
    folder = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    return sorted((q.resolve() for q in folder.glob("*.ipynb") if _number(q.stem) is not None),
                  key=lambda q: (_number(q.stem), q.stem))


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters`` cell: ``{name: default (as source text)}``."""
    import papermill

    info = papermill.inspect_notebook(str(path))
    return {k: v.get("default") for k, v in info.items()}


def _inspect(path: Path) -> _Notebook:
    number = _number(path.stem)
    if number is None:
        raise ConfigError(f"notebook {path.name} has no number; sweeps run numbered notebooks (NN_name.ipynb)")
    params = notebook_parameters(path)
    if ("p" in params) != ("seed" in params):
        raise ConfigError(
            f"notebook {path.name} declares {'p' if 'p' in params else 'seed'} but not "
            f"{'seed' if 'p' in params else 'p'}; the notebook contract wants both (one run per p and seed) or neither")
    return _Notebook(path, number, params)


def _check_ps(ps: Iterable[int]) -> list[int]:
    out = list(dict.fromkeys(int(p) for p in ps))
    bad = [p for p in out if p not in P_VALUES]
    if bad:
        raise ConfigError(f"p = {bad} is not an allowed training fraction; choose from {list(P_VALUES)}")
    return out


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    out = list(dict.fromkeys(int(s) for s in seeds))
    bad = [s for s in out if s < 0]
    if bad:
        raise ConfigError(f"seed {bad} is negative; seeds are non-negative integers")
    return out


def plan_sweep(
    notebooks: Sequence[str | os.PathLike] | None,
    profile: str,
    ps: Iterable[int] = P_VALUES,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    results_root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    extra_params: dict[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
) -> list[Run]:
    """The runs of a sweep, in the order they must execute.

    Notebooks whose parameters cell has ``p`` and ``seed`` expand over
    ``seeds x ps``; the others run once per profile.  Order: once-notebooks
    numbered before the first per-run notebook (``00_data``), then for each
    seed, for each p, the per-run notebooks in numbered order (a later
    notebook reads the earlier ones' outputs for the same p and seed), then
    the remaining once-notebooks (``06_report``).  Seeds are the outer loop so
    that a sweep stopped early holds complete p-curves for its first seeds.

    Only parameters a notebook declares are passed to it; ``results_dir`` is
    always ``<results_root>/<profile>`` (default ``results/<profile>``) and
    ``data_root`` is passed only when given.  ``extra_params`` go to the
    notebooks that declare them; a key no notebook declares is an error.
    """
    get_profile(profile)
    ps, seeds = _check_ps(ps), _check_seeds(seeds)
    names = list(notebooks) if notebooks else all_notebooks(notebooks_dir)
    if not names:
        raise ConfigError(f"no numbered notebooks in {notebooks_dir or NOTEBOOKS_DIR}")
    paths = list(dict.fromkeys(resolve_notebook(n, notebooks_dir) for n in names))
    specs = sorted((_inspect(q) for q in paths), key=lambda s: (s.number, s.stem))

    extra = dict(extra_params or {})
    managed = sorted(set(extra) & set(MANAGED_PARAMS))
    if managed:
        raise ConfigError(f"{managed} are set by the sweep itself (use --profile/--p/--seeds/--data-root/--results-root)")
    declared = set().union(*(s.params for s in specs))
    unknown = sorted(set(extra) - declared)
    if unknown:
        raise ConfigError(f"parameter(s) {unknown} are declared by none of {[s.stem for s in specs]}; "
                          f"declared: {sorted(declared)}")

    rdir = default_results_dir(profile, Path(results_root).expanduser().resolve() if results_root else None)
    if results_root and any("results_dir" not in s.params for s in specs):
        bad = [s.stem for s in specs if "results_dir" not in s.params]
        raise ConfigError(f"notebook(s) {bad} have no results_dir parameter, so their results cannot go to {rdir}")
    per = [s for s in specs if s.per_run]
    if per and not ps:
        raise ConfigError(f"notebook(s) {[s.stem for s in per]} run per p and seed: give at least one p")
    if per and not seeds:
        raise ConfigError(f"notebook(s) {[s.stem for s in per]} run per p and seed: give at least one seed")
    first_per = min((s.number for s in per), default=None)
    head = [s for s in specs if not s.per_run and (first_per is None or s.number < first_per)]
    tail = [s for s in specs if not s.per_run and s not in head]

    def make(spec: _Notebook, p: int | None, seed: int | None) -> Run:
        values: dict[str, Any] = {"profile": profile, "p": p, "seed": seed, "results_dir": str(rdir)}
        if data_root is not None:
            values["data_root"] = str(Path(data_root).expanduser().resolve())
        values.update(extra)
        params = {k: v for k, v in values.items() if k in spec.params}
        if spec.per_run:
            result = rdir / f"p{p}" / f"seed{seed}" / f"{spec.stem}.json"
            executed = rdir / "executed" / spec.stem / f"p{p}-seed{seed}.ipynb"
        else:
            result = rdir / f"{spec.stem}.json"
            executed = rdir / "executed" / f"{spec.stem}.ipynb"
        return Run(spec.path, params, result, executed, profile, rdir, spec.number, p, seed)

    runs = [make(s, None, None) for s in head]
    for seed, p in itertools.product(seeds, ps):
        runs += [make(s, p, seed) for s in per]
    runs += [make(s, None, None) for s in tail]
    return runs


# ---------------------------------------------------------------------------
# Outcomes and the report
# ---------------------------------------------------------------------------

@dataclass
class RunOutcome:
    run: Run
    status: str = "pending"   # done | skipped | failed | interrupted | not run | pending
    reason: str | None = None  # why skipped / not run
    wall_s: float = 0.0
    error: str | None = None   # last line of the error (failed runs)
    executed: Path | None = None
    peak_memory_mb: float | None = None
    started: str | None = None
    finished: str | None = None

    @property
    def label(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "key": r.key, "notebook": _rel(r.notebook), "p": r.p, "seed": r.seed,
            "parameters": r.parameters, "status": self.status, "reason": self.reason,
            "wall_s": round(self.wall_s, 3), "started": self.started, "finished": self.finished,
            "result": _rel(r.result), "executed": _rel(self.executed) if self.executed else None,
            "error": self.error, "peak_memory_mb": self.peak_memory_mb,
        }


@dataclass
class SweepReport:
    outcomes: list[RunOutcome]
    wall_s: float = 0.0
    peak_memory_mb: float = 0.0
    interrupted: bool = False
    sweep_json: Path | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def failures(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        counts = f"{self.done} done, {self.skipped} skipped, {self.failed} failed"
        for status in ("interrupted", "not run"):
            if self.count(status):
                counts += f", {self.count(status)} {status}"
        lines = [f"sweep {'interrupted' if self.interrupted else 'finished'}: {counts} "
                 f"in {_fmt_s(self.wall_s)} (peak memory {self.peak_memory_mb:.0f} MiB)"]
        for o in self.failures:
            lines.append(f"  FAILED {o.run.name}: {o.error}")
            if o.executed:
                lines.append(f"         executed notebook: {o.executed}")
        if self.sweep_json:
            lines.append(f"  record: {self.sweep_json}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Helpers: time, paths, kernel, environment, memory, lock, sweep.json
# ---------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _rel(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


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


@contextmanager
def _kernel_env() -> Iterator[None]:
    """Kernels (children) import ``repro`` from this checkout and start quietly."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYDEVD_DISABLE_FILE_VALIDATION")}
    parts = [str(PROJECT_ROOT)] + [q for q in (saved["PYTHONPATH"] or "").split(os.pathsep) if q]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
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


class _MemorySampler:
    """Peak resident memory of this process plus all its children (the kernels), sampled.

    With psutil the sum of RSS over the process tree is sampled every
    ``interval`` seconds (a spike shorter than that can be missed); the result
    is combined with ``getrusage`` (max RSS of this process and of reaped
    children), so it is a lower bound of the true peak.  Without psutil only
    ``getrusage`` is used: it sees a kernel only after it has exited.
    """

    def __init__(self, interval: float = 0.5, on_sample: Callable[[float], None] | None = None):
        self.interval = interval
        self.on_sample = on_sample
        self.peak = 0.0
        self.run_peak = 0.0
        self.method = "psutil-sampled+getrusage" if psutil else "getrusage"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process() if psutil else None

    def sample(self) -> float:
        if self._proc is None:
            return 0.0
        total = 0
        try:
            procs = [self._proc] + self._proc.children(recursive=True)
        except psutil.Error:
            return 0.0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        mb = total / 2**20
        self.peak = max(self.peak, mb)
        self.run_peak = max(self.run_peak, mb)
        return mb

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            mb = self.sample()
            if self.on_sample:
                try:
                    self.on_sample(mb)
                except Exception:  # noqa: BLE001 - a progress-bar refresh must never kill the sampler
                    pass

    def start(self) -> "_MemorySampler":
        if self._proc is not None:
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="sweep-memory", daemon=True)
            self._thread.start()
        return self

    def start_run(self) -> None:
        self.run_peak = 0.0
        self.sample()

    def end_run(self) -> float | None:
        self.sample()
        return round(self.run_peak, 1) if self._proc is not None else None

    def stop(self) -> float:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.sample()
        return round(max(self.peak, peak_memory_mb()), 1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _sweep_lock(folder: Path, log: Callable[[str], None]) -> Iterator[None]:
    """One sweep per results folder; a lock left by a dead process (kill -9) is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            pid, host = other.get("pid"), other.get("host")
            if isinstance(pid, int) and (host != me["host"] or _pid_alive(pid)) and pid != me["pid"]:
                raise SweepLockedError(
                    f"another sweep (pid {pid} on {host}, started {other.get('started')}) is using {folder}; "
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


class _SweepRecord:
    """``sweep.json``: one segment per invocation plus a merged per-run view; rewritten atomically."""

    def __init__(self, path: Path, segment: dict[str, Any], log: Callable[[str], None]):
        self.path = path
        self.doc: dict[str, Any] = {"profile": segment["profile"], "segments": []}
        if path.exists():
            try:
                old = read_json(path)
                if not isinstance(old, dict) or not isinstance(old.get("segments"), list):
                    raise ValueError("not a sweep record")
                self.doc = old
            except (OSError, ValueError) as exc:
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                os.replace(path, aside)
                log(f"warning: {path} was unreadable ({exc}); moved it to {aside.name} and started a new record")
        for seg in self.doc["segments"]:
            if seg.get("status") == "running" and not (seg.get("host") == segment["host"] and _pid_alive(seg.get("pid", -1))):
                seg["status"] = "killed"
                for r in seg.get("runs", []):
                    if r.get("status") == "running":
                        r["status"] = "killed"
                seg["counts"] = {k: v for k, v in seg.get("counts", {}).items() if k != "running"}
                seg["counts"]["killed"] = sum(r.get("status") == "killed" for r in seg.get("runs", []))
        self.segment = segment
        self.doc["segments"].append(segment)
        self.save()

    def save(self) -> None:
        segs = self.doc["segments"]
        merged: dict[str, dict[str, Any]] = {}
        for i, seg in enumerate(segs):
            for r in seg.get("runs", []):
                status = r.get("status")
                if status in ("pending", "not run") or (status == "skipped" and r["key"] in merged
                                                        and r.get("reason") == "result exists"):
                    continue
                merged[r["key"]] = {k: r.get(k) for k in ("status", "reason", "wall_s", "finished", "result",
                                                          "executed", "error", "peak_memory_mb")} | {"segment": i}
        self.doc.update(
            notebooks=list(dict.fromkeys(n for s in segs for n in s.get("notebooks", []))),
            ps=sorted({p for s in segs for p in s.get("ps", [])}),
            seeds=sorted({x for s in segs for x in s.get("seeds", [])}),
            started=segs[0].get("started") if segs else None,
            finished=segs[-1].get("finished") if segs else None,
            wall_s=round(sum(s.get("wall_s") or 0.0 for s in segs), 3),
            peak_memory_mb=max((s.get("peak_memory_mb") or 0.0 for s in segs), default=0.0),
            git_commits=list(dict.fromkeys(s.get("git_commit") for s in segs if s.get("git_commit"))),
            runs=merged,
        )
        order = ["profile", "notebooks", "ps", "seeds", "started", "finished", "wall_s", "peak_memory_mb",
                 "git_commits", "runs", "segments"]
        write_json(self.path, {k: self.doc[k] for k in order} | {k: v for k, v in self.doc.items() if k not in order})


def _error_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}".strip().splitlines()[-1] if evalue else ename
    text = str(exc).strip()
    last = text.splitlines()[-1] if text else ""
    msg = f"{type(exc).__name__}: {last}" if last else type(exc).__name__
    if type(exc).__name__ == "DeadKernelError":
        msg += " (the kernel died: out of memory?)"
    return msg


def _clean_partials(folder: Path) -> None:
    """Remove half-written executed notebooks of killed sweeps (the caller holds the lock)."""
    executed = folder / "executed"
    if executed.is_dir():
        for q in executed.rglob(PARTIAL_GLOB):
            q.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def _execute(run: Run, kernel_name: str) -> None:
    import papermill

    run.executed.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(run.notebook), str(run.partial), parameters=run.parameters, cwd=str(run.notebook.parent),
        kernel_name=kernel_name, progress_bar=False, log_output=False,
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no per-run transport warnings in sweep logs
    )


def run_sweep(
    runs: Sequence[Run],
    force: bool = False,
    log: Callable[[str], None] = print,
    stop_on_error: bool = False,
    kernel_name: str | None = None,
    command: str = "sweep",
) -> SweepReport:
    """Execute ``runs`` in order with papermill; resumable; records ``sweep.json``.

    * A run whose result JSON exists is skipped (unless ``force``).
    * A failing run keeps its executed notebook (with the error in it) and is
      reported with the error's last line; the sweep goes on, but later runs of
      the same (p, seed) with a higher notebook number are skipped ("depends on
      failed <stem>"), and a failed once-notebook (``00_data``) blocks every
      later-numbered run.  ``stop_on_error`` stops at the first failure.
    * A run that ends without writing its result JSON counts as failed.
    * Ctrl-C or SIGTERM: the kernel is shut down, the half-executed notebook is
      removed, ``sweep.json`` records the segment as interrupted, and the
      ``KeyboardInterrupt`` (:class:`SweepInterrupted` for SIGTERM) is re-raised;
      rerunning the same command resumes.
    * Every run uses the kernel ``kernel_name`` (default ``python3``), which must
      start this interpreter (:func:`check_kernel`); kernels import ``repro``
      from this checkout.
    """
    from tqdm import tqdm

    runs = list(runs)
    emit = tqdm.write if log is print else log
    if not runs:
        emit("nothing to run")
        return SweepReport([])
    folders = {r.results_dir for r in runs}
    if len(folders) != 1:
        raise ConfigError(f"one sweep writes to one results folder; these runs use {sorted(map(str, folders))}")
    folder = folders.pop()
    kernel = kernel_name or DEFAULT_KERNEL
    kernel_cmd = check_kernel(kernel)
    outcomes = [RunOutcome(r) for r in runs]

    with _sweep_lock(folder, emit):
        _clean_partials(folder)
        t0 = time.monotonic()
        segment: dict[str, Any] = {
            "command": command, "status": "running", "profile": runs[0].profile,
            "started": _now(), "updated": None, "finished": None, "wall_s": 0.0, "peak_memory_mb": None,
            "notebooks": list(dict.fromkeys(r.stem for r in runs)),
            "ps": sorted({r.p for r in runs if r.p is not None}),
            "seeds": sorted({r.seed for r in runs if r.seed is not None}),
            "force": force, "stop_on_error": stop_on_error, "git_commit": git_commit(),
            "host": socket.gethostname(), "pid": os.getpid(), "python": sys.executable,
            "python_version": sys.version.split()[0], "kernel": kernel, "kernel_command": kernel_cmd,
            "counts": {}, "runs": [o.to_dict() for o in outcomes],
        }
        record = _SweepRecord(folder / SWEEP_FILE, segment, emit)
        bar = tqdm(total=len(runs), unit="run", desc=f"sweep {runs[0].profile}", dynamic_ncols=True)
        current: dict[str, Any] = {"name": "", "t": 0.0, "shown": 0.0}
        live = sys.stderr.isatty()

        def on_sample(mb: float) -> None:  # elapsed time and memory of the current run, every 2 s on a terminal
            now = time.monotonic()
            if current["name"] and now - current["shown"] >= 2.0:
                current["shown"] = now
                bar.set_postfix_str(f"{current['name']} {now - current['t']:.0f}s {mb:.0f}MiB", refresh=live)

        sampler = _MemorySampler(on_sample=on_sample).start()
        failed_at: dict[tuple[int, int] | None, tuple[int, str]] = {}
        interrupted: BaseException | None = None

        def save(i: int) -> None:
            segment["runs"][i] = outcomes[i].to_dict()
            segment["counts"] = {s: sum(o.status == s for o in outcomes)
                                 for s in ("done", "skipped", "failed", "running", "interrupted", "not run", "pending")}
            segment["wall_s"] = round(time.monotonic() - t0, 3)  # so far: a killed segment keeps its last value
            segment["updated"] = _now()
            record.save()

        try:
            with _kernel_env(), _signals_as_interrupt():
                for i, (run, out) in enumerate(zip(runs, outcomes)):
                    bar.set_postfix_str(run.name)
                    blocker = _blocker(run, failed_at)
                    if run.result.exists() and not force:
                        out.status, out.reason = "skipped", "result exists"
                    elif blocker:
                        out.status, out.reason = "skipped", f"depends on failed {blocker}"
                    elif stop_on_error and any(o.status == "failed" for o in outcomes):
                        out.status, out.reason = "not run", "stopped after a failure"
                    else:
                        _run_one(run, out, kernel, sampler, current, emit, i, len(runs), segment, save)
                        if out.status == "failed":
                            key = (run.p, run.seed) if run.per_run else None
                            failed_at[key] = min(failed_at.get(key, (run.number, run.stem)), (run.number, run.stem))
                    if out.status in ("skipped", "not run"):
                        emit(f"[{i + 1}/{len(runs)}] {run.name}: {out.label}")
                    save(i)
                    bar.update(1)
        except KeyboardInterrupt as exc:
            interrupted = exc
        except BaseException:
            segment["status"] = "crashed"
            raise
        finally:
            current["name"] = ""
            bar.close()
            segment["peak_memory_mb"] = sampler.stop()
            segment["wall_s"] = round(time.monotonic() - t0, 3)
            segment["finished"] = _now()
            if segment["status"] == "running":
                segment["status"] = "interrupted" if interrupted else "finished"
            for o in outcomes:
                if o.status in ("pending", "running"):
                    o.status, o.reason = ("interrupted", None) if o.started else ("not run", "sweep interrupted")
            for i in range(len(outcomes)):
                segment["runs"][i] = outcomes[i].to_dict()
            save(len(outcomes) - 1)

    report = SweepReport(outcomes, segment["wall_s"], segment["peak_memory_mb"], interrupted is not None,
                         folder / SWEEP_FILE)
    emit(report.summary())
    if interrupted is not None:
        emit("sweep interrupted: completed runs keep their results; run the same command again to resume")
        raise interrupted
    return report


def _blocker(run: Run, failed_at: dict[tuple[int, int] | None, tuple[int, str]]) -> str | None:
    """Stem of a failed earlier run this run depends on (same p and seed, or a failed once-notebook)."""
    hits = [failed_at.get(None)] + ([failed_at.get((run.p, run.seed))] if run.per_run else [])
    for hit in hits:
        if hit and hit[0] < run.number:
            return hit[1]
    return None


def _run_one(run: Run, out: RunOutcome, kernel: str, sampler: _MemorySampler, current: dict[str, Any],
             emit: Callable[[str], None], i: int, n: int, segment: dict[str, Any],
             save: Callable[[int], None]) -> None:
    from papermill.exceptions import PapermillExecutionError

    out.status, out.started = "running", _now()
    current.update(name=run.name, t=time.monotonic())
    save(i)
    sampler.start_run()
    t = time.monotonic()
    partial = run.partial
    for stale in run.executed.parent.glob(f".{run.executed.stem}.*.partial.ipynb"):
        stale.unlink(missing_ok=True)
    try:
        _execute(run, kernel)
    except PapermillExecutionError as exc:
        out.status, out.error = "failed", _error_line(exc)
    except KeyboardInterrupt:
        out.status = "interrupted"
        partial.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure of one run is reported, the sweep goes on
        out.status, out.error = "failed", _error_line(exc)
    else:
        out.status = "done"
    finally:
        out.wall_s = time.monotonic() - t
        out.finished = _now()
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
        emit(f"[{i + 1}/{n}] {run.name}: done in {_fmt_s(out.wall_s)} -> {_rel(run.result)}")
    else:
        emit(f"[{i + 1}/{n}] {run.name}: FAILED after {_fmt_s(out.wall_s)}: {out.error}"
             + (f"\n    executed notebook: {out.executed}" if out.executed else ""))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON or a Python literal, else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise ConfigError(f"--param wants KEY=VALUE with a Python identifier as KEY, got {text!r}")
    for reader in (json.loads, ast.literal_eval):
        try:
            return key.strip(), reader(value)
        except (ValueError, SyntaxError):
            pass
    return key.strip(), value


def _common_args(sp: Any) -> None:
    sp.add_argument("--profile", default="quick", help="run profile: smoke, quick or paper (default: quick)")
    sp.add_argument("--force", action="store_true", help="rerun runs whose result JSON already exists")
    sp.add_argument("--data-root", default=None, help="ODIR-5K folder passed to notebooks that take data_root")
    sp.add_argument("--results-root", default=None,
                    help="results root; a profile's results go to <root>/<profile> (default: results/)")
    sp.add_argument("--notebooks-dir", default=None, help="folder of the numbered notebooks (default: notebooks/)")
    sp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="extra notebook parameter (JSON or Python literal), for the notebooks that declare it; repeatable")
    sp.add_argument("--kernel", default=None,
                    help=f"Jupyter kernel (default: {DEFAULT_KERNEL}); it must run this Python environment")
    sp.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")


def _print_plan(runs: list[Run], force: bool) -> None:
    for r in runs:
        state = "exists" if r.result.exists() and not force else "to run"
        print(f"{r.name:32s} {state:7s} -> {_rel(r.result)}")


def _cmd_sweep(args: Any) -> int:
    runs = plan_sweep(args.notebooks, args.profile, args.p, args.seeds, args.results_root, args.data_root,
                      dict(parse_param(x) for x in args.param), notebooks_dir=args.notebooks_dir)
    return _execute_cli(args, runs, "sweep")


def _cmd_run_notebook(args: Any) -> int:
    path = resolve_notebook(args.notebook, args.notebooks_dir)
    if args.p is None and "p" in notebook_parameters(path):
        raise ConfigError(f"{path.stem} runs per training fraction: give --p (one of {list(P_VALUES)})")
    ps = [args.p] if args.p is not None else []
    runs = plan_sweep([path], args.profile, ps, [args.seed], args.results_root, args.data_root,
                      dict(parse_param(x) for x in args.param))
    if len(runs) != 1:
        raise ConfigError(f"run-notebook runs one notebook for one p and seed; got {len(runs)} runs")
    return _execute_cli(args, runs, "run-notebook")


def _execute_cli(args: Any, runs: list[Run], command: str) -> int:
    if args.dry_run:
        _print_plan(runs, args.force)
        return 0
    try:
        report = run_sweep(runs, force=args.force, stop_on_error=getattr(args, "stop_on_error", False),
                           kernel_name=args.kernel, command=command)
    except SweepInterrupted as exc:
        print(f"interrupted by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    return report.exit_code


def add_cli(subparsers: Any) -> None:
    """Register ``sweep`` and ``run-notebook`` (``handler(args) -> exit code``)."""
    sp = subparsers.add_parser(
        "sweep", help="run notebooks with papermill over p and seeds (resumable)",
        description="Run numbered notebooks with papermill, one run per (p, seed) for notebooks that take them. "
                    "A run whose result JSON exists is skipped, so an interrupted sweep resumes where it stopped. "
                    "Exit code 1 if any run failed.")
    sp.add_argument("--notebooks", nargs="+", default=None, metavar="NB",
                    help="numbers, stems or paths (default: every numbered notebook), e.g. 00 01 02")
    sp.add_argument("--p", nargs="+", type=int, default=list(P_VALUES), metavar="P",
                    help=f"labeled fractions in %% (default: {' '.join(map(str, P_VALUES))})")
    sp.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), metavar="SEED",
                    help=f"seeds (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    sp.add_argument("--stop-on-error", action="store_true", help="stop at the first failed run")
    _common_args(sp)
    sp.set_defaults(func=_cmd_sweep)

    rp = subparsers.add_parser(
        "run-notebook", help="run one notebook for one p and seed with papermill",
        description="Run one notebook with papermill for one (p, seed); skipped if its result JSON exists "
                    "unless --force. The executed notebook goes to <results>/<profile>/executed/.")
    rp.add_argument("notebook", help="number, stem or path, e.g. 02 or 02_m2_distill")
    rp.add_argument("--p", type=int, default=None, help="labeled fraction in %% (notebooks that take p)")
    rp.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    _common_args(rp)
    rp.set_defaults(func=_cmd_run_notebook)
