"""Tests of the learning `quick` design (issue 8): class-balanced T1 loss, the tapped frozen encoder
with its shared neck, the caption-diversity metrics, the optimiser schedule and the sweep's τ dependency."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.distill.losses import class_balance_weights, m1_loss, task_ce
from repro.engine.fit import make_optimizer
from repro.engine.metrics import caption_metrics
from repro.errors import ConfigError
from repro.models.encoders import build_encoder, split_encoder, tap_dim
from repro.models.mtlnet import MTLNet
from repro.profiles import get_profile
from repro.sweep.plan import plan_sweep


# ---------------------------------------------------------------- class-balanced loss

def test_class_balance_weights_golden_values():
    counts = [10, 30, 60]                      # N = 100, K = 3
    full = class_balance_weights(counts, 1.0)  # N / (K n_c)
    np.testing.assert_allclose(full.numpy(), [100 / 30, 100 / 90, 100 / 180], rtol=1e-6)
    half = class_balance_weights(counts, 0.5)
    np.testing.assert_allclose(half.numpy(), np.sqrt([100 / 30, 100 / 90, 100 / 180]), rtol=1e-6)
    np.testing.assert_allclose(class_balance_weights(counts, 0.0).numpy(), [1, 1, 1])
    # an absent class counts as one image instead of dividing by zero
    np.testing.assert_allclose(class_balance_weights([0, 4], 1.0).numpy(), [5 / 2, 5 / 8], rtol=1e-6)
    # full balancing gives every class the same total weight
    w = full.numpy() * np.array(counts)
    np.testing.assert_allclose(w, w[0])


def test_class_balance_weights_reject_bad_input():
    with pytest.raises(ConfigError, match="power"):
        class_balance_weights([1, 2], -1.0)
    with pytest.raises(ConfigError, match=">= 2 classes"):
        class_balance_weights([5], 1.0)


def test_weighted_task_ce_golden_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([3.0, 1.0])
    ce = -F.log_softmax(logits, 1)[torch.arange(3), y]
    expected = float((3 * ce[0] + ce[1] + ce[2]) / (3 + 1 + 1))
    got = float(task_ce({"coarse": logits}, {"coarse": y}, "coarse", w))
    assert got == pytest.approx(expected, rel=1e-6)
    assert float(task_ce({"coarse": logits}, {"coarse": y}, "coarse")) == pytest.approx(float(ce.mean()), rel=1e-6)
    terms = m1_loss({"coarse": logits}, {"coarse": y}, ("coarse",), class_weights={"coarse": w})
    assert float(terms["total"]) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- tapped encoder + neck

def test_tapped_trunk_is_mean_and_max_of_each_stage():
    spec = build_encoder("efficientnet_lite0", pretrained=False)
    trunk, top = split_encoder(spec, 0, taps=("block4", "block6"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        v = trunk(x)
        h = x.contiguous(memory_format=torch.channels_last)
        maps = {}
        for name, stage in spec.stages.items():
            h = stage(h)
            maps[name] = h
            if name == "block6":
                break
    ref = torch.cat([maps["block4"].mean((2, 3)), maps["block4"].amax((2, 3)),
                     maps["block6"].mean((2, 3)), maps["block6"].amax((2, 3))], 1)
    assert v.shape == (2, tap_dim(spec, ("block4", "block6"))) == (2, 2 * (112 + 320))
    torch.testing.assert_close(v, ref)
    assert "head" not in trunk.stages and len(top.stages) == 0
    with pytest.raises(ConfigError, match="taps"):
        split_encoder(spec, 1, taps=("block4",))
    with pytest.raises(ConfigError, match="unknown"):
        split_encoder(spec, 0, taps=("block9",))


def test_neck_model_trains_only_the_shared_part_and_round_trips():
    kw = dict(encoder="efficientnet_lite0", tasks=("coarse", "fine", "caption"), num_classes={"coarse": 5, "fine": 7},
              vocab_size=12, trainable=0, pretrained=False, taps=("block4", "block5", "block6"), neck_hidden=32)
    model = MTLNet(**kw)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("neck.", "heads.")) for n in trainable)
    x = torch.randn(3, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        full = model(x)
        cached = model(model.trunk_features(x), from_trunk=True)
    torch.testing.assert_close(full["coarse"], cached["coarse"])
    clone = MTLNet.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x)["fine"], full["fine"])
    with pytest.raises(ConfigError, match="go together"):
        MTLNet(**{**kw, "neck_hidden": None})


def test_onecycle_schedule_warms_up_and_decays():
    prof = get_profile("quick")
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt, sched = make_optimizer(params, prof, total_steps=100)
    assert isinstance(opt, torch.optim.AdamW)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(prof.lr, rel=1e-3) and int(np.argmax(lrs)) in (9, 10)
    assert lrs[0] < 0.1 * prof.lr and lrs[-1] < 0.01 * prof.lr
    for total in range(2, 40):   # no step count breaks it (torch's OneCycleLR divides by zero at 10)
        opt, sched = make_optimizer([torch.nn.Parameter(torch.zeros(1))], prof, total_steps=total)
        for _ in range(total):
            opt.step()
            sched.step()
    with pytest.raises(ConfigError, match="optimizer"):
        make_optimizer(params, prof.with_overrides(optimizer="lion"), 10)


# ---------------------------------------------------------------- caption diversity

def test_distinct_captions_and_per_class_caption_accuracy():
    refs = ["normal fundus", "normal fundus", "moderate non proliferative retinopathy", "cataract"]
    hyps = ["normal fundus", "normal fundus", "moderate non proliferative retinopathy", "normal fundus"]
    m = caption_metrics(refs, hyps, groups=["normal", "normal", "dr", "other"])
    assert m["distinct_captions"] == 2
    assert m["top_caption_share"] == pytest.approx(0.75)
    assert m["exact_match_by_group"] == {"normal": 1.0, "dr": 1.0, "other": 0.0}
    const = caption_metrics(refs, ["normal fundus"] * 4)
    assert const["distinct_captions"] == 1 and const["top_caption_share"] == 1.0


# ---------------------------------------------------------------- sweep planning of the τ dependency

def test_sweep_plans_the_tau_seed_dependency():
    """`sweep --profile quick --notebooks 01 02 03 04 --p 30 --seeds 1` failed in 02: quick shares seed 0's
    τ study (tau_seed = 0), which the plan did not schedule. Now seed 0's teachers and study come first."""
    assert get_profile("quick").tau_seed == 0
    runs = plan_sweep(["01", "02", "03", "04"], "quick", [30], [1])
    keys = [(r.stem[:2], r.p, r.seed) for r in runs]
    assert keys[:2] == [("01", 30, 0), ("04", 30, 0)]
    # the τ study (04) runs right after the teachers, before the stages that read its choice
    assert keys[2:] == [("01", 30, 1), ("04", 30, 1), ("02", 30, 1), ("03", 30, 1)]
    # when seed 0 is part of the sweep anyway, or nothing reads τ, nothing is added
    both = plan_sweep(["01", "02"], "quick", [30], [0, 1])
    assert [(r.stem[:2], r.seed) for r in both] == [("01", 0), ("02", 0), ("01", 1), ("02", 1)]
    assert [(r.stem[:2], r.seed) for r in plan_sweep(["01"], "quick", [30], [1])] == [("01", 1)]


def test_profile_without_shared_tau_adds_nothing(monkeypatch):
    import repro.profiles as profiles

    monkeypatch.setitem(profiles.PROFILES, "quick", profiles.PROFILES["quick"].with_overrides(tau_seed=None))
    runs = plan_sweep(["01", "02", "03", "04"], "quick", [30], [1])
    assert [(r.stem[:2], r.seed) for r in runs] == [("01", 1), ("04", 1), ("02", 1), ("03", 1)]


# ---------------------------------------------------------------- degenerate splits (issue 11, item 7)

def test_degenerate_split_warnings():
    import pandas as pd

    from repro.data.prepare import split_warnings

    rows = [{"patient_id": f"p{i}", "split": "train", "coarse": "normal"} for i in range(30)]
    rows += [{"patient_id": f"v{i}", "split": "val", "coarse": "dr"} for i in range(25)]
    rows += [{"patient_id": "t0", "split": "test", "coarse": "normal"}] * 2   # one patient, both eyes
    w = split_warnings(pd.DataFrame(rows), ("normal", "dr", "amd"))
    assert len(w) == 2
    assert "split 'test' has only 1 patient(s) (2 images" in w[0]
    assert "['dr', 'amd'] have no test image" in w[1]
    healthy = rows[:55] + [{"patient_id": f"t{i}", "split": "test", "coarse": c}
                           for i, c in enumerate(["normal", "dr", "amd"] * 8)]
    assert split_warnings(pd.DataFrame(healthy), ("normal", "dr", "amd")) == []


def test_result_json_records_data_warnings(smoke_teachers, smoke_ctx):
    import json

    res = json.loads(smoke_ctx.result_path("m1", "T1+T2+T3").read_text())
    assert res["warnings"] == smoke_ctx.prepared.info["warnings"] == []   # 240 patients: a sound split
