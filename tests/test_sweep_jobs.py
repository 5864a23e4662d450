"""Sweeps as jobs (repro.sweep.executors, repro.sweep.job, repro.sweep.slurm) with the ``local`` executor,
host-safe locks, and the units, dependencies and resources of a job sweep. The real SLURM test is
tests/test_sweep_slurm.py.

Fixture notebooks in tests/fixtures/study: ``00_once`` (no p/seed), ``01_fake`` (per run; can sleep and
fail), ``02_dep`` (per run; reads 01_fake's result), ``03_summary`` (once, after the per-run ones).
"""

from __future__ import annotations

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
from repro.io import pid_alive
from repro.paths import PROJECT_ROOT
from repro.names import LOCAL, SLURM
from repro.sweep import executors
from repro.sweep.executors import JOBS_DIR, default_max_jobs, plan_units, run_with_jobs
from repro.sweep.lock import LOCK_FILE, SweepLockedError, sweep_lock
from repro.sweep.plan import plan_sweep
from repro.sweep.slurm import parse_option, resources_for, submitit_parameters

FIX = Path(__file__).parent / "fixtures" / "study"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _sweep_cmd(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks-dir", str(FIX),
            "--notebooks", "00", "01", "02", "03", "--p", "15", "30", "--seeds", "0", "--results-root", str(root),
            "--executor", "local", *extra]


def _record(rdir: Path) -> dict:
    return json.loads((rdir / "sweep.json").read_text())


# --- planning --------------------------------------------------------------------------------------------

def test_units_are_chains_between_the_once_notebooks(tmp_path):
    runs = plan_sweep(None, "smoke", [15, 30], [0, 1], results_root=tmp_path, notebooks_dir=FIX)
    units = plan_units(runs)
    # submission order: the largest p first (longer chains start early, short ones fill the end)
    assert [u.name for u in units] == ["00_once", "p30 seed0", "p30 seed1", "p15 seed0", "p15 seed1", "03_summary"]
    assert [[runs[i].name for i in u.runs] for u in units[1:2]] == [["01_fake p30 seed0", "02_dep p30 seed0"]]
    assert [u.after for u in units] == [[], [0], [0], [0], [0], [0, 1, 2, 3, 4]]   # smoke: no shared τ seed
    assert sorted(i for u in units for i in u.runs) == list(range(len(runs)))


def test_a_shared_tau_seed_is_a_first_wave(tmp_path):
    """``quick`` has tau_seed = 0: the chain (p, 1) that reads τ (02) waits for (p, 0); without seed 0 in
    the sweep the plan adds seed 0's producers (01) as chains of their own."""
    units = plan_units(plan_sweep(["01", "02"], "quick", [15, 30], [0, 1], results_root=tmp_path,
                                  notebooks_dir=FIX))
    assert [(u.name, [units[d].name for d in u.after]) for u in units] == [   # the τ seed's chains first
        ("p30 seed0", []), ("p15 seed0", []), ("p30 seed1", ["p30 seed0"]), ("p15 seed1", ["p15 seed0"])]
    runs = plan_sweep(["01", "02"], "quick", [15], [1], results_root=tmp_path, notebooks_dir=FIX)
    units = plan_units(runs)
    assert [(u.name, [runs[i].stem for i in u.runs], u.after) for u in units] == [
        ("p15 seed0", ["01_fake"], []), ("p15 seed1", ["01_fake", "02_dep"], [0])]


def test_job_resources_per_profile_and_options():
    assert resources_for("paper").gpus == 1 and resources_for("smoke").gpus == resources_for("quick").gpus == 0
    res = resources_for("smoke", partition="gpu", time_min=5, gpus=2, mem_gb=3,
                        options=["account=lab", "--exclusive"])
    assert (res.partition, res.time_min, res.gpus, res.mem_gb) == ("gpu", 5, 2, 3)
    assert submitit_parameters(res, "slurm", "n") == {
        "timeout_min": 5, "name": "n", "gpus_per_node": 2, "cpus_per_task": 1, "mem_gb": 3,
        "slurm_partition": "gpu", "slurm_additional_parameters": {"account": "lab", "exclusive": True}}
    assert submitit_parameters(resources_for("quick"), "local", "n") == {"timeout_min": 60, "name": "n"}
    assert "gpus_per_node" not in submitit_parameters(resources_for("smoke"), "slurm", "n")  # 0 GPUs: none asked
    assert parse_option("qos=high") == ("qos", "high")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_option("=x")
    with pytest.raises(ConfigError, match="--slurm-time 0"):
        resources_for("smoke", time_min=0)


def test_local_jobs_at_once_follow_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count must not matter
    monkeypatch.setattr(executors, "usable_cores", lambda: 2)
    assert default_max_jobs(LOCAL, resources_for("quick"), 63) == 2  # quick: 1 CPU per job
    assert default_max_jobs(LOCAL, resources_for("paper"), 63) == 1     # paper: 8 CPUs per job, never 0
    monkeypatch.setattr(executors, "usable_cores", lambda: 16)
    assert default_max_jobs(LOCAL, resources_for("paper"), 63) == 2
    assert default_max_jobs(SLURM, resources_for("quick"), 63) == 63   # the scheduler queues them


def test_job_options_without_a_job_executor_and_dry_run_units(tmp_path, capsys):
    from repro.cli import main

    base = ["sweep", "--profile", "smoke", "--notebooks-dir", str(FIX), "--notebooks", "00", "01", "03", "--p", "15",
            "--seeds", "0", "--results-root", str(tmp_path)]
    assert main(base + ["--slurm-gpus", "1"]) == 2
    assert "--slurm-gpus set the jobs of --executor slurm or local" in capsys.readouterr().err
    assert main(base + ["--executor", "local", "--max-jobs", "0"]) == 2
    assert "--max-jobs 0 is not allowed" in capsys.readouterr().err
    assert main(base + ["--executor", "slurm", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == [
        "slurm job: 00_once (1 run(s))", "slurm job: p15 seed0 (1 run(s)) after 00_once",
        "slurm job: 03_summary (1 run(s)) after 00_once, p15 seed0"]
    assert not (tmp_path / "smoke" / "sweep.json").exists()


# --- host-safe lock ---------------------------------------------------------------------------------------

def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    dead = 2**22 + 12345
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": "node7.cluster.example",
                                                  "started": "2025-01-01T00:00:00+00:00", "command": "sweep"}))
    with pytest.raises(SweepLockedError) as e:
        with sweep_lock(tmp_path, print):
            pass
    assert (f"pid {dead} on node7.cluster.example (another host: its pid cannot be checked from here), "
            "started 2025-01-01T00:00:00+00:00") in str(e.value) and str(tmp_path / LOCK_FILE) in str(e.value)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with sweep_lock(tmp_path, print):  # the same pid on this host is known to be gone: taken over
        held = json.loads((tmp_path / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["started"]


def test_live_jobs_of_an_earlier_sweep_block_a_new_one(tmp_path):
    rdir = tmp_path / "smoke"
    rdir.mkdir()
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (rdir / "sweep.json").write_text(json.dumps({"segments": [
            {"executor": "local", "host": socket.gethostname(), "pid": 1, "started": "then", "status": "running",
             "jobs": [{"job": str(job.pid), "ended": None}]}]}))
        runs = plan_sweep(["01"], "smoke", [15], [0], results_root=tmp_path, notebooks_dir=FIX)
        with pytest.raises(SweepLockedError, match=f"job\\(s\\) {job.pid} of an earlier sweep .*\\(kill {job.pid}\\)"):
            run_with_jobs(runs, "local", resources_for("smoke"), log=lambda m: None)
    finally:
        job.kill()
        job.wait()
    assert not (rdir / LOCK_FILE).exists() and not (rdir / "p15").exists()


# --- inside a job ------------------------------------------------------------------------------------------

def test_a_requeued_job_keeps_what_its_earlier_attempt_did_even_under_force(tmp_path, capsys):
    """A job that reaches its time limit is requeued with the same call (Checkpointable): runs its earlier
    attempt finished count as done, so --force reruns a run once, not once per attempt."""
    from repro.sweep.job import ChainJob, run_job

    runs = plan_sweep(["01", "02"], "smoke", [15], [0], results_root=tmp_path, notebooks_dir=FIX)
    job = ChainJob(runs, [3, 4], 9, force=True, stop_on_error=False, kernel=None, chain=True)
    assert job.checkpoint().function is job   # requeued as the same call
    progress = tmp_path / "jobs" / "7" / "progress.json"
    first = run_job(job, progress, "7")
    assert first["attempt"] == 1 and {k: v["status"] for k, v in first["runs"].items()} == {
        "01_fake/p15/seed0": "done", "02_dep/p15/seed0": "done"}
    assert "[4/9] 01_fake p15 seed0: running" in capsys.readouterr().out   # its place in the whole sweep
    stamps = [r.result.stat().st_mtime_ns for r in runs]
    second = run_job(job, progress, "7")
    assert second["attempt"] == 2 and [r.result.stat().st_mtime_ns for r in runs] == stamps
    assert second["runs"] == first["runs"]
    progress.unlink()   # a new job (not a requeue) with --force reruns both
    assert run_job(job, progress, "8")["attempt"] == 1
    assert all(r.result.stat().st_mtime_ns > t for r, t in zip(runs, stamps))


# --- the local executor ---------------------------------------------------------------------------------------

def test_local_jobs_run_the_sweep_record_their_ids_and_a_rerun_submits_nothing(tmp_path):
    rdir = tmp_path / "smoke"
    res = subprocess.run(_sweep_cmd(tmp_path), cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.count("submitted (local)") == 4   # 00_once, the chains p15 and p30, 03_summary
    assert "6 done, 0 skipped, 0 failed" in out
    upstream = json.loads((rdir / "p30" / "seed0" / "02_dep.json").read_text())["upstream"]
    assert upstream == {"profile": "smoke", "p": 30, "seed": 0, "notebook": "01_fake"}
    assert json.loads((rdir / "03_summary.json").read_text())["results"] == [
        "p15/seed0/01_fake.json", "p15/seed0/02_dep.json", "p30/seed0/01_fake.json", "p30/seed0/02_dep.json"]

    record = _record(rdir)
    seg = record["segments"][0]
    assert seg["executor"] == "local" and seg["status"] == "finished" and seg["counts"]["done"] == 6
    jobs = {j["unit"]: j for j in seg["jobs"]}
    assert list(jobs) == ["00_once", "p30 seed0", "p15 seed0", "03_summary"]
    assert record["runs"]["02_dep/p30/seed0"]["job"] == jobs["p30 seed0"]["job"]
    assert record["runs"]["02_dep/p30/seed0"]["status"] == "done" and record["runs"]["02_dep/p30/seed0"]["wall_s"] > 0
    chain_job = jobs["p15 seed0"]
    assert chain_job["runs"] == ["01_fake/p15/seed0", "02_dep/p15/seed0"] and chain_job["ended"]
    log = PROJECT_ROOT / chain_job["log"]
    assert log.parent == rdir / JOBS_DIR / chain_job["job"] and f"job {chain_job['job']}" in out
    assert "02_dep p15 seed0: done in" in log.read_text()   # the job's own lines are in its log
    progress = json.loads((log.parent / "progress.json").read_text())
    assert {k: v["status"] for k, v in progress["runs"].items()} == {"01_fake/p15/seed0": "done",
                                                                       "02_dep/p15/seed0": "done"}
    assert not (rdir / LOCK_FILE).exists()

    stamp = (rdir / "sweep.json").stat().st_mtime_ns
    again = subprocess.run(_sweep_cmd(tmp_path), cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitted" not in again.stdout and "every result exists: nothing to submit" in again.stdout
    assert "0 done, 6 skipped, 0 failed" in again.stdout
    assert (rdir / "sweep.json").stat().st_mtime_ns == stamp   # nothing ran: the record is untouched


def test_interrupted_controller_cancels_its_jobs_and_the_rerun_resumes(tmp_path):
    """SIGTERM to the controller while the p30 chain's job sleeps in 01_fake: the job is cancelled (its process
    ends), the record says interrupted; the same command again runs only what is missing.

    The signal waits until the controller has recorded the p15 chain's last run as done: its result file
    appears while that run's notebook is still finishing, and a signal in that window rightly records the run
    as interrupted (CI saw this once)."""
    rdir = tmp_path / "smoke"
    proc = subprocess.Popen(_sweep_cmd(tmp_path, "--param", "sleep_s=120", "--param", "sleep_p=30"),
                            cwd=PROJECT_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def p15_recorded_done() -> bool:
        if not (rdir / "sweep.json").exists():
            return False
        runs = {r["key"]: r["status"] for r in _record(rdir)["segments"][0]["runs"]}
        return runs.get("02_dep/p15/seed0") == "done"

    deadline = time.monotonic() + 90
    try:
        while not (p15_recorded_done()
                   and list((rdir / "executed" / "01_fake").glob(".p30-seed0.*.partial.ipynb"))):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the p30 chain did not start in time"
            time.sleep(0.2)
        job_id = next(j["job"] for j in _record(rdir)["segments"][0]["jobs"] if j["unit"] == "p30 seed0")
        assert pid_alive(int(job_id))
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=90)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert job_id in next(line for line in out.splitlines() if line.startswith("cancelling job(s)")), out
    assert f"job {job_id} ended" in out and not pid_alive(int(job_id)), out
    seg = _record(rdir)["segments"][0]
    assert seg["status"] == "interrupted"
    status = {r["key"]: r["status"] for r in seg["runs"]}
    assert status == {"00_once": "done", "01_fake/p15/seed0": "done", "02_dep/p15/seed0": "done",
                      "01_fake/p30/seed0": "interrupted", "02_dep/p30/seed0": "not run", "03_summary": "not run"}
    assert not (rdir / "p30" / "seed0" / "01_fake.json").exists() and not (rdir / LOCK_FILE).exists()

    res = subprocess.run(_sweep_cmd(tmp_path), cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "01_fake p15 seed0: skipped: result exists" in res.stdout
    assert res.stdout.count("submitted (local)") == 2   # the p30 chain and 03_summary
    assert "3 done, 3 skipped, 0 failed" in res.stdout
    assert not list(rdir.rglob("*.partial.ipynb"))
    assert {k: v["status"] for k, v in _record(rdir)["runs"].items()} == {
        k: "done" for k in ("00_once", "01_fake/p15/seed0", "02_dep/p15/seed0", "01_fake/p30/seed0",
                            "02_dep/p30/seed0", "03_summary")}
