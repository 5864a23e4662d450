"""A sweep on a real SLURM (``--executor slurm``): the smoke notebooks 00, 01, 04 for p = 15 and 70, seed 0.

The cluster is the one ``$SLURM_CONF`` names when its node answers (``.ci/run`` starts one with
``scripts/local_slurm.sh start``); otherwise this module starts its own one-node SLURM with that script
(without installing anything) in a temp folder and stops it afterwards. Where neither works the test
skips with the reason; the ``local`` executor tests (tests/test_sweep_jobs.py) run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.paths import PROJECT_ROOT
from repro.sweep.executors import JOBS_DIR
from repro.sweep.job import PROGRESS_FILE
from repro.sweep.plan import plan_sweep
from repro.sweep.run import run_sweep

SCRIPT = PROJECT_ROOT / "scripts" / "local_slurm.sh"
NOTEBOOKS, PS = ("00", "01", "04"), (15, 70)
STEMS = ("01_m1_teachers", "04_temperature")


def _node_idle(env: dict[str, str]) -> str | None:
    """Why no idle SLURM node answers with ``env`` (``None``: one does)."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: SLURM is not installed (scripts/local_slurm.sh start installs and starts one)"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}"
    return None if "idle" in out.stdout.split() else f"no idle node (sinfo: {out.stdout.split()})"


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """The environment of a shell in which a SLURM answers; started here (and stopped) when none does."""
    env = dict(os.environ)
    if env.get("SLURM_CONF") and _node_idle(env) is None:
        yield env
        return
    folder = tmp_path_factory.mktemp("local_slurm")
    env.update(LOCAL_SLURM_DIR=str(folder), LOCAL_SLURM_INSTALL="0")
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        pytest.skip(f"SLURM could not be started here: {start.stderr.strip().splitlines()[-1:]}")
    try:
        env["SLURM_CONF"] = str(folder / "slurm.conf")
        why = _node_idle(env)
        if why:
            pytest.skip(f"the local SLURM started but {why}")
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


def _cmd(root: Path, data_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks", *NOTEBOOKS,
            "--p", *map(str, PS), "--seeds", "0", "--executor", "slurm", "--results-root", str(root),
            "--data-root", str(data_root), *extra]


def _job_env(env: dict[str, str], tmp: Path) -> dict[str, str]:
    env = dict(env, REPRO_RUNS=str(tmp / "runs"), MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _stage_results(folder: Path) -> dict[str, dict]:
    """Every stage result of a (p, seed) folder: test and validation metrics, best epoch, learning curves."""
    out = {}
    for q in sorted(folder.glob("*.json")):
        doc = json.loads(q.read_text())
        if isinstance(doc, dict) and "metrics" in doc:
            out[q.name] = {"metrics": doc["metrics"], "best_epoch": doc.get("best_epoch"),
                           "history": doc.get("history", [])}
    return out


def _events(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_slurm_sweep_cancel_and_resume_match_an_inline_sweep(slurm_env, odir_root, tmp_path, monkeypatch):
    # the reference: the same sweep inline, in this process
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "inline" / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ref_runs = plan_sweep(list(NOTEBOOKS), "smoke", PS, [0], results_root=tmp_path / "inline", data_root=odir_root)
    assert run_sweep(ref_runs, log=lambda m: None).done == 5

    root, tb = tmp_path / "slurm", tmp_path / "tb"
    rdir = root / "smoke"
    env = _job_env(slurm_env, root)
    cmd = _cmd(root, odir_root, "--tensorboard", str(tb))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    victim, deadline = None, time.monotonic() + 240
    try:
        while victim is None:   # the p70 chain's job, once it has trained its first teachers
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the p70 chain's job did not start training in time"
            time.sleep(0.5)
            seg = (json.loads((rdir / "sweep.json").read_text())["segments"][-1]
                   if (rdir / "sweep.json").exists() else {"jobs": []})
            job = next((j for j in seg["jobs"] if j["unit"] == "p70 seed0"), None)
            if job and len(list((rdir / "p70" / "seed0").glob("m1-*.json"))) >= 2:
                victim = job["job"]
        subprocess.run(["scancel", victim], env=env, check=True, timeout=30)
        out = proc.communicate(timeout=240)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    first_s = time.monotonic() - t0
    assert proc.returncode == 1, out
    assert f"job {victim} ended (CANCELLED" in out and "01_m1_teachers p70 seed0: FAILED" in out, out
    seg = json.loads((rdir / "sweep.json").read_text())["segments"][0]
    jobs = {j["unit"]: j for j in seg["jobs"]}
    assert list(jobs) == ["00_data", "p70 seed0", "p15 seed0"] and seg["executor"] == "slurm"
    assert all((PROJECT_ROOT / j["log"]).exists() for j in jobs.values())
    assert jobs["p15 seed0"]["state"] == "COMPLETED" and jobs["p70 seed0"]["state"] == "CANCELLED"
    assert {r["key"]: r["status"] for r in seg["runs"]} == {
        "00_data": "done", "01_m1_teachers/p15/seed0": "done", "04_temperature/p15/seed0": "done",
        "01_m1_teachers/p70/seed0": "failed", "04_temperature/p70/seed0": "not run"}
    assert not (rdir / "p70" / "seed0" / "01_m1_teachers.json").exists()
    chain = rdir / "p70" / "seed0"
    kept = {f.name: f.stat().st_mtime_ns for f in chain.glob("m1-*.json")}   # what the cancelled job finished
    left = sorted(f.name for f in chain.iterdir())

    # the same command again: only the cancelled chain is submitted, and it resumes at its missing results
    t1 = time.monotonic()
    again = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    second_s = time.monotonic() - t1
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("submitted (slurm)") == 1 and "p70 seed0, 2 run(s)" in again.stdout
    assert "01_m1_teachers p15 seed0: skipped: result exists" in again.stdout
    assert "2 done, 3 skipped, 0 failed" in again.stdout
    assert {f: chain.joinpath(f).stat().st_mtime_ns for f in kept} == kept   # resumed, not retrained
    assert not [f.name for f in chain.iterdir() if f.name.endswith(".tmp") or ".partial" in f.name]

    # and once more: everything exists, nothing is submitted, the record stays as it is
    stamp = (rdir / "sweep.json").stat().st_mtime_ns
    third = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "submitted" not in third.stdout and "0 done, 5 skipped, 0 failed" in third.stdout
    assert (rdir / "sweep.json").stat().st_mtime_ns == stamp

    record = json.loads((rdir / "sweep.json").read_text())
    assert [s["status"] for s in record["segments"]] == ["finished", "finished"]
    assert {k: (v["status"], bool(v["job"])) for k, v in record["runs"].items()} == {
        k: ("done", True) for k in ("00_data", "01_m1_teachers/p15/seed0", "04_temperature/p15/seed0",
                                    "01_m1_teachers/p70/seed0", "04_temperature/p70/seed0")}
    ids = [j["job"] for s in record["segments"] for j in s["jobs"]]
    queue = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()
    assert not set(ids) & set(queue)
    assert all((rdir / JOBS_DIR / i / PROGRESS_FILE).exists() for i in ids)

    # the results are the inline sweep's, bit for bit, and the curves are the results' histories
    for p in PS:
        got = _stage_results(rdir / f"p{p}" / "seed0")
        want = _stage_results(tmp_path / "inline" / "smoke" / f"p{p}" / "seed0")
        assert len(got) >= 20 and got.keys() == want.keys()
        for name in got:
            assert got[name] == want[name], (p, name)
            if not got[name]["history"]:   # the baselines train no network
                continue
            events = _events(tb / "smoke" / f"p{p}" / "seed0" / name[:-len(".json")])
            assert {"train/total", "val/score", "lr"} <= set(events), (name, sorted(events))
            for tag, points in events.items():
                hist = [(h["epoch"], h[tag]) for h in got[name]["history"] if h.get(tag) == h.get(tag)]
                assert [s for s, _ in points] == [s for s, _ in hist], (name, tag)
                assert [v for _, v in points] == pytest.approx([v for _, v in hist], rel=1e-6), (name, tag)
        for stem in STEMS:
            assert (rdir / f"p{p}" / "seed0" / f"{stem}.json").exists()
    print(f"\nslurm sweep: first call {first_s:.0f} s (job {victim} cancelled), second {second_s:.0f} s, "
          f"jobs {' '.join(ids)}; the cancelled chain left {left}; after the rerun it holds "
          f"{len(list(chain.iterdir()))} files, the {len(kept)} finished teachers untouched")


def test_a_job_sbatch_refuses_is_one_error(slurm_env, tmp_path):
    fixtures = Path(__file__).parent / "fixtures" / "study"
    res = subprocess.run([sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks-dir",
                          str(fixtures), "--notebooks", "01", "--p", "15", "--seeds", "0", "--executor", "slurm",
                          "--slurm-partition", "no-such-partition", "--results-root", str(tmp_path)],
                         cwd=PROJECT_ROOT, env=_job_env(slurm_env, tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert ("error: could not submit the job of p15 seed0 (slurm): FailedJobError: sbatch: error: Batch job "
            "submission failed: Invalid partition name specified; check the --slurm-* options") in res.stderr
    assert not (tmp_path / "smoke" / "sweep.json").exists() and not (tmp_path / "smoke" / ".sweep.lock").exists()
