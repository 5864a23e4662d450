"""The record of a sweep: each run's outcome, the memory sampler, and ``sweep.json`` (docs/design.md §6)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from repro.io import pid_alive, read_json, write_json
from repro.paths import project_relative
from repro.phases import FEATURE_BUILD
from repro.provenance import peak_memory_mb
from repro.sweep.plan import Run

try:  # psutil samples the kernels' memory while they run (getrusage only sees reaped children)
    import psutil
except ImportError:  # pragma: no cover - psutil is a declared dependency
    psutil = None




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
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per phase (repro.phases, run.OTHER)
    job: str | None = None     # the id of the job that ran it (executors local and slurm)

    #: what a job reports back of each run (:meth:`state`, :meth:`restore`)
    STATE = ("status", "reason", "wall_s", "error", "peak_memory_mb", "started", "finished", "phases")

    @property
    def label(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status

    def state(self) -> dict[str, Any]:
        """The outcome as JSON values, without the run (a job's progress file)."""
        return {k: getattr(self, k) for k in self.STATE} | {"executed": str(self.executed) if self.executed else None}

    def restore(self, state: dict[str, Any]) -> None:
        """Take over what :meth:`state` wrote."""
        for k in self.STATE:
            setattr(self, k, state.get(k, getattr(self, k)))
        self.executed = Path(state["executed"]) if state.get("executed") else None

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "key": r.key, "notebook": project_relative(r.notebook), "p": r.p, "seed": r.seed,
            "parameters": r.parameters, "status": self.status, "reason": self.reason,
            "wall_s": round(self.wall_s, 3), "started": self.started, "finished": self.finished,
            "result": project_relative(r.result), "executed": project_relative(self.executed) if self.executed else None,
            "error": self.error, "peak_memory_mb": self.peak_memory_mb, "phases": self.phases or None, "job": self.job,
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
                 f"in {fmt_seconds(self.wall_s)} (peak memory {self.peak_memory_mb:.0f} MiB)"]
        for o in self.failures:
            lines.append(f"  FAILED {o.run.name}: {o.error}")
            if o.executed:
                lines.append(f"         executed notebook: {o.executed}")
        if self.sweep_json:
            lines.append(f"  record: {self.sweep_json}")
        return "\n".join(lines)


def fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


class MemorySampler:
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

    def start(self) -> "MemorySampler":
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


class SweepRecord:
    """``sweep.json``: one segment per invocation plus a merged per-run view; rewritten atomically.

    The file is read and written only once a run of this segment has started: a sweep that
    skips every run (all results exist) leaves an existing record untouched.
    """

    def __init__(self, path: Path, segment: dict[str, Any], log: Callable[[str], None]):
        self.path = path
        self.segment = segment
        self.log = log
        self.doc: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """Whether a run of this segment has started (only then is the record written)."""
        return any(r.get("status") not in ("pending", "skipped", "not run") for r in self.segment["runs"])

    def _load(self) -> dict[str, Any]:
        path, segment = self.path, self.segment
        doc: dict[str, Any] = {"profile": segment["profile"], "segments": []}
        if path.exists():
            try:
                old = read_json(path)
                if not isinstance(old, dict) or not isinstance(old.get("segments"), list):
                    raise ValueError("not a sweep record")
                doc = old
            except (OSError, ValueError) as exc:
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                os.replace(path, aside)
                self.log(f"warning: {path} was unreadable ({exc}); moved it to {aside.name} and started a new record")
        for seg in doc["segments"]:
            if seg.get("status") == "running" and not (seg.get("host") == segment["host"] and pid_alive(seg.get("pid", -1))):
                seg["status"] = "killed"
                for r in seg.get("runs", []):
                    if r.get("status") in ("running", "queued"):
                        r["status"] = "killed"
                seg["counts"] = {k: v for k, v in seg.get("counts", {}).items() if k != "running"}
                seg["counts"]["killed"] = sum(r.get("status") == "killed" for r in seg.get("runs", []))
        doc["segments"].append(segment)
        return doc

    def save(self) -> None:
        """Rewrite the record with this segment's current state (nothing while no run has started)."""
        if not self.active:
            return
        if self.doc is None:
            self.doc = self._load()
        segs = self.doc["segments"]
        merged: dict[str, dict[str, Any]] = {}
        for i, seg in enumerate(segs):
            for r in seg.get("runs", []):
                status = r.get("status")
                if status in ("pending", "not run") or (status == "skipped" and r["key"] in merged
                                                        and r.get("reason") == "result exists"):
                    continue
                merged[r["key"]] = {k: r.get(k) for k in ("status", "reason", "wall_s", "finished", "result",
                                                          "executed", "error", "peak_memory_mb", "phases", "job")} | {"segment": i}
        # the totals count the segments whose runs are in the record (and this one): a segment whose every
        # run a later one redid (a --force sweep) stays listed under "segments" but no longer counts
        live = [s for i, s in enumerate(segs) if i == len(segs) - 1 or any(m["segment"] == i for m in merged.values())]
        self.doc.update(
            notebooks=list(dict.fromkeys(n for s in live for n in s.get("notebooks", []))),
            ps=sorted({p for s in live for p in s.get("ps", [])}),
            seeds=sorted({x for s in live for x in s.get("seeds", [])}),
            started=live[0].get("started") if live else None,
            finished=live[-1].get("finished") if live else None,
            wall_s=round(sum(s.get("wall_s") or 0.0 for s in live), 3),
            peak_memory_mb=max((s.get("peak_memory_mb") or 0.0 for s in live), default=0.0),
            git_commits=list(dict.fromkeys(s.get("git_commit") for s in live if s.get("git_commit"))),
            runs=merged,
            breakdown_s=_breakdown(merged),
            phases_s=phase_breakdown(merged),
            feature_cache_build_s=feature_cache_build_s(merged),
        )
        order = ["profile", "notebooks", "ps", "seeds", "started", "finished", "wall_s", "peak_memory_mb",
                 "git_commits", "breakdown_s", "phases_s", "feature_cache_build_s", "runs", "segments"]
        write_json(self.path, {k: self.doc[k] for k in order} | {k: v for k, v in self.doc.items() if k not in order})


def _breakdown(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Wall seconds of the runs that did work, summed per notebook (the sweep's per-stage time)."""
    out: dict[str, float] = {}
    for key, r in runs.items():
        if r.get("status") == "done" and r.get("wall_s") is not None:
            stem = key.split("/")[0]
            out[stem] = round(out.get(stem, 0.0) + float(r["wall_s"]), 3)
    return dict(sorted(out.items()))


def phase_breakdown(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Wall seconds per phase (kernel start, data preparation, caches, training, validation, evaluation,
    writing, other), summed over the runs that did work and recorded phases; ``{}`` for older records."""
    out: dict[str, float] = {}
    for r in runs.values():
        if r.get("status") == "done":
            for name, sec in (r.get("phases") or {}).items():
                out[name] = out.get(name, 0.0) + float(sec)
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def feature_cache_build_s(runs: dict[str, dict[str, Any]]) -> float | None:
    """Seconds the runs of this record spent building the frozen-trunk feature cache (None: none built it)."""
    secs = [float((r.get("phases") or {}).get(FEATURE_BUILD, 0.0)) for r in runs.values()]
    return round(sum(secs), 3) if any(secs) else None


def error_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}".strip().splitlines()[-1] if evalue else ename
    text = str(exc).strip()
    last = text.splitlines()[-1] if text else ""
    msg = f"{type(exc).__name__}: {last}" if last else type(exc).__name__
    if type(exc).__name__ == "DeadKernelError":
        msg += " (the kernel died: out of memory?)"
    return msg
