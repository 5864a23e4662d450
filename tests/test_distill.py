"""Distillation: teacher cache, ensemble, KD terms, M3's blindness to labels (smoke profile, real data)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from repro.experiments.ensemble import evaluate_ensemble
from repro.experiments.kd_stage import build_teachers, kd_stage, m1_members, true_caption_prefix
from repro.names import MAIN
from repro.experiments.m2m3 import run_m2, run_m3
from repro.experiments.context import Context
from repro.distill.teacher_outputs import cached_outputs, compute_outputs
from repro.engine.evaluate import predict


def test_teacher_cache_equals_a_fresh_forward(smoke_teachers, smoke_ctx, tmp_path):
    model, ckpt = m1_members(smoke_ctx, (MAIN,))[MAIN]
    bank = smoke_ctx.bank()
    idx = smoke_ctx.indices("train", p=15)
    prefix = true_caption_prefix(smoke_ctx, idx)
    first = cached_outputs(tmp_path, ckpt, model, bank, idx, prefix, "true")
    second = cached_outputs(tmp_path, ckpt, model, bank, idx, prefix, "true")  # from disk
    fresh = compute_outputs(model, bank, idx, prefix)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    for t in ("coarse", "fine", "caption"):
        np.testing.assert_array_equal(first[t], second[t])
        np.testing.assert_array_equal(first[t], fresh[t])
    # against the model itself, view by view (float16 storage)
    model.eval()
    with torch.inference_mode():
        b = torch.as_tensor(idx[:8])
        for vi in range(len(bank.views)):
            out = model(bank.batch(b, torch.full_like(b, vi)), captions=torch.as_tensor(prefix[vi, :8]), from_trunk=True)
            for t in ("coarse", "fine", "caption"):
                np.testing.assert_allclose(first[t][vi, :8], out[t].numpy(), rtol=2e-3, atol=2e-3)


def test_retrained_teacher_invalidates_the_cache(smoke_teachers, smoke_ctx, tmp_path):
    model, ckpt = m1_members(smoke_ctx, ("T1",))["T1"]
    idx = smoke_ctx.indices("train", p=15)
    copy = tmp_path / "t.pt"
    shutil.copy(ckpt, copy)
    cached_outputs(tmp_path / "c", copy, model, smoke_ctx.bank(), idx, None, "none")
    with torch.no_grad():
        next(model.heads["coarse"].parameters()).add_(1.0)
    from repro.models.checkpoints import save_checkpoint

    save_checkpoint(copy, model, smoke_ctx.prepared)
    out = cached_outputs(tmp_path / "c", copy, model, smoke_ctx.bank(), idx, None, "none")
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2
    np.testing.assert_allclose(out["coarse"][0], compute_outputs(model, smoke_ctx.bank(), idx)["coarse"][0])


def test_ensemble_predictor_is_the_mean_of_probabilities(smoke_teachers, smoke_ctx):
    res = evaluate_ensemble(smoke_ctx)
    members = m1_members(smoke_ctx)
    idx = smoke_ctx.indices("test")
    probs = [torch.softmax(torch.as_tensor(predict(m, smoke_ctx.bank(), idx)["coarse"]), -1).numpy()
             for name, (m, _) in members.items() if "coarse" in m.tasks]
    assert len(probs) == 4  # T1, T1+T2, T1+T3, T1+T2+T3
    pred = np.mean(probs, axis=0).argmax(1)
    acc = float(np.mean(pred == smoke_ctx.prepared.manifest["coarse_idx"].to_numpy()[idx]))
    assert res["metrics"]["test"]["coarse"]["accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("labeled", [True, False])
def test_kd_terms_vanish_when_student_equals_teacher(smoke_teachers, smoke_ctx, labeled):
    model, ckpt = m1_members(smoke_ctx, (MAIN,))[MAIN]
    idx = smoke_ctx.indices("train", p=15)
    ts = build_teachers(smoke_ctx, {MAIN: (model, ckpt)}, idx, true_caption_prefix(smoke_ctx, idx), "true")
    taus = {"coarse": 2.0, "fine": 5.0, "caption": 1.0}
    stage = kd_stage(smoke_ctx, "m2" if labeled else "m3", model.tasks, ts, taus, labeled=labeled)
    b = torch.as_tensor(idx[:16])
    views = torch.tensor([0, 1] * 8)
    batch = stage.make_batch(b, views)
    model.eval()
    with torch.no_grad():
        out = model(smoke_ctx.bank().batch(b, views), captions=batch["prefix"], from_trunk=True)
        batch["teacher"] = {t: [x.float() for x in v] for t, v in batch["teacher"].items()}
        terms = stage.loss(out, batch)
    for t in model.tasks:
        assert float(terms[f"kd/{t}"]) == pytest.approx(0.0, abs=2e-3), t
    assert ("ce/coarse" in terms) == labeled


def test_m3_never_reads_labels_of_the_unlabeled_set(smoke_teachers, smoke_ctx, tmp_path):
    run_m2(smoke_ctx, ensemble=False, taus=2.0, progress=False)
    prep = smoke_ctx.prepared
    pool = smoke_ctx.indices(unlabeled=("all", 15))
    m = prep.manifest.copy()
    rng = np.random.default_rng(1)
    m.loc[m.index[pool], "coarse_idx"] = rng.integers(0, len(prep.coarse_classes), len(pool))
    m.loc[m.index[pool], "fine_idx"] = rng.integers(0, len(prep.fine_classes), len(pool))
    caps = np.array(prep.captions, copy=True)
    caps[pool] = rng.integers(4, len(prep.vocab), caps[pool].shape)
    corrupted = dataclasses.replace(prep, manifest=m, captions=caps)
    results = []
    for name, p in (("clean", prep), ("corrupt", corrupted)):
        ctx = Context(profile=smoke_ctx.profile, p=15, seed=0, prepared=p, results_dir=tmp_path / name / "res",
                      runs_dir=tmp_path / name / "runs", device=smoke_ctx.device, _bank=smoke_ctx.bank())
        ckpt = ctx.checkpoint_path("m2", "single")
        ckpt.parent.mkdir(parents=True)
        shutil.copy(smoke_ctx.checkpoint_path("m2", "single"), ckpt)
        results.append(run_m3(ctx, ensemble=False, taus=2.0, progress=False))
    clean, corrupt = results
    assert [h["train/total"] for h in clean["history"]] == [h["train/total"] for h in corrupt["history"]]
    assert clean["metrics"]["val"] == corrupt["metrics"]["val"]
