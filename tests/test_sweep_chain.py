"""One kernel per (p, seed) chain (repro.sweep.chain): sharing, isolation, phases, resume, and the same
results as a kernel per notebook on the real notebooks.

Fixture notebooks in tests/fixtures/chain: ``01_first`` (spends 0.4 s in phase ``training`` and 0.2 s in
``validation``, leaves a variable behind) and ``02_second`` (records its kernel's pid and whether it sees
that variable; can sleep).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.paths import PROJECT_ROOT
from repro.phases import TRAINING, VALIDATION, move, phase, take, totals
from repro.sweep.chain import KERNEL_START
from repro.sweep.plan import plan_sweep
from repro.sweep.run import OTHER, run_sweep

FIX = Path(__file__).parent / "fixtures" / "chain"


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_phases_count_each_second_once():
    take()
    t0 = time.perf_counter()
    with phase("a"):
        time.sleep(0.05)
        with phase("b"):
            time.sleep(0.1)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    got = totals()
    assert got["a"] >= 0.1 and got["b"] >= 0.1
    assert got["a"] + got["b"] == pytest.approx(wall, abs=0.005)   # nested time is counted once
    move("a", "c", 0.05)
    move("b", "c", 99)  # at most what b holds
    moved = take()
    assert "b" not in moved and moved["c"] == pytest.approx(0.05 + got["b"], abs=0.002)
    assert moved["a"] == pytest.approx(got["a"] - 0.05, abs=0.002)
    assert take() == {}


def test_chain_shares_a_kernel_per_p_seed_with_a_clean_namespace(tmp_path):
    runs = plan_sweep(None, "smoke", [15, 30], [0], results_root=tmp_path, notebooks_dir=FIX)
    assert [r.name for r in runs] == ["01_first p15 seed0", "02_second p15 seed0",
                                      "01_first p30 seed0", "02_second p30 seed0"]
    report = run_sweep(runs, log=lambda s: None)
    assert report.done == 4
    rdir = tmp_path / "smoke"
    pid = {(nb, p): _read(rdir / f"p{p}" / "seed0" / f"{nb}.json")["pid"]
           for nb in ("01_first", "02_second") for p in (15, 30)}
    assert pid[("01_first", 15)] == pid[("02_second", 15)] != pid[("01_first", 30)] == pid[("02_second", 30)]
    assert not _read(rdir / "p15" / "seed0" / "02_second.json")["sees_01_namespace"]
    assert (rdir / "executed" / "02_second" / "p15-seed0.ipynb").exists()

    record = _read(rdir / "sweep.json")
    runs_rec = record["runs"]
    firsts, seconds = (runs_rec[f"01_first/p{p}/seed0"] for p in (15, 30)), (runs_rec[f"02_second/p{p}/seed0"] for p in (15, 30))
    for r in firsts:   # the chain's first run starts the kernel and spent 0.4 s training, 0.2 s validating
        assert r["phases"][KERNEL_START] > 0
        assert r["phases"][TRAINING] == pytest.approx(0.4, abs=0.15)
        assert r["phases"][VALIDATION] == pytest.approx(0.2, abs=0.1)
    for r in seconds:  # reused the kernel
        assert KERNEL_START not in r["phases"]
    for r in runs_rec.values():  # phases sum to the run's wall time, "other" is the remainder
        assert r["phases"][OTHER] >= 0
        assert sum(r["phases"].values()) == pytest.approx(r["wall_s"], abs=0.01)
    total = record["phases_s"]
    assert sum(total.values()) == pytest.approx(sum(r["wall_s"] for r in runs_rec.values()), abs=0.05)
    assert sum(total.values()) <= record["wall_s"]
    assert total[TRAINING] == pytest.approx(0.8, abs=0.3)
    assert record["segments"][0]["chain"] is True
    assert record["feature_cache_build_s"] is None


def test_kernel_per_notebook(tmp_path):
    runs = plan_sweep(None, "smoke", [15], [0], results_root=tmp_path, notebooks_dir=FIX)
    assert run_sweep(runs, log=lambda s: None, chain=False).done == 2
    run = tmp_path / "smoke" / "p15" / "seed0"
    assert _read(run / "01_first.json")["pid"] != _read(run / "02_second.json")["pid"]
    phases = _read(tmp_path / "smoke" / "sweep.json")["runs"]["02_second/p15/seed0"]["phases"]
    assert phases[KERNEL_START] > 0


def test_killed_chain_resumes_in_a_fresh_kernel(tmp_path):
    """Kill the sweep while 02_second runs: 01_first's result stays and is skipped; 02_second runs again."""
    rdir = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks-dir", str(FIX),
           "--p", "15", "--seeds", "0", "--results-root", str(tmp_path)]
    proc = subprocess.Popen(cmd + ["--param", "sleep_s=60"], cwd=PROJECT_ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    try:
        while not list((rdir / "executed" / "02_second").glob(".p15-seed0.*.partial.ipynb")):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the chain did not reach 02_second in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = _read(rdir / "p15" / "seed0" / "01_first.json")
    assert not (rdir / "p15" / "seed0" / "02_second.json").exists()

    res = subprocess.run(cmd, cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "01_first p15 seed0: skipped: result exists" in res.stdout
    second = _read(rdir / "p15" / "seed0" / "02_second.json")
    assert second["pid"] != first["pid"] and not second["sees_01_namespace"]
    record = _read(rdir / "sweep.json")
    assert [s["status"] for s in record["segments"]] == ["killed", "finished"]
    assert record["runs"]["02_second/p15/seed0"]["status"] == "done"
    assert KERNEL_START in record["runs"]["02_second/p15/seed0"]["phases"]


SMOKE_CHAIN = ("01_m1_teachers", "04_temperature")


def _metrics(folder: Path) -> dict[str, dict]:
    """Every stage result's test and validation metrics (the files each notebook's models wrote)."""
    out = {}
    for q in sorted(folder.glob("*.json")):
        doc = _read(q)
        if isinstance(doc, dict) and "metrics" in doc:
            out[q.name] = {"metrics": doc["metrics"], "best_epoch": doc.get("best_epoch"),
                           "history": [{k: v for k, v in h.items() if k.startswith(("train/", "val/"))}
                                       for h in doc.get("history", [])]}
    return out


def test_chain_gives_the_same_results_as_a_kernel_per_notebook(odir_root, tmp_path, monkeypatch):
    """The smoke chain 01 -> 04 of p = 15, seed 0 (7 teachers, the probe, 12 τ-study students), in one kernel
    and in a kernel per notebook (own runs folders, so nothing is reused between them): the same metrics,
    best epochs and learning curves in every result file. 02 and 03 run the same code paths (checkpoint
    loading, teacher caches, KD stages) and are left out to keep the test at a few minutes."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    got = {}
    for mode in ("chain", "per-notebook"):
        monkeypatch.setenv("REPRO_RUNS", str(tmp_path / mode / "runs"))
        monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))   # the feature cache may be shared
        runs = plan_sweep(list(SMOKE_CHAIN), "smoke", [15], [0], results_root=tmp_path / mode,
                          data_root=odir_root)
        assert [r.stem for r in runs] == list(SMOKE_CHAIN)
        report = run_sweep(runs, log=lambda s: None, chain=mode == "chain")
        assert report.done == len(SMOKE_CHAIN), report.summary()
        got[mode] = (_metrics(tmp_path / mode / "smoke" / "p15" / "seed0"),
                     _read(tmp_path / mode / "smoke" / "sweep.json"))
    (chain, rec_chain), (single, rec_single) = got["chain"], got["per-notebook"]
    assert len(chain) >= 20 and chain.keys() == single.keys()
    for name in chain:
        assert chain[name] == single[name], name
    starts = [r["phases"].get(KERNEL_START, 0.0) > 0 for r in rec_chain["runs"].values()]
    assert starts == [True, False]
    assert all(r["phases"].get(KERNEL_START, 0.0) > 0 for r in rec_single["runs"].values())
    for rec in (rec_chain, rec_single):
        assert {"data_preparation", "training", "evaluation", "writing", OTHER} <= set(rec["phases_s"])


# --- the speed levers (profile settings; the defaults leave every result as it was) -------------------------

def test_val_every_and_caption_epochs_settings():
    from repro.engine.fit import validates
    from repro.experiments.context import stage_epochs
    from repro.profiles import get_profile

    quick = get_profile("quick")
    assert [e for e in range(1, 9) if validates(e, quick)] == list(range(1, 9))   # default: every epoch
    every2 = get_profile("quick", val_every=2, max_epochs=5)
    assert [e for e in range(1, 6) if validates(e, every2)] == [2, 4, 5]          # and always the last
    uncapped = get_profile("quick", caption_max_epochs=None)
    assert stage_epochs(uncapped, ("coarse", "caption")) == 8 and stage_epochs(uncapped, ("caption",), 4) == 4
    assert stage_epochs(quick, ("coarse", "caption")) == 6 and stage_epochs(quick, ("coarse",)) == 8   # quick caps T3
    capped = get_profile("quick", caption_max_epochs=6)
    assert stage_epochs(capped, ("coarse", "caption")) == 6 and stage_epochs(capped, ("coarse", "fine")) == 8
    assert stage_epochs(capped, ("caption",), capped.kd_max_epochs) == 4


def test_fit_with_val_every_scores_only_those_epochs(smoke_ctx):
    from repro.engine.stage import supervised_stage
    from repro.experiments.context import train_and_record

    ctx = smoke_ctx.for_seed(0)
    ctx = type(ctx)(**{**ctx.__dict__, "profile": ctx.profile.with_overrides(val_every=2, max_epochs=3, patience=5)})
    idx = ctx.indices("train", p=ctx.p)
    res = train_and_record(ctx, "speedtest", "t1", ctx.new_model(("coarse",)), supervised_stage(ctx.prepared, ("coarse",)),
                           idx, params={}, progress=False)
    scored = [h["epoch"] for h in res["history"] if h["val/score"] is not None and h["val/score"] == h["val/score"]]
    assert scored == [2, 3] and res["best_epoch"] in (2, 3) and len(res["history"]) == 3


def test_feature_precision_is_part_of_the_cache_key_and_bf16_stays_close(tmp_path):
    import numpy as np

    from repro.errors import ConfigError
    from repro.models.encoders import build_encoder, split_encoder
    from repro.models.featcache import feature_dir, trunk_feature_cache

    spec = build_encoder("efficientnet_lite0", pretrained=False)
    trunk, _ = split_encoder(spec, 0, taps=("block4", "block5"))
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    fp32_dir = feature_dir(spec, trunk, 0, (32, 32), "k", tmp_path)
    assert feature_dir(spec, trunk, 0, (32, 32), "k", tmp_path, "fp32") == fp32_dir and "bf16" not in fp32_dir.name
    assert feature_dir(spec, trunk, 0, (32, 32), "k", tmp_path, "bf16").name != fp32_dir.name

    class Net:  # the interface trunk_feature_cache reads from an MTLNet
        pass

    net = Net()
    net.trunk, net.encoder_spec, net.trainable = trunk, spec, 0
    a = trunk_feature_cache(net, images, views=("orig",), cache_key="k", root=tmp_path, progress=False,
                            dtype=np.float32)["orig"].reshape(4, -1)
    with pytest.warns(UserWarning) if not _native_bf16() else _nothing():
        b = trunk_feature_cache(net, images, views=("orig",), cache_key="k", root=tmp_path, progress=False,
                                dtype=np.float32, precision="bf16")["orig"].reshape(4, -1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert not np.array_equal(a, b) and cos.min() > 0.99
    with pytest.raises(ConfigError, match="feature precision 'fp16'"):
        trunk_feature_cache(net, images, views=("orig",), cache_key="k", root=tmp_path, progress=False, precision="fp16")


def _native_bf16() -> bool:
    from repro.models.featcache import native_bf16

    return native_bf16("cpu")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_prefix_free_teacher_outputs_are_shared_across_prefixes(tmp_path):
    """A T1-only teacher never reads the caption prefix: the τ study (no prefix) and M3 (the M2's greedy
    prefix) read one cache file; a caption teacher keeps one file per prefix."""
    import numpy as np
    import torch

    from repro.distill.teacher_outputs import cached_outputs

    class Bank:
        views, device, from_trunk = ("orig", "hflip"), torch.device("cpu"), True
        data = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))

        def batch(self, b, v):
            return self.data[b] * (1 + v[:, None].float())

    class Teacher(torch.nn.Module):
        def __init__(self, tasks):
            super().__init__()
            self.tasks, self.lin = tasks, torch.nn.Linear(6, 3)

        def forward(self, x, captions=None, from_trunk=True):
            out = {"coarse": self.lin(x)}
            if "caption" in self.tasks:
                out["caption"] = self.lin(x)[:, None, :] + captions[:, :, None].float()
            return out

    ckpt = tmp_path / "t.pt"
    ckpt.write_bytes(b"weights")
    idx = np.arange(10)
    prefixes = [np.zeros((2, 10, 4), dtype=np.int64), np.ones((2, 10, 4), dtype=np.int64)]
    t1 = Teacher(("coarse",))
    a = cached_outputs(tmp_path / "c1", ckpt, t1, Bank(), idx, None, "none")
    b = cached_outputs(tmp_path / "c1", ckpt, t1, Bank(), idx, prefixes[1], "greedyabc")
    assert len(list((tmp_path / "c1").glob("*.npz"))) == 1 and np.array_equal(a["coarse"], b["coarse"])
    t3 = Teacher(("coarse", "caption"))
    c = cached_outputs(tmp_path / "c3", ckpt, t3, Bank(), idx, prefixes[0], "true")
    d = cached_outputs(tmp_path / "c3", ckpt, t3, Bank(), idx, prefixes[1], "greedyabc")
    assert len(list((tmp_path / "c3").glob("*.npz"))) == 2 and not np.array_equal(c["caption"], d["caption"])


def test_chain_floor_from_a_sweep_record():
    from repro.analysis.bench import chain_floor
    from repro.errors import ConfigError

    def run(wall, **ph):
        return {"status": "done", "wall_s": wall, "phases": ph}

    record = {"runs": {
        "00_data": run(3.0, other=3.0),
        "01_m1_teachers/p15/seed0": run(10.0, kernel_start=1.0, training=4.0, validation=2.0, evaluation=1.0, other=2.0),
        "02_m2_distill/p15/seed0": run(5.0, training=2.0, teacher_caches=1.0, other=2.0),
        "01_m1_teachers/p30/seed0": run(9.0, training=9.0),
        "02_m2_distill/p30/seed0": {"status": "failed", "wall_s": 1.0, "phases": {"other": 1.0}},
    }}
    f = chain_floor(record)   # the chain with the most completed runs
    assert (f["p"], f["seed"], f["notebooks"]) == (15, 0, ["01_m1_teachers", "02_m2_distill"])
    assert f["wall_s"] == 15.0 and f["floor_s"] == 9.0 and f["floor_share"] == 0.6
    assert f["phases_s"]["training"] == 6.0 and f["phases_s"]["other"] == 4.0
    assert chain_floor(record, 30, 0)["floor_s"] == 9.0
    with pytest.raises(ConfigError, match="p=45 seed=0"):
        chain_floor(record, 45, 0)
    with pytest.raises(ConfigError, match="no per-phase timings"):
        chain_floor({"runs": {"01_m1_teachers/p15/seed0": {"status": "done", "wall_s": 1.0}}})


def test_record_totals_leave_out_a_segment_every_run_of_which_was_redone(tmp_path):
    """A --force sweep redoes every run of an earlier segment: that segment stays listed, but the
    record's wall time, start and commits are the live segments' only."""
    from repro.io import read_json, write_json
    from repro.sweep.record import SweepRecord

    def seg(start, wall, commit, keys, status="done"):
        return {"status": "finished", "started": start, "finished": start, "wall_s": wall, "git_commit": commit,
                "notebooks": ["01_m1_teachers"], "ps": [15], "seeds": [0], "peak_memory_mb": 100.0,
                "runs": [{"key": k, "status": status, "wall_s": wall / len(keys)} for k in keys]}

    keys = ["01_m1_teachers/p15/seed0", "01_m1_teachers/p70/seed0"]
    path = tmp_path / "sweep.json"
    old, new = seg("2026-01-01T00:00:00", 2794.0, "aaa", keys), seg("2026-01-02T00:00:00", 2310.0, "bbb", keys)
    write_json(path, {"profile": "quick", "segments": [old, new]})
    rec = SweepRecord(path, new, print)
    rec.doc = read_json(path)
    rec.save()
    doc = read_json(path)
    assert len(doc["segments"]) == 2 and doc["wall_s"] == 2310.0 and doc["git_commits"] == ["bbb"]
    assert doc["started"] == "2026-01-02T00:00:00"
    # a later segment that redid one run only: both segments count
    part = seg("2026-01-03T00:00:00", 100.0, "ccc", keys[:1])
    write_json(path, {"profile": "quick", "segments": [new, part]})
    rec = SweepRecord(path, part, print)
    rec.doc = read_json(path)
    rec.save()
    assert read_json(path)["wall_s"] == 2410.0
