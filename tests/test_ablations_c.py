"""Ablation 8, the authors' code choices: last-epoch weights, one toggle at a time, their effects (smoke, real data)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

import repro.engine.fit as fit_module
from repro.engine.fit import fit, validation_score
from repro.engine.stage import supervised_stage
from repro.errors import ConfigError, MissingStageError
from repro.experiments.ablations.authors import TOGGLES, authors_name, run_authors_choices
from repro.experiments.context import train_and_record
from repro.experiments.tau import AUTHORS_TAUS
from repro.names import ABLATION_STAGE, SUBSETS, TASKS, result_file


def _isolated(ctx, tmp_path, with_teachers: bool):
    """``ctx`` with its own results and runs folders (sharing data and model inputs), M1 checkpoints copied."""
    new = dataclasses.replace(ctx, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    new.run_artifacts.mkdir(parents=True, exist_ok=True)
    if with_teachers:
        for s in SUBSETS:
            shutil.copy(ctx.checkpoint_path("m1", s), new.checkpoint_path("m1", s))
    return new


def test_restore_best_false_keeps_the_last_epoch(smoke_ctx, monkeypatch):
    """Validation scores 0.5, 0.9, 0.1, 0.2 (best: epoch 2); patience 1 would stop after epoch 3."""
    real_predict, states = fit_module.predict, []

    def spy(model, *a, **kw):
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_predict(model, *a, **kw)

    prof = dataclasses.replace(smoke_ctx.profile, max_epochs=4, patience=1, min_epochs=1)
    stage = supervised_stage(smoke_ctx.prepared, ("coarse",))
    idx, val = smoke_ctx.indices("train", p=15), smoke_ctx.indices("val")
    monkeypatch.setattr(fit_module, "predict", spy)
    final = {}
    for restore in (True, False):
        scores = iter([0.5, 0.9, 0.1, 0.2])
        monkeypatch.setattr(fit_module, "validation_score", lambda m, t: next(scores))
        states.clear()
        model = smoke_ctx.new_model(("coarse",))
        fr = fit(model, smoke_ctx.bank(), smoke_ctx.prepared, idx, val, stage, prof,
                 torch.Generator().manual_seed(0), progress=False, restore_best=restore)
        final[restore] = model.state_dict()
        assert fr.best_epoch == 2 and fr.best_val_score == 0.9
        assert len(fr.history) == (3 if restore else 4)   # no early stopping without the restore
        assert fr.tested_epoch == (2 if restore else 4)
        held = states[fr.tested_epoch - 1]
        assert all(torch.equal(final[restore][k], held[k]) for k in held)
        other = states[1] if not restore else states[-1]
        assert any(not torch.equal(final[restore][k], other[k]) for k in other)


def test_train_and_record_records_best_and_tested_epoch(smoke_ctx, tmp_path):
    ctx = _isolated(smoke_ctx, tmp_path, with_teachers=False)
    tasks = ("coarse", "fine")
    res = train_and_record(ctx, ABLATION_STAGE, "last-epoch-check", ctx.new_model(tasks),
                           supervised_stage(ctx.prepared, tasks), ctx.indices("train", p=15), params={},
                           progress=False, max_epochs=3, restore_best=False)
    assert res["params"]["restore_best"] is False
    assert res["tested_epoch"] == len(res["history"]) == 3
    assert res["best_epoch"] == 1 + int(np.argmax([h["val/score"] for h in res["history"]]))
    # the model tested is the last epoch's: its validation score is the last row's, recomputed
    assert validation_score(res["metrics"]["val"], tasks) == pytest.approx(res["history"][-1]["val/score"], abs=1e-9)


def test_each_toggle_changes_only_its_own_parameter(smoke_teachers, smoke_ctx, tmp_path):
    from repro.experiments.m2m3 import run_m2, run_m3

    ctx = _isolated(smoke_ctx, tmp_path, with_teachers=True)
    run_m2(ctx, taus=1.0, progress=False)    # notebook 02/03's single-teacher defaults: reused
    run_m3(ctx, taus=1.0, progress=False)
    out = run_authors_choices(ctx, taus=1.0, progress=False)
    single, ens = out["defaults"]["single"], out["defaults"]["ensemble"]
    assert single["m2"]["reused"] and single["m2"]["file"] == "m2-single.json"
    assert single["m3"]["reused"] and single["m3"]["file"] == "m3-single.json"
    assert not ens["m2"]["reused"] and ens["m2"]["file"] == result_file(ABLATION_STAGE, "authors-m2-default_ensemble")
    assert not ens["m3"]["reused"] and ens["m3"]["why_trained"]
    expected = {"kd_mean": ["kd_reduction"], "sum_kl": ["aggregation"], "tau_authors": ["tau_source", "taus"],
                "last_epoch": ["restore_best"]}
    assert set(out["toggles"]) == set(TOGGLES)
    for key, changed in expected.items():
        for m in ("m2", "m3"):
            row = out["toggles"][key][m]
            assert row["changed"] == changed, (key, m)
            res = json.loads(ctx.result_path(ABLATION_STAGE, authors_name(m, key)).read_text())
            assert set(row["effect"]) == {"T1", "T2", "T3"}
            if m == "m3":   # a toggle's M3 starts from, and learns from, its own M2
                assert res["params"]["init"] == f"{ABLATION_STAGE}-{authors_name('m2', key)}"
            params = res["params"]
            assert params["kd_reduction"] == ("mean" if key == "kd_mean" else "batchmean")
            assert params["aggregation"] == ("sum_kl" if key == "sum_kl" else "mean_prob")
            assert params["restore_best"] is (key != "last_epoch")
            assert params["ensemble"] is (key == "sum_kl")
            taus = dict(zip(TASKS, map(float, AUTHORS_TAUS[15]))) if key == "tau_authors" else {t: 1.0 for t in TASKS}
            assert params["taus"] == taus
            assert res["tested_epoch"] == (len(res["history"]) if key == "last_epoch" else res["best_epoch"])
    # a second call loads what fits and retrains what does not (here: a stored M2 with other options, and
    # the M3 that started from it)
    paths = {m: ctx.result_path(ABLATION_STAGE, authors_name(m, "kd_mean")) for m in ("m2", "m3")}
    before = {m: p.stat().st_mtime_ns for m, p in paths.items()}
    run_authors_choices(ctx, toggles=("kd_mean",), taus=1.0, progress=False)
    assert {m: p.stat().st_mtime_ns for m, p in paths.items()} == before
    stale = json.loads(paths["m2"].read_text())
    stale["params"]["kd_reduction"] = "batchmean"
    paths["m2"].write_text(json.dumps(stale))
    again = run_authors_choices(ctx, toggles=("kd_mean",), taus=1.0, progress=False)
    assert json.loads(paths["m2"].read_text())["params"]["kd_reduction"] == "mean"
    assert all(paths[m].stat().st_mtime_ns > before[m] for m in paths)
    assert again["toggles"]["kd_mean"]["m3"]["changed"] == ["kd_reduction"]
    with pytest.raises(ConfigError, match="kd_reduction='sum'"):
        run_m2(ctx, taus=1.0, kd_reduction="sum", progress=False, stage_name=ABLATION_STAGE, name="bad")
    assert not ctx.result_path(ABLATION_STAGE, "bad").exists()


def test_missing_teachers_tau_study_or_toggle_are_clear_errors(smoke_ctx, tmp_path):
    ctx = _isolated(smoke_ctx, tmp_path, with_teachers=False)
    with pytest.raises(MissingStageError, match="01_m1_teachers"):
        run_authors_choices(ctx, taus=1.0, progress=False)
    with pytest.raises(MissingStageError, match="04_temperature"):
        run_authors_choices(ctx, progress=False)
    with pytest.raises(ConfigError, match="kd_sum"):
        run_authors_choices(ctx, toggles=("kd_sum",), taus=1.0, progress=False)


# ---------------------------------------------------------------- the report on synthetic result JSON

def _result(stage, name, p, seed, t1, t2, t3, **params):
    base = {"ensemble": False, "tau_source": "validation", "taus": {"coarse": 5.0}, "kd_reduction": "batchmean",
            "aggregation": "mean_prob", "alpha": 0.95, "restore_best": True}
    return {"stage": stage, "name": name, "p": p, "seed": seed, "params": {**base, **params},
            "metrics": {"test": {"coarse": {"balanced_accuracy": t1, "accuracy": t1}, "fine": {"top1": t2},
                                 "caption": {"bleu_paper": t3}}}}


def _write(folder, res):
    path = folder / f"p{res['p']}" / f"seed{res['seed']}" / result_file(res["stage"], res["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))


# known paired differences (toggle − default) per (p, seed) for kd_mean on M2, T1
KD_MEAN_T1 = {(15, 0): -0.02, (15, 1): -0.04, (15, 2): -0.03, (70, 0): -0.01, (70, 1): -0.02, (70, 2): -0.05}


def _synthetic(folder):
    rng = np.random.default_rng(0)
    for p in (15, 30, 70):
        for seed in range(3):
            base = {m: (0.4 + rng.random() / 10, 0.5, 0.45) for m in ("m2", "m3")}
            for m in ("m2", "m3"):
                _write(folder, _result(m, "ensemble", p, seed, *base[m], ensemble=True))
            _write(folder, _result("m3", "single", p, seed, *base["m3"]))
            # M2's single-teacher default trained by the runner itself takes precedence over m2-single
            _write(folder, _result("m2", "single", p, seed, 0.0, 0.0, 0.0))
            _write(folder, _result(ABLATION_STAGE, "authors-m2-default_single", p, seed, *base["m2"]))
            d = KD_MEAN_T1.get((p, seed), 0.5)   # p = 30 is outside the report's p and must not count
            t1, t2, t3 = base["m2"]
            _write(folder, _result(ABLATION_STAGE, "authors-m2-kd_mean", p, seed, t1 + d, t2 + 0.01, t3,
                                   kd_reduction="mean"))
            # M3 under kd_mean: its default was trained with another alpha -> left out, and said so
            _write(folder, _result(ABLATION_STAGE, "authors-m3-kd_mean", p, seed, *base["m3"], kd_reduction="mean",
                                   alpha=0.5))
            _write(folder, _result(ABLATION_STAGE, "authors-m2-last_epoch", p, seed, t1 + 0.001 * (seed + 1), t2, t3,
                                   restore_best=False))   # on M2 only
            _write(folder, _result(ABLATION_STAGE, "leakage-patient", p, seed, 0.5, 0.5, 0.5))
            _write(folder, _result(ABLATION_STAGE, "leakage-image", p, seed, 0.6 + 0.01 * seed, 0.5, 0.5))


def test_effects_and_forest_plot_on_synthetic_results(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from scipy.stats import t as student_t

    from repro.report.ablation_effects import authors_choices_report

    _synthetic(tmp_path)
    rep = authors_choices_report(tmp_path)
    eff = rep["effects"].set_index(["choice", "model", "task"])
    d = np.array(list(KD_MEAN_T1.values()))
    half = student_t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    kd = eff.loc[("kd_mean", "M2", "T1")]
    assert kd["n_pairs"] == 6 and kd["ps"] == "15, 70"
    assert kd["effect"] == pytest.approx(d.mean()) and kd["ci_low"] == pytest.approx(d.mean() - half)
    assert kd["ci_high"] == pytest.approx(d.mean() + half) and kd["direction"] == "lowers"
    assert eff.loc[("kd_mean", "M2", "T2"), "effect"] == pytest.approx(0.01)
    assert eff.loc[("kd_mean", "M2", "T3"), "effect"] == pytest.approx(0.0)
    assert eff.loc[("kd_mean", "M3", "T1"), "n_pairs"] == 0
    assert "6 run(s) left out" in eff.loc[("kd_mean", "M3", "T1"), "note"] and "alpha" in eff.loc[("kd_mean", "M3", "T1"), "note"]
    last = eff.loc[("last_epoch", "M2", "T1")]
    assert last["effect"] == pytest.approx(0.002) and last["n_pairs"] == 6 and last["direction"] == "raises"
    assert eff.loc[("sum_kl", "M2", "T1"), "n_pairs"] == 0 and eff.loc[("sum_kl", "M2", "T1"), "note"] == "not run"
    split = eff.loc[("per_image_split", "M1", "T1")]
    assert split["effect"] == pytest.approx(0.11) and split["n_pairs"] == 6
    assert "raises M2 T1" in rep["findings"]["last_epoch"] and "lowers M2 T1" in rep["findings"]["kd_mean"]
    # the figure draws each effect where the table says: markers of the T1 panel at the T1 effects
    fig = rep["figure"]
    assert len(fig.axes) == 3 and fig.texts[0].get_text().startswith("What each choice of the published code")
    xs = sorted(float(line.get_xdata()[0]) for line in fig.axes[0].lines
                if line.get_marker() in ("o", "s", "D") and len(line.get_xdata()) == 1)
    want = sorted(float(v) for v in rep["effects"].query("task == 'T1'")["effect"] if np.isfinite(v))
    assert xs == pytest.approx(want)


def test_missing_leakage_row_says_so(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from repro.report.ablation_effects import authors_choices_report

    rep = authors_choices_report(tmp_path)
    row = rep["effects"].query("choice == 'per_image_split'").iloc[0]
    assert row["n_pairs"] == 0 and "no ablation-leakage" in row["note"]
    assert "not run" in rep["findings"]["per_image_split"]
