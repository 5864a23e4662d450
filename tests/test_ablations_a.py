"""Ablations 1, 2, 3, 5 (notebook 07): subclass head and losses (golden values), and each runner on smoke."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repro.distill.losses import batch_standardize, subclass_aux_loss, subclass_kd_loss, subclass_teacher_loss
from repro.errors import ConfigError
from repro.io import read_json
from repro.models.mtlnet import class_logits
from repro.names import ABLATION_STAGE, SUBCLASS_OUTPUT


# ---------------------------------------------------------------- pure functions
def test_class_logits_is_the_logsumexp_of_each_class_group():
    z = torch.randn(6, 5 * 3, generator=torch.Generator().manual_seed(0))
    c = class_logits(z, 3)
    assert c.shape == (6, 5)
    assert torch.allclose(c[:, 1], torch.logsumexp(z[:, 3:6], 1))
    # the class probability is the sum of its subclass probabilities
    assert torch.allclose(c.softmax(1), z.softmax(1).view(6, 5, 3).sum(2), atol=1e-6)
    with pytest.raises(ConfigError, match="groups of n=4"):
        class_logits(z, 4)


def test_subclass_aux_loss_golden_values():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = batch_standardize(z, eps=0.0)
    assert torch.allclose(v, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    # v_i . v_i = 2, v_i . v_j = -2: -log(e^(2/T) / (e^(2/T) + e^(-2/T))) = log(1 + e^(-4/T))
    assert float(subclass_aux_loss(z, 1.0, eps=0.0)) == pytest.approx(math.log1p(math.exp(-4.0)), abs=1e-6)
    assert float(subclass_aux_loss(z, 2.0, eps=0.0)) == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-6)
    assert float(subclass_aux_loss(z[:1])) == 0.0
    # spread-out sub-logits score lower than collapsed ones
    g = torch.Generator().manual_seed(1)
    spread = torch.eye(8) * 5 + 0.01 * torch.randn(8, 8, generator=g)
    collapsed = torch.randn(8, 1, generator=g) * torch.ones(8, 8)
    collapsed = collapsed + 0.01 * torch.randn(8, 8, generator=g)
    assert float(subclass_aux_loss(spread)) < float(subclass_aux_loss(collapsed))


def test_subclass_kd_loss_golden_value():
    # 2 classes x 2 subclasses; a uniform student: class logits log 2 each -> CE = log 2
    s = torch.zeros(1, 4)
    t = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    out = {"coarse": class_logits(s, 2), SUBCLASS_OUTPUT: s}
    y = {"coarse": torch.tensor([1])}
    terms = subclass_kd_loss(out, y, t, temperature=1.0, alpha=0.5)
    kl = 0.1 * math.log(0.4) + 0.2 * math.log(0.8) + 0.3 * math.log(1.2) + 0.4 * math.log(1.6)
    assert float(terms["ce/coarse"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(terms["kd/coarse"]) == pytest.approx(kl, abs=1e-6)
    assert float(terms["total"]) == pytest.approx(0.399794, abs=1e-5)
    # tau = 2: tau^2 KL(softmax(t/2) || uniform)
    p = np.sqrt([0.1, 0.2, 0.3, 0.4])
    p /= p.sum()
    terms2 = subclass_kd_loss(out, y, t, temperature=2.0, alpha=1.0)
    assert float(terms2["total"]) == pytest.approx(4 * float(np.sum(p * np.log(4 * p))), abs=1e-6)


def test_subclass_teacher_loss_adds_the_weighted_aux_term():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(8, 10, generator=g)
    out = {"coarse": class_logits(z, 2), SUBCLASS_OUTPUT: z}
    y = {"coarse": torch.randint(5, (8,), generator=g)}
    terms = subclass_teacher_loss(out, y, ("coarse",), beta=0.5, aux_temperature=1.0)
    ce = torch.nn.functional.cross_entropy(class_logits(z, 2), y["coarse"])
    assert float(terms["ce/coarse"]) == pytest.approx(float(ce), abs=1e-6)
    assert float(terms["total"]) == pytest.approx(float(ce) + 0.5 * float(subclass_aux_loss(z)), abs=1e-6)
    with pytest.raises(ConfigError, match="beta"):
        subclass_teacher_loss(out, y, ("coarse",), beta=-1.0)


# ---------------------------------------------------------------- runners on smoke
def _check_result(ctx, name, tasks=("coarse",)):
    res = read_json(ctx.result_path(ABLATION_STAGE, name))
    assert res["stage"] == ABLATION_STAGE and res["name"] == name and res["p"] == ctx.p
    for key in ("params", "profile_settings", "metrics", "history", "best_epoch", "git_commit"):
        assert key in res, key
    test = res["metrics"]["test"]
    for t in tasks:
        assert t in test
    if "coarse" in tasks:
        for k in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert 0.0 <= test["coarse"][k] <= 1.0
    return res


def test_imbalance_runner(smoke_ctx):
    from repro.experiments.ablations.imbalance import run_imbalance

    out = run_imbalance(smoke_ctx, progress=False)
    assert set(out["runs"]) == {"imbalance-plain", "imbalance-cb0.6", "imbalance-cb1"}
    plain = _check_result(smoke_ctx, "imbalance-plain")
    cb = _check_result(smoke_ctx, "imbalance-cb1")
    assert plain["profile_settings"]["class_balance"] == 0.0 and plain["params"]["class_weights"] == {}
    w = cb["params"]["class_weights"]["coarse"]
    assert len(w) == len(smoke_ctx.prepared.coarse_classes) and max(w) > 1.0 > min(w)


def test_hinton_runner_and_view(smoke_ctx):
    from repro.experiments.ablations.hinton import HINTON_ALPHAS, HINTON_TAUS, run_hinton
    from repro.report.ablation_tables import hinton_view

    assert HINTON_ALPHAS == (0.1, 0.5, 0.9, 0.95) and HINTON_TAUS == (1.0, 4.0, 10.0)
    out = run_hinton(smoke_ctx, alphas=(0.5, 0.9), taus=(1.0, 4.0), progress=False)
    assert set(out["runs"]) == {"hinton-a0.5-T1", "hinton-a0.5-T4", "hinton-a0.9-T1", "hinton-a0.9-T4"}
    res = _check_result(smoke_ctx, "hinton-a0.9-T4")
    assert res["profile_settings"]["alpha"] == 0.9 and res["params"]["taus"] == {"coarse": 4.0}
    assert res["params"]["teachers"] == {"coarse": ["T1+T2+T3"]}
    view = hinton_view(smoke_ctx.results_dir)
    assert list(view.table.columns) == [1.0, 4.0] and list(view.table.index) == [(15, 0.5), (15, 0.9)]
    assert view.table.loc[(15, 0.9), 4.0] == pytest.approx(res["metrics"]["test"]["coarse"]["balanced_accuracy"])
    assert "M1{T1}" in view.finding and view.effect["chosen_vs_nokd"]["n_pairs"] == 1
    assert view.figure is not None


def test_subclass_runner_and_view(smoke_ctx):
    from repro.experiments.ablations.subclass import run_subclass
    from repro.models.checkpoints import load_checkpoint
    from repro.report.ablation_tables import subclass_view

    out = run_subclass(smoke_ctx, n=3, progress=False)
    assert set(out["runs"]) == {"teacher", "student", "classkd", "plainkd"}
    teacher = _check_result(smoke_ctx, "subclass-n3-teacher")
    assert teacher["params"]["beta"] == out["beta"] and "train/aux/coarse" in teacher["history"][0]
    student = _check_result(smoke_ctx, "subclass-n3")
    assert student["params"]["n"] == 3 and "train/kd/coarse" in student["history"][0]
    for name in ("subclass-n3-classkd", "subclass-plainkd"):
        _check_result(smoke_ctx, name)
    n_cls = len(smoke_ctx.prepared.coarse_classes)
    model, _ = load_checkpoint(smoke_ctx.checkpoint_path(ABLATION_STAGE, "subclass-n3"))
    x = smoke_ctx.bank().batch(torch.as_tensor(smoke_ctx.indices("test")[:4]))
    with torch.no_grad():
        o = model(x, from_trunk=True)
    assert o[SUBCLASS_OUTPUT].shape == (4, n_cls * 3) and o["coarse"].shape == (4, n_cls)
    assert torch.allclose(o["coarse"], class_logits(o[SUBCLASS_OUTPUT], 3))
    view = subclass_view(smoke_ctx.results_dir)
    assert len(view.table) == 5 and set(view.table["n"].dropna()) == {3}
    assert "n = 3" in view.finding and view.effect["n3"]["n_pairs"] == 1


def test_compression_runner_cost_and_view(smoke_ctx):
    from repro.experiments.ablations.compression import COMPRESSION_COST_FILE, run_compression
    from repro.report.ablation_tables import compression_view

    out = run_compression(smoke_ctx, latency=False, progress=False)
    tasks = ("coarse", "fine", "caption")
    kd = _check_result(smoke_ctx, "compress-student-kd", tasks)
    _check_result(smoke_ctx, "compress-student-nokd", tasks)
    assert kd["profile_settings"]["neck_hidden"] == 32 and kd["params"]["tau"] == 4.0
    assert "train/kd/caption" in kd["history"][0]
    assert 0.0 <= kd["metrics"]["test"]["caption"]["bleu_paper"] <= 1.0
    cost = read_json(smoke_ctx.run_results / COMPRESSION_COST_FILE)["models"]
    t, s = cost["teacher"], cost["student_kd"]
    for m in (t, s, cost["student_nokd"]):
        assert m["params"]["trainable"] > 0 and m["flops_image"] > m["flops_features"] > 0
        assert "latency_ms" not in m
    assert s["params"]["trainable"] < t["params"]["trainable"] / 5 and s["params"]["total"] < t["params"]["total"]
    assert s["flops_features"] < t["flops_features"] and s["flops_image"] < t["flops_image"]
    assert out["cost"]["models"]["student_kd"] == s
    view = compression_view(smoke_ctx.results_dir)
    assert len(view.table) == 3 and (view.table["params trainable"] > 0).all()
    assert "trainable parameters" in view.finding


def test_imbalance_view(smoke_ctx):
    from repro.experiments.ablations.imbalance import run_imbalance
    from repro.report.ablation_tables import imbalance_view

    run_imbalance(smoke_ctx, progress=False)
    view = imbalance_view(smoke_ctx.results_dir, default_power=0.6)
    assert set(view.table["model"]) == {"plain CE", "class-balanced, power 0.6", "class-balanced, power 1"}
    assert set(view.effect) == {"T1_bacc", "T1_acc", "T1_f1"} and view.effect["T1_bacc"]["n_pairs"] == 1
    assert "plain CE" in view.finding


def test_bad_subclass_settings_and_missing_students_are_clear_errors(smoke_ctx, tmp_path):
    from repro.errors import MissingStageError
    from repro.experiments.ablations.compression import compression_cost
    from repro.experiments.ablations.subclass import run_subclass
    from repro.experiments.ablations.variants import with_profile
    from repro.experiments.context import make_context

    with pytest.raises(ConfigError, match=r"subclasses=0 must be an integer >= 1"):
        with_profile(smoke_ctx, t1_subclasses=0).new_model(("coarse",))
    with pytest.raises(ConfigError, match="n >= 2 sub-logits"):
        run_subclass(smoke_ctx, n=1, progress=False)
    empty = make_context("smoke", p=15, seed=0, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    with pytest.raises(MissingStageError, match="01_m1_teachers"):
        compression_cost(empty, latency=False)
