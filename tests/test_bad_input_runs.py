"""Runs under bad input and rough handling: p outside the allowed set, two sweeps on one results
folder, a sweep killed with SIGKILL and restarted; and a sweep's live progress lines.

The sweeps run the fixture notebook tests/fixtures/progress/01_progress.ipynb (three fake
epochs printed as :mod:`repro.engine.fit` prints them, then an optional sleep, then its result).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from repro.cli import main
from repro.progress import PROGRESS_ENV, epoch_line, plain_lines
from repro.io import read_json
from repro.paths import PROJECT_ROOT
from repro.sweep.plan import plan_sweep
from repro.sweep.run import LineStream, run_sweep

FIX = Path(__file__).parent / "fixtures" / "progress"
STUDY_FIX = Path(__file__).parent / "fixtures" / "study"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop(PROGRESS_ENV, None)
    return env


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


# --- p outside the allowed set -----------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["train", "--stage", "m1", "--profile", "smoke", "--p", "20"],
    ["sweep", "--profile", "smoke", "--notebooks-dir", str(STUDY_FIX), "--notebooks", "01", "--p", "15", "20"],
    ["run-notebook", str(STUDY_FIX / "01_fake.ipynb"), "--profile", "smoke", "--p", "20"],
], ids=["train", "sweep", "run-notebook"])
def test_p_outside_the_allowed_set(argv, tmp_path, capsys):
    assert main(argv + ["--results-root", str(tmp_path)]) == 2
    err = _one_error_line(capsys)
    assert "p=20 is not an allowed labeled fraction; use one of [15, 30, 45, 60, 70]" in err
    assert not any(tmp_path.rglob("*.json"))


# --- progress ------------------------------------------------------------------------------

def test_line_stream_turns_redrawn_bars_into_lines(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    got: list[str] = []
    out = LineStream(got.append, "    01 p15 seed0 | ", redraw_s=30.0)
    out.write("decoding 1/9\rdecoding 2/9\r")     # a bar redrawn in place: the first redraw is shown
    now[0] += 10
    out.write("decoding 3/9\r")                   # 10 s later: not shown
    now[0] += 25
    out.write("decoding 4/9\rdecoding 9/9\n")     # 35 s after the first: shown; the bar's last line is kept
    out.write("epoch 1/3: loss 1.0\r\nwarn")
    assert got == ["    01 p15 seed0 | decoding 1/9", "    01 p15 seed0 | decoding 4/9",
                   "    01 p15 seed0 | decoding 9/9", "    01 p15 seed0 | epoch 1/3: loss 1.0"]
    out.write("ing\n\n")
    out.write("tail")
    out.flush()
    assert got[4:] == ["    01 p15 seed0 | warning", "    01 p15 seed0 | tail"]


def test_plain_lines_modes(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty: bool):
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    assert plain_lines()                       # a log file: lines
    monkeypatch.setattr(sys, "stderr", Stream(tty=True))
    assert not plain_lines()                   # a terminal: the bar
    monkeypatch.setenv(PROGRESS_ENV, "lines")
    assert plain_lines()                       # a sweep's kernel
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    assert not plain_lines()
    assert epoch_line("m2 single p=15 s=0", 3, 30, 1.23456, 0.5) == "m2 single p=15 s=0 epoch 3/30: loss 1.235 val 0.500"


def test_sweep_prints_each_runs_progress_live(tmp_path):
    runs = plan_sweep(["01"], "smoke", [15], [0], results_root=tmp_path, extra_params={"pause_s": 1.0},
                      notebooks_dir=FIX)
    got: list[tuple[float, str]] = []
    report = run_sweep(runs, log=lambda m: got.append((time.monotonic(), m)))
    assert report.done == 1
    lines = [m for _, m in got]
    prefix = "    01_progress p15 seed0 | "
    epochs = [prefix + epoch_line("m1 T1 p=15 s=0", e, 3, 1.0 / e, 0.1 * e) for e in (1, 2, 3)]
    start, done = lines.index("[1/1] 01_progress p15 seed0: running"), \
        next(i for i, m in enumerate(lines) if m.startswith("[1/1] 01_progress p15 seed0: done in"))
    assert start < lines.index(prefix + "progress as lines") < lines.index(epochs[0]) < lines.index(epochs[2]) < done
    assert prefix + "a warning on stderr" in lines
    times = {m: t for t, m in got}
    assert times[epochs[2]] - times[epochs[0]] >= 1.5  # streamed as printed, not at the end of the run


# --- two sweeps on one folder, SIGKILL and restart -----------------------------------------

def _sweep_cmd(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks-dir", str(FIX),
            "--notebooks", "01", "--p", "15", "30", "--seeds", "0", "--results-root", str(root), *extra]


def _wait_for(cond, proc, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_second_sweep_refused_then_sigkill_and_restart_lose_or_duplicate_nothing(tmp_path, capsys):
    rdir, log = tmp_path / "smoke", tmp_path / "sweep.log"
    first, second = rdir / "p15" / "seed0" / "01_progress.json", rdir / "p30" / "seed0" / "01_progress.json"
    with open(log, "w") as out:  # stdout is a log file, not a terminal
        proc = subprocess.Popen(_sweep_cmd(tmp_path, "--param", "sleep_s=120", "--param", "sleep_p=30"),
                                cwd=PROJECT_ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        last_epoch = "01_progress p30 seed0 | " + epoch_line("m1 T1 p=30 s=0", 3, 3, 1 / 3, 0.1 * 3)
        _wait_for(lambda: last_epoch in log.read_text(), proc, log)  # p30 is running: its progress is in the log
        assert first.exists() and not second.exists()

        # a second sweep on the same results folder is refused while the first one lives
        assert main(_sweep_cmd(tmp_path)[3:]) == 2
        err = _one_error_line(capsys)
        assert f"another sweep (pid {proc.pid} " in err and f"is using {rdir}" in err
        assert "wait for it to end" in err

        kernels = psutil.Process(proc.pid).children(recursive=True)
        assert kernels
        stamp = first.stat().st_mtime_ns
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the killed sweep's kernel does not live on to write p30's result behind the restart's back
    _, alive = psutil.wait_procs(kernels, timeout=20)
    assert not alive, [k.pid for k in alive]
    assert not second.exists()
    text = log.read_text()
    assert "\r" not in text and "[1/2] 01_progress p15 seed0: done in" in text

    res = subprocess.run(_sweep_cmd(tmp_path), cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[1/2] 01_progress p15 seed0: skipped: result exists" in res.stdout
    assert "[2/2] 01_progress p30 seed0: done in" in res.stdout
    results = sorted(str(q.relative_to(rdir)) for q in rdir.rglob("*.json") if "executed" not in q.parts)
    assert results == ["p15/seed0/01_progress.json", "p30/seed0/01_progress.json", "sweep.json"]
    assert first.stat().st_mtime_ns == stamp  # p15 was not run twice
    assert read_json(second) == {"profile": "smoke", "p": 30, "seed": 0, "notebook": "01_progress"}
    record = read_json(rdir / "sweep.json")
    assert [s["status"] for s in record["segments"]] == ["killed", "finished"]
    assert {k: (v["status"], v["segment"]) for k, v in record["runs"].items()} == {
        "01_progress/p15/seed0": ("done", 0), "01_progress/p30/seed0": ("done", 1)}
    assert not list(rdir.rglob("*.partial.ipynb")) and not (rdir / ".sweep.lock").exists()
