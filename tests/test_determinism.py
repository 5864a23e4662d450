"""Same seed, same model (issue 21): a smoke model trained in two separate processes is the same file,
byte for byte, also when the second process trains another model first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from repro.paths import PROJECT_ROOT


def _train(results: Path, subsets: list[str], odir_root: Path, threads: str) -> None:
    # the runs folder follows the results root (notebooks/conftest.py sets $REPRO_RUNS for the notebook tests)
    env = {k: v for k, v in os.environ.items() if k not in ("REPRO_RUNS", "REPRO_RESULTS")}
    env.update(PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "repro", "train", "--stage", "m1", "--subsets", *subsets, "--profile", "smoke",
           "--p", "15", "--seed", "1", "--data-root", str(odir_root), "--results-root", str(results)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def test_same_seed_same_checkpoint_across_processes_and_model_order(odir_root, tmp_path):
    # process A: M1{T1} alone, the machine's default threads; process B: M1{T3} first, then M1{T1},
    # with OMP_NUM_THREADS=2 -- the profile's num_threads (1 for smoke) must win over both
    _train(tmp_path / "a", ["T1"], odir_root, "1")
    _train(tmp_path / "b", ["T3", "T1"], odir_root, "2")
    ckpts = {k: sorted((tmp_path / k / "runs").rglob("m1-T1.pt")) for k in ("a", "b")}
    assert len(ckpts["a"]) == 1 and len(ckpts["b"]) == 1, ckpts
    assert ckpts["a"][0].read_bytes() == ckpts["b"][0].read_bytes()
    results = {k: json.loads(next((tmp_path / k / "smoke").rglob("m1-T1.json")).read_text()) for k in ("a", "b")}
    for res in results.values():
        assert res["numerics"]["threads"] == 1          # the smoke profile's num_threads
        assert res["data"]["split_seed"] == 1 and res["data"]["split_mode"] == "per_seed"
        assert res["data"]["split_file"].endswith("odir5k-n5503_seed1_n240.csv")
        per = res["test_predictions"]
        assert len(per["image"]) == res["data"]["n_test"] == len(per["coarse"]["pred"])
    assert results["a"]["metrics"]["test"] == results["b"]["metrics"]["test"]


def test_split_seed_follows_the_seed_unless_fixed():
    import pytest

    from repro.errors import ConfigError
    from repro.experiments.context import split_seed_of
    from repro.profiles import get_profile

    quick = get_profile("quick")
    assert quick.split == "per_seed" and [split_seed_of(quick, s) for s in (0, 1, 2)] == [0, 1, 2]
    fixed = quick.with_overrides(split="fixed", split_seed=0)
    assert [split_seed_of(fixed, s) for s in (0, 1, 2)] == [0, 0, 0]
    with pytest.raises(ConfigError, match="split='per_patient'"):
        split_seed_of(quick.with_overrides(split="per_patient"), 1)
    # the committed split files of the reference data exist for every default seed, full and smoke-sized
    for s in (0, 1, 2):
        for suffix in ("", "_n240"):
            assert (PROJECT_ROOT / "results" / "splits" / f"odir5k-n5503_seed{s}{suffix}.csv").is_file()
