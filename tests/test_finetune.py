"""The ``finetune`` profile: the encoder's top stages trained on cached maps of its frozen part.

A tiny finetune-like profile (real ODIR images, 40 patients, 64 px, EfficientNet-Lite0 with its ImageNet
weights, cut ``trainable = 2``: block6 + head trained on block5 maps).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from repro.errors import ConfigError
from repro.names import TASKS
from repro.profiles import PROFILE_OVERRIDES_ENV, get_profile

TINY = dict(image_size=64, max_patients=40, batch_size=16, max_epochs=1, kd_max_epochs=1, t2_min_count=3,
            vocab_min_count=1)

#: float16 storage: round-to-nearest keeps a relative error of at most 2^-11 (normal numbers); the cache
#: ran the trunk on batches of 64 images where the live pass runs 16, so float32 round-off of another
#: kernel blocking adds up to ~2e-7 x max|map| (measured 6e-6 on maps up to 38): allowed 1e-6 x max|map|
FP16_REL, FP32_REORDER = 2.0 ** -11, 1e-6


@pytest.fixture(scope="module")
def ft_ctx(odir_root, module_tmp):
    from repro.experiments.context import make_context

    base = module_tmp
    return make_context("finetune", p=15, seed=0, data_root=odir_root, results_dir=base / "results" / "finetune",
                        runs_dir=base / "runs", **TINY)


def _images(ctx, model, idx):
    from repro.models.encoders import preprocess

    return preprocess(np.asarray(ctx.prepared.images[idx]), model.encoder_spec)


def test_finetune_profile_settings():
    prof = get_profile("finetune")
    quick = get_profile("quick")
    assert prof.encoder == "efficientnet_lite0" and prof.image_size == 256 and prof.taps is None
    assert isinstance(prof.trainable, int) and prof.trainable >= 1
    same = ("head_hidden", "decoder", "decoder_hidden", "decoder_embed", "teacher_forcing", "max_caption_len",
            "class_balance", "optimizer", "lr", "weight_decay", "lr_schedule", "max_epochs", "patience",
            "kd_max_epochs", "alpha", "taus", "kd_reduction", "ensemble", "unlabeled", "tau_seed", "views",
            "t2_min_count", "vocab_min_count", "taxonomy")
    assert {k: getattr(prof, k) for k in same} == {k: getattr(quick, k) for k in same}


def test_cached_maps_equal_the_live_trunk(ft_ctx, tmp_path):
    """fp16 cache (the profile's): every map value within fp16 rounding of the live trunk's, T1/T2 logits
    within 2e-3 x the largest logit (measured: 4e-4), greedy captions the same for >= 90 % of the images;
    fp32 cache of the same batch: maps and logits bitwise equal to the live pass."""
    from repro.models.featcache import trunk_feature_cache

    model = ft_ctx.new_model(TASKS).eval()
    assert model.has_trunk and list(model.top.stages) == ["block6", "head"]
    bank = ft_ctx.bank(model)
    idx = ft_ctx.indices("val")[:16]
    x = _images(ft_ctx, model, idx)
    with torch.inference_mode():
        live_map = model.trunk(x).float()
        cached = bank.batch(torch.as_tensor(idx))
        assert bank.data["orig"].dtype == torch.float16 and cached.shape == live_map.shape
        bound = live_map.abs() * FP16_REL + FP32_REORDER * float(live_map.abs().max())
        assert bool(((cached - live_map).abs() <= bound).all())
        live, from_cache = model(x), model(cached, from_trunk=True)
        for t in ("coarse", "fine"):
            scale = float(live[t].abs().max())
            torch.testing.assert_close(from_cache[t], live[t], rtol=0, atol=2e-3 * scale)
        ids_live, ids_cache = model.generate(x), model.generate(cached, from_trunk=True)
        assert float((ids_live == ids_cache).float().mean()) >= 0.9

        feats32 = trunk_feature_cache(model, np.asarray(ft_ctx.prepared.images[idx]), views=("orig", "hflip"),
                                      dtype=np.float32, root=tmp_path, progress=False)
        m32 = torch.from_numpy(np.array(feats32["orig"]))
        before = torch.get_num_threads()
        torch.set_num_threads(1)   # the cache runs each batch on one torch thread: the same arithmetic, bit for bit
        try:
            assert torch.equal(m32, model.trunk(x).float())
            live1, out32 = model(x), model(m32, from_trunk=True)
            for t in ("coarse", "fine"):
                assert torch.equal(out32[t], live1[t])
            assert torch.equal(model.generate(m32, from_trunk=True), model.generate(x))
            # the hflip view is the trunk's map of the flipped image, not a flipped map
            flipped = model.trunk(torch.flip(x, dims=[3])).float()
            assert torch.equal(torch.from_numpy(np.array(feats32["hflip"])), flipped)
        finally:
            torch.set_num_threads(before)
        assert not torch.allclose(flipped, torch.flip(live_map, dims=[3]), atol=1e-3)


def test_only_the_trained_stages_learn_and_frozen_batchnorm_stays(ft_ctx):
    """One real fit (map flips, encoder LR group): the trunk's weights and BN statistics do not move and
    get no gradient; the top's stages (BN in train mode) and the heads do."""
    from repro.engine.fit import fit, param_groups
    from repro.engine.stage import supervised_stage, t1_class_weights
    from repro.device import seed_everything

    prof = ft_ctx.profile
    assert prof.map_flip > 0 and prof.encoder_lr is not None
    model = ft_ctx.new_model(TASKS)
    bank = ft_ctx.bank(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.trunk.training and not any(m.training for m in model.trunk.modules())
    assert all(m.training for m in model.top.modules())
    groups = param_groups(model, prof)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.top.parameters()}
    assert groups[1]["lr"] == prof.encoder_lr

    # gradients of one step, through the live path (images in): only the top and the heads get them
    idx = ft_ctx.indices("train", p=15)[:8]
    x = _images(ft_ctx, model, idx)
    cap = torch.as_tensor(np.asarray(ft_ctx.prepared.captions)[idx])
    out = model(x, captions=cap)
    (out["coarse"].sum() + out["fine"].sum() + out["caption"].sum()).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.trunk.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.top.parameters())
    for k, v in model.trunk.state_dict().items():
        assert torch.equal(v, before[f"trunk.{k}"]), f"the frozen trunk's {k} moved in a training forward"
    model.zero_grad(set_to_none=True)

    train_idx = ft_ctx.indices("train", p=15)
    stage = supervised_stage(ft_ctx.prepared, TASKS,
                             class_weights=t1_class_weights(ft_ctx.prepared, train_idx, prof.class_balance))
    fr = fit(model, bank, ft_ctx.prepared, train_idx, ft_ctx.indices("val"), stage, prof, seed_everything(0),
             progress=False)
    assert len(fr.history) == 1 and np.isfinite(fr.history[0]["train/total"])
    after = model.state_dict()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        if k.startswith("trunk."):
            assert not moved, f"frozen {k} changed in training"
        elif k.endswith(("running_mean", "running_var")) or k.startswith("heads.") and k.endswith("weight"):
            assert moved, f"trained {k} did not change"
    assert any(k.startswith("top.stages.block6") and k.endswith("running_mean") for k in before)
    assert not model.top.train_bf16  # fit restores the run setting


def test_random_map_flips():
    g = torch.Generator().manual_seed(0)
    from repro.models.inputbank import random_map_flips

    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)
    assert torch.equal(random_map_flips(x, 1.0, g), torch.flip(x, dims=[3]))
    assert torch.equal(random_map_flips(x, 0.0, g), x)
    vec = torch.randn(5, 7)
    assert torch.equal(random_map_flips(vec, 1.0, g), vec)
    many = torch.randn(400, 1, 1, 2)
    flipped = (random_map_flips(many, 0.5, g) != many).any(dim=3).view(-1)
    assert 140 < int(flipped.sum()) < 260


def test_cpu_bf16_top_losses_close_to_fp32(ft_ctx):
    """The top under CPU bf16 autocast: first-batch losses within 1 % of fp32; eval mode stays fp32."""
    from repro.analysis.cut_bench import first_batch_losses
    from repro.engine.stage import supervised_stage

    idx = ft_ctx.indices("train", p=15)
    model = ft_ctx.new_model(TASKS)
    bank = ft_ctx.bank(model)
    stage = supervised_stage(ft_ctx.prepared, TASKS)
    losses = first_batch_losses(ft_ctx, bank, idx, np.arange(len(ft_ctx.prepared.manifest)), stage)
    assert losses["fp32"] > 0 and abs(losses["bf16"] - losses["fp32"]) <= 0.01 * losses["fp32"]
    assert losses["bf16"] != losses["fp32"]  # the bf16 path really ran
    model.eval()
    x = bank.batch(torch.as_tensor(idx[:8]))
    with torch.inference_mode():
        ref = model(x, from_trunk=True)["coarse"]
        model.top.train_bf16 = True
        assert torch.equal(model(x, from_trunk=True)["coarse"], ref)


def test_study_passes_counts_by_hand():
    from repro.analysis.cut_bench import study_estimate, study_passes

    sizes = {"labeled": {15: 10}, "unlabeled": {15: 50}, "val": 4, "test": 6, "all": 70}
    got = study_passes(sizes, epochs=2, kd_epochs=1, n_views=2, seeds=1, tau_runs_per_p=12)
    # claims: 4 M1 x 2 epochs x 10 + M2 1 x 10 + M3 1 x 50
    assert got["claims"]["train"] == 80 + 10 + 50
    # forward: per run (epochs + 1) x val + test; teachers: 2 views x (10 + 2 x 50)
    assert got["claims"]["forward"] == 4 * (3 * 4 + 6) + 2 * (2 * 4 + 6) + 2 * (10 + 100)
    # notebooks: 7 M1 x 20, 2 M2 x 10, 2 M3 x 50, 12 τ runs x 50
    assert got["notebooks"]["train"] == 140 + 20 + 100 + 600
    est = study_estimate(got, train_img_s=1.0, eval_img_s=1e12, cache_s=0.0)
    assert est == {"claims": round(140 / 3600, 2), "notebooks": round(860 / 3600, 2)}


def test_cut_bench_measures_each_cut(odir_root, tmp_path):
    from repro.analysis.cut_bench import cut_bench, format_rows

    r = cut_bench("finetune", cuts=(2, 3), n_images=32, epochs=1, precisions=("fp32",), data_root=odir_root,
                  results_dir=tmp_path / "results" / "finetune", runs_dir=tmp_path / "runs", **TINY)
    by_k = {row["trainable"]: row for row in r["cuts"]}
    assert by_k[2]["input_stage"] == "block5" and by_k[2]["trained_stages"] == ["block6", "head"]
    assert by_k[3]["input_stage"] == "block4" and by_k[3]["map_shape"] == [112, 4, 4]  # 64 px / 16
    assert by_k[3]["trained_params"] > by_k[2]["trained_params"]
    for row in r["cuts"]:
        assert row["train_img_s_fp32"] > 0 and row["eval_img_s"] > 0
        # hours rounded to 0.01: a fast machine's tiny estimate may round to 0 (the arithmetic: test above)
        assert 0 <= row["study_hours_fp32"]["claims"] <= row["study_hours_fp32"]["notebooks"]
    assert "k=3 from block4" in format_rows(r)
    with pytest.raises(ConfigError, match="two batches"):
        cut_bench("finetune", cuts=(2,), n_images=8, data_root=odir_root,
                  results_dir=tmp_path / "results" / "finetune", runs_dir=tmp_path / "runs", **TINY)


def test_profile_overrides_from_the_environment(monkeypatch):
    monkeypatch.setenv(PROFILE_OVERRIDES_ENV, json.dumps({"paper": {"image_size": 64, "taus": [1.0, 5.0]}}))
    prof = get_profile("paper")
    assert prof.image_size == 64 and prof.taus == (1.0, 5.0)
    assert get_profile("paper", image_size=32).image_size == 32  # explicit overrides come last
    assert get_profile("quick").image_size == 256
    for raw, match in (("{not json", "not valid JSON"), ('{"nope": {}}', "unknown profile"),
                       ('{"paper": 3}', "object of objects"),
                       ('{"paper": {"bogus": 1}}', r"OVERRIDES gives profile 'paper' unknown setting\(s\) \['bogus'\]")):
        monkeypatch.setenv(PROFILE_OVERRIDES_ENV, raw)
        with pytest.raises(ConfigError, match=match):
            get_profile("paper")
