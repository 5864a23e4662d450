"""The papermill sweep runner (repro.sweep.run): plan, resume after a kill, skip, failures.

Fixture notebooks in tests/fixtures/study follow the notebook contract:
``00_once`` (no p/seed), ``01_fake`` (per run; can sleep and fail),
``02_dep`` (per run; reads 01_fake's result), ``03_summary`` (once, after).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.errors import ConfigError
from repro.paths import PROJECT_ROOT, results_dir
from repro.cli import add_sweep
from repro.sweep.kernel import check_kernel
from repro.sweep.lock import SweepLockedError, sweep_lock
from repro.sweep.plan import parse_param, plan_sweep
from repro.sweep.run import run_sweep

FIX = Path(__file__).parent / "fixtures" / "study"


def _files(root: Path) -> set[str]:
    return {str(q.relative_to(root)) for q in root.rglob("*") if q.is_file()}


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_sweep(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _sweep_cmd(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks-dir", str(FIX),
            "--notebooks", "00", "01", "--p", "15", "30", "--seeds", "0", "--results-root", str(root), *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


# --- planning -----------------------------------------------------------------

def test_plan_order_expansion_and_parameters(tmp_path):
    runs = plan_sweep(["03", "02_dep", str(FIX / "01_fake.ipynb"), "00"], "smoke", [15, 30], [0, 1],
                      results_root=tmp_path, extra_params={"fail_p": 30}, notebooks_dir=FIX)
    assert [r.name for r in runs] == [
        "00_once",
        "01_fake p15 seed0", "02_dep p15 seed0", "01_fake p30 seed0", "02_dep p30 seed0",
        "01_fake p15 seed1", "02_dep p15 seed1", "01_fake p30 seed1", "02_dep p30 seed1",
        "03_summary",
    ]
    rdir = tmp_path / "smoke"
    once, fake = runs[0], runs[3]
    assert once.parameters == {"profile": "smoke", "results_dir": str(rdir)}
    assert once.result == rdir / "00_once.json" and once.executed == rdir / "executed" / "00_once.ipynb"
    assert fake.parameters == {"profile": "smoke", "p": 30, "seed": 0, "results_dir": str(rdir), "fail_p": 30}
    assert fake.result == rdir / "p30" / "seed0" / "01_fake.json"
    assert fake.executed == rdir / "executed" / "01_fake" / "p30-seed0.ipynb"
    assert "fail_p" not in runs[2].parameters  # only declared parameters are passed
    assert plan_sweep(["1"], "smoke", [15], [0], notebooks_dir=FIX)[0].result == \
        results_dir("smoke") / "p15" / "seed0" / "01_fake.json"  # default root: $REPRO_RESULTS or out/


@pytest.mark.parametrize("kwargs, match", [
    ({"notebooks": ["07"]}, "no notebook '07'"),
    ({"ps": [20]}, "p=20 is not an allowed labeled fraction"),
    ({"extra_params": {"epochs": 2}}, "declared by none"),
    ({"extra_params": {"p": 15}}, "set by the sweep itself"),
    ({"profile": "huge"}, "unknown profile"),
])
def test_plan_rejects_bad_input(tmp_path, kwargs, match):
    args = {"notebooks": ["00", "01"], "profile": "smoke", "ps": [15], "seeds": [0],
            "results_root": tmp_path, "notebooks_dir": FIX} | kwargs
    with pytest.raises(ConfigError, match=match):
        plan_sweep(**args)


def test_param_parsing_and_kernel_check(tmp_path, monkeypatch):
    assert parse_param("fail_p=15") == ("fail_p", 15)
    assert parse_param("x=None") == ("x", None)
    assert parse_param("name=abc") == ("name", "abc")
    assert check_kernel("python3").startswith(os.path.dirname(sys.executable))
    spec = tmp_path / "kernels" / "foreign"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": ["/opt/elsewhere/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "foreign", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="not this environment"):
        check_kernel("foreign")


def test_live_lock_refuses_a_second_sweep(tmp_path):
    (tmp_path / ".sweep.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(SweepLockedError, match="another sweep"):
        with sweep_lock(tmp_path, print):
            pass
    (tmp_path / ".sweep.lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    with sweep_lock(tmp_path, print):  # stale: taken over
        assert json.loads((tmp_path / ".sweep.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".sweep.lock").exists()


# --- kill and resume ------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_sweep_resumes(tmp_path, sig):
    rdir = tmp_path / "smoke"
    proc = subprocess.Popen(_sweep_cmd(tmp_path, "--param", "sleep_s=60", "--param", "sleep_p=30"),
                            cwd=PROJECT_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = rdir / "executed" / "01_fake" / "p15-seed0.ipynb"
    deadline = time.monotonic() + 40
    try:
        while not (first.exists() and list((rdir / "executed" / "01_fake").glob(".p30-seed0.*.partial.ipynb"))):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "first run did not finish in time"
            time.sleep(0.1)
        assert (rdir / "p15" / "seed0" / "01_fake.json").exists()
        proc.send_signal(sig)
        out = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig), out
    assert not (rdir / "p30" / "seed0" / "01_fake.json").exists()
    record = json.loads((rdir / "sweep.json").read_text())
    if sig == signal.SIGTERM:
        assert record["segments"][0]["status"] == "interrupted"
        assert record["runs"]["01_fake/p30/seed0"]["status"] == "interrupted"
        assert not (rdir / ".sweep.lock").exists()
        assert not list(rdir.rglob("*.partial.ipynb"))

    res = subprocess.run(_sweep_cmd(tmp_path), cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "01_fake p15 seed0: skipped: result exists" in res.stdout
    assert _files(rdir) == {
        "00_once.json", "p15/seed0/01_fake.json", "p30/seed0/01_fake.json", "sweep.json",
        "executed/00_once.ipynb", "executed/01_fake/p15-seed0.ipynb", "executed/01_fake/p30-seed0.ipynb",
    }
    record = json.loads((rdir / "sweep.json").read_text())
    first_seg, second_seg = record["segments"]
    assert first_seg["status"] == ("interrupted" if sig == signal.SIGTERM else "killed")
    assert first_seg["counts"]["done"] == 2 and second_seg["status"] == "finished"
    assert [r["status"] for r in second_seg["runs"]] == ["skipped", "skipped", "done"]
    assert {k: v["status"] for k, v in record["runs"].items()} == {
        "00_once": "done", "01_fake/p15/seed0": "done", "01_fake/p30/seed0": "done"}
    assert record["runs"]["01_fake/p15/seed0"]["segment"] == 0 and record["runs"]["01_fake/p30/seed0"]["segment"] == 1
    assert record["ps"] == [15, 30] and record["seeds"] == [0] and record["notebooks"] == ["00_once", "01_fake"]
    assert record["wall_s"] > 0 and record["peak_memory_mb"] > 0


# --- skipping and forcing -------------------------------------------------------------

def test_existing_results_are_skipped_and_force_reruns(tmp_path):
    runs = plan_sweep(["00", "01"], "smoke", [15], [0], results_root=tmp_path, notebooks_dir=FIX)
    first = run_sweep(runs, log=lambda m: None)
    assert (first.done, first.skipped, first.failed, first.exit_code) == (2, 0, 0, 0)
    record_file = tmp_path / "smoke" / "sweep.json"
    stamps = {q: q.stat().st_mtime_ns for q in [r.result for r in runs] + [record_file]}
    second = run_sweep(runs, log=lambda m: None)
    assert (second.done, second.skipped) == (0, 2)
    assert all(o.reason == "result exists" for o in second.outcomes)
    assert {q: q.stat().st_mtime_ns for q in stamps} == stamps  # a sweep that ran nothing rewrites nothing
    assert second.sweep_json is None and "record:" not in second.summary()
    assert _cli(["run-notebook", "01", "--profile", "smoke", "--p", "15", "--seed", "0", "--force",
                 "--results-root", str(tmp_path), "--notebooks-dir", str(FIX)]) == 0
    assert runs[1].result.stat().st_mtime_ns > stamps[runs[1].result]
    record = json.loads((tmp_path / "smoke" / "sweep.json").read_text())
    assert [s["command"] for s in record["segments"]] == ["sweep", "run-notebook"]


# --- failures -----------------------------------------------------------------

def test_failed_run_is_reported_and_blocks_only_its_dependents(tmp_path, capsys):
    rc = _cli(["sweep", "--profile", "smoke", "--notebooks-dir", str(FIX), "--notebooks", "01", "02", "03",
               "--p", "15", "30", "--seeds", "0", "--results-root", str(tmp_path), "--param", "fail_p=15"])
    out = capsys.readouterr().out
    rdir = tmp_path / "smoke"
    failed_nb = rdir / "executed" / "01_fake" / "p15-seed0.ipynb"
    assert rc == 1
    assert "01_fake p15 seed0: FAILED" in out and "ValueError: fake failure at p=15" in out
    assert str(failed_nb) in out
    assert "02_dep p15 seed0: skipped: depends on failed 01_fake" in out
    assert "3 done, 1 skipped, 1 failed" in out
    assert "fake failure at p=15" in failed_nb.read_text()  # the executed notebook keeps the error
    assert _files(rdir) - {"sweep.json"} == {
        "executed/01_fake/p15-seed0.ipynb",
        "p30/seed0/01_fake.json", "p30/seed0/02_dep.json", "executed/01_fake/p30-seed0.ipynb",
        "executed/02_dep/p30-seed0.ipynb", "03_summary.json", "executed/03_summary.ipynb",
    }
    record = json.loads((rdir / "sweep.json").read_text())
    runs = record["runs"]
    assert runs["01_fake/p15/seed0"]["status"] == "failed"
    assert runs["01_fake/p15/seed0"]["error"] == "ValueError: fake failure at p=15"
    assert runs["01_fake/p15/seed0"]["executed"] == str(failed_nb)
    assert (runs["02_dep/p15/seed0"]["status"], runs["02_dep/p15/seed0"]["reason"]) == \
        ("skipped", "depends on failed 01_fake")
    assert runs["02_dep/p30/seed0"]["status"] == runs["03_summary"]["status"] == "done"
