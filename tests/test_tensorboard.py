"""TensorBoard curves (repro.engine.tb_log): opt-in, one run directory per model, and the events read back
are the result JSON's history, epoch by epoch (training loss terms, validation values, learning rate)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from repro.engine.tb_log import EVENTS_GLOB, epoch_log, run_dir, tensorboard_root
from repro.names import TENSORBOARD_ENV
from repro.profiles import get_profile


def _events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_curves_are_history(folder: Path, history: list[dict]) -> None:
    events = _events(folder)
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        for key, value in row.items():
            if key != "epoch" and value is not None and math.isfinite(value):
                expected.setdefault(key, []).append((row["epoch"], value))
    assert events.keys() == expected.keys()
    for tag, points in expected.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_curves_of_a_model_are_its_history_and_a_retrain_replaces_them(smoke_ctx, tmp_path, monkeypatch):
    from repro.engine.stage import supervised_stage
    from repro.experiments.context import train_and_record

    ctx = smoke_ctx.for_seed(0)
    ctx = type(ctx)(**{**ctx.__dict__, "profile": ctx.profile.with_overrides(val_every=2, max_epochs=3, patience=5)})
    monkeypatch.setenv(TENSORBOARD_ENV, str(tmp_path / "tb"))
    idx = ctx.indices("train", p=ctx.p)
    stage = supervised_stage(ctx.prepared, ("coarse", "fine"))
    res = train_and_record(ctx, "tbtest", "t12", ctx.new_model(("coarse", "fine")), stage, idx, params={},
                           progress=False)
    folder = tmp_path / "tb" / "smoke" / "p15" / "seed0" / "tbtest-t12"
    assert folder == run_dir(tmp_path / "tb", "smoke", 15, 0, "tbtest", "t12")
    hist = res["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3] and all(h["lr"] > 0 for h in hist)
    assert math.isnan(hist[0]["val/score"]) and "val/coarse/balanced_accuracy" not in hist[0]   # val_every = 2
    assert {"train/total", "val/score", "val/coarse/balanced_accuracy", "val/fine/top1", "lr"} <= set(_events(folder))
    _assert_curves_are_history(folder, hist)

    again = train_and_record(ctx, "tbtest", "t12", ctx.new_model(("coarse", "fine")), stage, idx, params={},
                             force=True, progress=False)
    assert len(list(folder.glob(EVENTS_GLOB))) == 1   # the first attempt's curves are gone, none doubled
    _assert_curves_are_history(folder, again["history"])


def test_train_tensorboard_flag(odir_root, tmp_path):
    from repro.cli import main
    from repro.io import read_json

    tb = tmp_path / "curves"
    rc = main(["train", "--stage", "m1", "--subsets", "T1", "--profile", "smoke", "--data-root", str(odir_root),
               "--results-root", str(tmp_path / "R"), "--tensorboard", str(tb)])
    assert rc == 0 and TENSORBOARD_ENV not in os.environ   # set for the command only
    res = read_json(tmp_path / "R" / "smoke" / "p15" / "seed0" / "m1-T1.json")
    _assert_curves_are_history(tb / "smoke" / "p15" / "seed0" / "m1-T1", res["history"])
    assert [q.name for q in (tb / "smoke" / "p15" / "seed0").iterdir()] == ["m1-T1"]


def test_where_the_curves_go(tmp_path, monkeypatch):
    monkeypatch.delenv(TENSORBOARD_ENV, raising=False)
    results_dir = tmp_path / "R" / "smoke"
    assert tensorboard_root(get_profile("smoke"), results_dir) is None   # off by default
    with epoch_log(get_profile("smoke"), results_dir, 15, 0, "m1", "T1") as log:
        assert log is None
    assert tensorboard_root(get_profile("smoke", tensorboard="tb"), results_dir) == tmp_path / "R" / "tb"
    assert tensorboard_root(get_profile("smoke", tensorboard=str(tmp_path / "abs")), results_dir) == tmp_path / "abs"
    monkeypatch.setenv(TENSORBOARD_ENV, str(tmp_path / "flag"))   # --tensorboard wins over the profile
    assert tensorboard_root(get_profile("smoke", tensorboard="tb"), results_dir) == tmp_path / "flag"


def test_missing_tensorboard_is_one_clear_error(monkeypatch):
    import importlib.util

    from repro.engine import tb_log
    from repro.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        tb_log.require_tensorboard()
