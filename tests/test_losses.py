"""Tests of repro.distill.losses: KD properties and golden values of the stage losses (Eq. 1-3)."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.errors import ConfigError
from repro.distill.losses import caption_mask, ensemble_kd, ensemble_probs, kd_loss, kd_loss_from_probs, m1_loss, m2_loss, m3_loss, task_ce

TASKS = ("coarse", "fine", "caption")


# ---------------------------------------------------------------------------
# numpy reference implementations (explicit formulas)
# ---------------------------------------------------------------------------

def np_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl_rows(p, log_q):
    """KL(p || q) per row, 0 log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return (plogp - p * log_q).sum(axis=-1)


def np_kd(s, teachers, tau, reduction="batchmean", mask=None, aggregation="mean_prob"):
    s = np.asarray(s, dtype=np.float64)
    log_q = np_log_softmax(s / tau)
    if aggregation == "mean_prob":
        p = np.mean([np.exp(np_log_softmax(np.asarray(t) / tau)) for t in teachers], axis=0)
        kls = [np_kl_rows(p, log_q)]
    else:
        kls = [np_kl_rows(np.exp(np_log_softmax(np.asarray(t) / tau)), log_q) for t in teachers]
    m = np.ones(s.shape[:-1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    total = 0.0
    for kl in kls:
        v = kl[m].sum() / m.sum()
        if reduction == "mean":
            v /= s.shape[-1]
        total += tau ** 2 * v
    return total


def np_ce(logits, target, pad=None):
    lp = np_log_softmax(logits).reshape(-1, np.asarray(logits).shape[-1])
    y = np.asarray(target).reshape(-1)
    keep = np.ones_like(y, dtype=bool) if pad is None else y != pad
    return float(-lp[np.arange(len(y))[keep], y[keep]].mean())


# ---------------------------------------------------------------------------
# caption_mask
# ---------------------------------------------------------------------------

def test_caption_mask_up_to_first_eos():
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 7, 2, 0], [3, 4, 5, 6, 7], [2, 0, 0, 0, 0]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]],
                            dtype=torch.bool)
    assert torch.equal(caption_mask(ids), expected)


# ---------------------------------------------------------------------------
# KD loss properties
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("tau", [0.5, 1.0, 5.0, 10.0])
def test_kd_zero_for_equal_inputs(tau):
    x = torch.randn(6, 7, generator=torch.Generator().manual_seed(0)) * 3
    assert kd_loss(x, x.clone(), tau).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(x, x.clone(), tau, reduction="mean").item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0, 10.0])
def test_kd_tau_squared_scaling(tau):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    p, q = torch.softmax(t / tau, -1), torch.softmax(s / tau, -1)
    direct = (p * (p.log() - q.log())).sum(-1).mean()
    assert kd_loss(s, t, tau).item() == pytest.approx(tau ** 2 * direct.item(), rel=1e-9)
    torch_kl = F.kl_div(F.log_softmax(s / tau, -1), p, reduction="batchmean")
    assert kd_loss(s, t, tau).item() == pytest.approx(tau ** 2 * torch_kl.item(), rel=1e-9)


def test_kd_closed_form_two_classes():
    # p = (3/4, 1/4) (teacher logits (tau ln 3, 0)), q uniform.
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    s = torch.zeros(1, 2)
    t = torch.tensor([[2 * math.log(3.0), 0.0]])
    assert kd_loss(s, t, 2.0).item() == pytest.approx(4 * kl, rel=1e-6)
    assert kd_loss(s, t, 2.0).item() == pytest.approx(0.5232481, abs=1e-6)


def test_kd_batchmean_vs_mean_differ_by_class_count():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    bm, m = kd_loss(s, t, 3.0), kd_loss(s, t, 3.0, reduction="mean")
    assert bm.item() == pytest.approx(9 * m.item(), rel=1e-6)
    # "mean" reproduces the authors' KLDivLoss(reduction='mean') * T * T
    with warnings.catch_warnings():  # torch warns that 'mean' is not the true KL
        warnings.simplefilter("ignore")
        authors = torch.nn.KLDivLoss(reduction="mean")(F.log_softmax(s / 3.0, 1), F.softmax(t / 3.0, 1)) * 9.0
    assert m.item() == pytest.approx(authors.item(), rel=1e-6)
    # the same for a masked (B, T, V) caption tensor: ratio = V
    s3, t3 = torch.randn(3, 4, 11, generator=g), torch.randn(3, 4, 11, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    bm3 = kd_loss(s3, t3, 2.0, mask=mask)
    m3 = kd_loss(s3, t3, 2.0, reduction="mean", mask=mask)
    assert bm3.item() == pytest.approx(11 * m3.item(), rel=1e-6)


def test_kd_gradient_moves_student_towards_teacher():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(4, 5, generator=g, requires_grad=True)
    s = torch.randn(4, 5, generator=g, requires_grad=True)
    loss = kd_loss(s, t, 2.0)
    loss.backward()
    assert t.grad is None  # teacher is detached
    with torch.no_grad():
        s_new = s - 0.5 * s.grad
        p = torch.softmax(t / 2.0, -1)
        before = (p - torch.softmax(s / 2.0, -1)).abs().sum()
        after = (p - torch.softmax(s_new / 2.0, -1)).abs().sum()
    assert kd_loss(s_new, t, 2.0).item() < loss.item()
    assert after < before
    # the gradient of tau^2 KL w.r.t. s is tau * (q - p) / B
    expected = 2.0 * (torch.softmax(s / 2.0, -1) - torch.softmax(t / 2.0, -1)) / 4
    assert torch.allclose(s.grad, expected.detach(), atol=1e-6)


def test_kd_numerically_stable_for_large_logits():
    s = torch.tensor([[1e4, 0.0, -1e4]], requires_grad=True)
    t = torch.tensor([[-1e4, 0.0, 1e4]])
    loss = kd_loss(s, t, 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert loss.item() == pytest.approx(2e4, rel=1e-4)


def test_masked_caption_kd_ignores_masked_positions():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    base = kd_loss(s, t, 2.0, mask=mask)
    s2, t2 = s.clone(), t.clone()
    s2[~mask] = 100.0 * torch.randn(int((~mask).sum()), 6, generator=g)
    t2[~mask] = -50.0
    assert kd_loss(s2, t2, 2.0, mask=mask).item() == pytest.approx(base.item(), rel=1e-6)
    # equals the KD of the valid steps taken as a (N, V) batch
    assert base.item() == pytest.approx(kd_loss(s[mask], t[mask], 2.0).item(), rel=1e-6)
    # and differs from the unmasked loss
    assert kd_loss(s2, t2, 2.0).item() != pytest.approx(base.item(), rel=1e-3)


def test_kd_from_probs_matches_kd_from_logits():
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    p = torch.softmax(t / 5.0, -1)
    assert kd_loss_from_probs(s, p, 5.0).item() == pytest.approx(kd_loss(s, t, 5.0).item(), rel=1e-5)
    # exact zeros in the teacher distribution are fine (0 log 0 = 0)
    p0 = torch.tensor([[1.0, 0.0, 0.0]])
    val = kd_loss_from_probs(torch.zeros(1, 3), p0, 1.0)
    assert val.item() == pytest.approx(math.log(3.0), rel=1e-6)


def test_ensemble_probs_hand_computed():
    pa, pb = [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]
    ta, tb = torch.tensor([pa]).log(), torch.tensor([pb]).log()
    assert torch.allclose(ensemble_probs([ta, tb], 1.0), torch.full((1, 4), 0.25), atol=1e-6)
    # tau = 2: softmax(log p / 2) = sqrt(p) / sum(sqrt(p))
    sa, sb = np.sqrt(pa) / np.sqrt(pa).sum(), np.sqrt(pb) / np.sqrt(pb).sum()
    expected = torch.from_numpy((sa + sb) / 2).float().unsqueeze(0)
    assert torch.allclose(ensemble_probs([ta, tb], 2.0), expected, atol=1e-6)


def test_mean_prob_vs_sum_kl():
    g = torch.Generator().manual_seed(6)
    s, t1, t2 = (torch.randn(4, 5, generator=g) for _ in range(3))
    one_mp = ensemble_kd(s, [t1], 2.0, aggregation="mean_prob")
    one_sk = ensemble_kd(s, [t1], 2.0, aggregation="sum_kl")
    assert one_mp.item() == pytest.approx(one_sk.item(), rel=1e-6)
    assert one_mp.item() == pytest.approx(kd_loss(s, t1, 2.0).item(), rel=1e-6)
    two_mp = ensemble_kd(s, [t1, t2], 2.0, aggregation="mean_prob")
    two_sk = ensemble_kd(s, [t1, t2], 2.0, aggregation="sum_kl")
    assert two_sk.item() == pytest.approx((kd_loss(s, t1, 2.0) + kd_loss(s, t2, 2.0)).item(), rel=1e-6)
    assert two_mp.item() < two_sk.item()  # convexity of KL + sum of two terms
    assert two_mp.item() == pytest.approx(np_kd(s, [t1, t2], 2.0), rel=1e-5)


def test_bad_options_raise_config_error():
    s = torch.zeros(2, 3)
    with pytest.raises(ConfigError):
        kd_loss(s, s, 1.0, reduction="sum")
    with pytest.raises(ConfigError):
        ensemble_kd(s, [s], 1.0, aggregation="max")
    with pytest.raises(ConfigError):
        kd_loss(s, s, 0.0)
    with pytest.raises(ValueError):
        kd_loss(s, torch.zeros(2, 4), 1.0)


# ---------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------

def test_caption_ce_ignores_pad():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 4, 6, generator=g)
    target = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]])
    ce = task_ce({"caption": logits}, {"caption": target}, "caption")
    assert ce.item() == pytest.approx(np_ce(logits.numpy(), target.numpy(), pad=0), rel=1e-5)
    changed = logits.clone()
    changed[target == 0] = 30.0 * torch.randn(int((target == 0).sum()), 6, generator=g)
    assert task_ce({"caption": changed}, {"caption": target}, "caption").item() == pytest.approx(ce.item(), rel=1e-6)
    # a batch without tokens gives 0, not NaN
    empty = task_ce({"caption": logits}, {"caption": torch.zeros(2, 4, dtype=torch.long)}, "caption")
    assert empty.item() == 0.0


# ---------------------------------------------------------------------------
# Golden values of the stage losses (closed form)
# ---------------------------------------------------------------------------

KL_34 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)   # KL((3/4,1/4) || uniform)
P4 = np.array([0.4, 0.3, 0.2, 0.1])
KL_P4 = float((P4 * np.log(P4)).sum() + math.log(4))   # KL((.4,.3,.2,.1) || uniform)
KL_CAP = math.log(1.25)                                  # KL((.5,.125 x4) || uniform)


def golden_batch():
    """Zero student logits (uniform q); teachers chosen so that every KL is closed form.

    coarse: C=2, tau=2, teacher p = (3/4, 1/4) / (1/4, 3/4).
    fine:   C=4, tau=1, two teachers (.4,.3,.2,.1) and (.1,.2,.3,.4): mean = uniform.
    caption: V=5, tau=1, teacher p = (.5, .125, ...) on valid steps, a spike on the
    step after EOS (must be masked).
    """
    outputs = {"coarse": torch.zeros(2, 2, requires_grad=True),
               "fine": torch.zeros(2, 4, requires_grad=True),
               "caption": torch.zeros(2, 3, 5, requires_grad=True)}
    targets = {"coarse": torch.tensor([0, 1]), "fine": torch.tensor([1, 3]),
               "caption": torch.tensor([[3, 2, 0], [4, 3, 2]])}
    l3 = 2 * math.log(3.0)
    cap = torch.tensor([0.5, 0.125, 0.125, 0.125, 0.125]).log().expand(2, 3, 5).clone()
    cap[0, 2] = torch.tensor([50.0, 0.0, 0.0, 0.0, 0.0])
    teacher = {"coarse": [torch.tensor([[l3, 0.0], [0.0, l3]])],
               "fine": [torch.tensor(P4).float().log().expand(2, 4),
                        torch.tensor(P4[::-1].copy()).float().log().expand(2, 4)],
               "caption": [cap]}
    taus = {"coarse": 2.0, "fine": 1.0, "caption": 1.0}
    return outputs, targets, teacher, taus


def test_m1_golden():
    outputs, targets, _, _ = golden_batch()
    terms = m1_loss(outputs, targets, TASKS)
    assert terms["ce/coarse"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert terms["ce/fine"].item() == pytest.approx(math.log(4), abs=1e-6)
    assert terms["ce/caption"].item() == pytest.approx(math.log(5), abs=1e-6)
    assert terms["total"].item() == pytest.approx(math.log(40), abs=1e-6)
    assert terms["total"].item() == pytest.approx(3.6888795, abs=1e-6)
    weighted = m1_loss(outputs, targets, TASKS, lambdas={"coarse": 1.0, "fine": 2.0, "caption": 0.5})
    assert weighted["total"].item() == pytest.approx(math.log(2) + 2 * math.log(4) + 0.5 * math.log(5), abs=1e-6)
    only = m1_loss(outputs, targets, ["fine"])
    assert set(only) == {"ce/fine", "total"}


def test_m2_golden():
    outputs, targets, teacher, taus = golden_batch()
    terms = m2_loss(outputs, targets, teacher, TASKS, taus)
    assert terms["kd/coarse"].item() == pytest.approx(4 * KL_34, abs=1e-6)
    assert terms["kd/coarse"].item() == pytest.approx(0.5232481, abs=1e-6)
    assert terms["kd/fine"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["kd/caption"].item() == pytest.approx(KL_CAP, abs=1e-6)
    expected = 0.05 * math.log(40) + 0.95 * (4 * KL_34 + 0.0 + KL_CAP)
    assert terms["total"].item() == pytest.approx(expected, abs=1e-6)
    assert terms["total"].item() == pytest.approx(0.8935160, abs=1e-6)
    # the authors' aggregation: one KL per teacher
    sk = m2_loss(outputs, targets, teacher, TASKS, taus, aggregation="sum_kl")
    assert sk["kd/fine"].item() == pytest.approx(2 * KL_P4, abs=1e-6)
    assert sk["kd/fine"].item() == pytest.approx(0.2128801, abs=1e-6)
    # the authors' reduction: divided by the class count
    mean = m2_loss(outputs, targets, teacher, TASKS, taus, reduction="mean", alpha=0.5,
                   lambdas={"coarse": 2.0})
    expected = 2 * (0.5 * math.log(2) + 0.5 * 4 * KL_34 / 2) + 0.5 * math.log(4) \
        + 0.5 * math.log(5) + 0.5 * KL_CAP / 5
    assert mean["total"].item() == pytest.approx(expected, abs=1e-6)


def test_m2_explicit_caption_mask_and_gradient():
    outputs, targets, teacher, taus = golden_batch()
    all_steps = torch.ones(2, 3, dtype=torch.bool)
    terms = m2_loss(outputs, targets, teacher, ["caption"], taus, caption_mask=all_steps)
    # the spike after EOS now counts: KL(one-hot || uniform) = ln 5 at 1 of 6 steps
    assert terms["kd/caption"].item() == pytest.approx((5 * KL_CAP + math.log(5)) / 6, abs=1e-6)
    terms = m2_loss(outputs, targets, teacher, TASKS, taus)
    terms["total"].backward()
    assert all(outputs[t].grad is not None for t in TASKS)
    assert all(t.grad is None for ts in teacher.values() for t in ts)


def test_m3_golden_never_reads_targets():
    outputs, targets, teacher, taus = golden_batch()
    mask = caption_mask(targets["caption"])
    terms = m3_loss(outputs, teacher, TASKS, taus, caption_mask=mask)
    assert set(terms) == {"kd/coarse", "kd/fine", "kd/caption", "total"}
    assert terms["total"].item() == pytest.approx(4 * KL_34 + KL_CAP, abs=1e-6)
    assert terms["total"].item() == pytest.approx(0.7463916, abs=1e-6)
    lam = m3_loss(outputs, teacher, TASKS, taus, lambdas={"coarse": 0.5, "caption": 3.0},
                  aggregation="sum_kl", caption_mask=mask)
    assert lam["total"].item() == pytest.approx(0.5 * 4 * KL_34 + 2 * KL_P4 + 3 * KL_CAP, abs=1e-6)


# ---------------------------------------------------------------------------
# Golden values on random tensors against the numpy reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["batchmean", "mean"])
@pytest.mark.parametrize("aggregation", ["mean_prob", "sum_kl"])
def test_stage_losses_match_numpy_reference(reduction, aggregation):
    g = torch.Generator().manual_seed(11)
    B, C1, C2, T, V = 3, 5, 7, 4, 6
    outputs = {"coarse": torch.randn(B, C1, generator=g), "fine": torch.randn(B, C2, generator=g),
               "caption": torch.randn(B, T, V, generator=g)}
    targets = {"coarse": torch.tensor([0, 4, 2]), "fine": torch.tensor([6, 1, 3]),
               "caption": torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0], [1, 3, 4, 5]])}
    teacher = {"coarse": [torch.randn(B, C1, generator=g) * 2 for _ in range(2)],
               "fine": [torch.randn(B, C2, generator=g) * 2 for _ in range(3)],
               "caption": [torch.randn(B, T, V, generator=g) * 2]}
    taus = {"coarse": 5.0, "fine": 10.0, "caption": 0.5}
    lambdas = {"coarse": 1.0, "fine": 0.7, "caption": 1.3}
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)

    np_o = {k: v.numpy() for k, v in outputs.items()}
    np_t = {k: [x.numpy() for x in v] for k, v in teacher.items()}
    ce = {"coarse": np_ce(np_o["coarse"], targets["coarse"].numpy()),
          "fine": np_ce(np_o["fine"], targets["fine"].numpy()),
          "caption": np_ce(np_o["caption"], targets["caption"].numpy(), pad=0)}
    kd = {t: np_kd(np_o[t], np_t[t], taus[t], reduction, mask if t == "caption" else None, aggregation)
          for t in TASKS}

    m1 = m1_loss(outputs, targets, TASKS, lambdas)
    assert m1["total"].item() == pytest.approx(sum(lambdas[t] * ce[t] for t in TASKS), rel=1e-5)
    m2 = m2_loss(outputs, targets, teacher, TASKS, taus, alpha=0.95, lambdas=lambdas,
                 reduction=reduction, aggregation=aggregation)
    for t in TASKS:
        assert m2[f"ce/{t}"].item() == pytest.approx(ce[t], rel=1e-5)
        assert m2[f"kd/{t}"].item() == pytest.approx(kd[t], rel=1e-4)
    assert m2["total"].item() == pytest.approx(
        sum(lambdas[t] * (0.05 * ce[t] + 0.95 * kd[t]) for t in TASKS), rel=1e-4)
    m3 = m3_loss(outputs, teacher, TASKS, taus, lambdas=lambdas, reduction=reduction,
                 aggregation=aggregation, caption_mask=torch.from_numpy(mask))
    assert m3["total"].item() == pytest.approx(sum(lambdas[t] * kd[t] for t in TASKS), rel=1e-4)
