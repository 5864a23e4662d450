"""Known answers for repro.analysis.stats: patient bootstrap, Holm, MDE, isotonic p′."""

from __future__ import annotations

import numpy as np
import pytest

from repro.analysis import stats as S


def _group(n_patients: int, eyes: int, rng: np.random.Generator):
    """A test set of ``n_patients`` with ``eyes`` identical images each; model A right 70 %, B 55 %."""
    a_ok = rng.random(n_patients) < 0.70
    b_ok = rng.random(n_patients) < 0.55
    true = rng.integers(0, 3, n_patients)
    pats = np.repeat(np.arange(n_patients), eyes)

    def data(ok):
        t = np.repeat(true, eyes)
        return {"true": t, "pred": np.where(np.repeat(ok, eyes), t, (t + 1) % 3)}

    return {"patients": pats.astype(str), "pairs": [(data(a_ok), data(b_ok))]}


def test_bootstrap_resamples_patients_not_images():
    """Two identical eyes per patient carry no more information than one: the replicates must equal
    those of the one-eye test set exactly (an image-level bootstrap would shrink the interval by ~√2)."""
    rng = np.random.default_rng(3)
    one = _group(200, 1, rng)
    rng = np.random.default_rng(3)
    two = _group(200, 2, rng)
    b1 = S.hierarchical_bootstrap([one], "accuracy", n_boot=500, seed=7)
    b2 = S.hierarchical_bootstrap([two], "accuracy", n_boot=500, seed=7)
    assert b1["effect"] == pytest.approx(b2["effect"])
    np.testing.assert_allclose(b1["replicates"], b2["replicates"])
    # the resample is over 200 patients, so the sd of the effect is that of 200 paired draws
    a_ok = one["pairs"][0][0]["true"] == one["pairs"][0][0]["pred"]
    b_ok = one["pairs"][0][1]["true"] == one["pairs"][0][1]["pred"]
    d = a_ok.astype(float) - b_ok.astype(float)
    assert b2["se"] == pytest.approx(d.std() / np.sqrt(200), rel=0.15)


def test_image_weights_move_both_eyes_together():
    w = S.image_weights(["p1", "p1", "p2", "p2", "p3", "p3"], np.random.default_rng(0))
    assert w[0] == w[1] and w[2] == w[3] and w[4] == w[5]
    assert w.sum() == 6   # three patients drawn, two eyes each


def test_weighted_balanced_accuracy_matches_unweighted_definition():
    t = np.array([0, 0, 0, 1, 2, 2])
    p = np.array([0, 1, 0, 1, 0, 2])
    # recalls: class 0 2/3, class 1 1, class 2 1/2 -> mean 13/18
    assert S.weighted_score("balanced_accuracy", {"true": t, "pred": p}, np.ones(6)) == pytest.approx(13 / 18)
    # doubling the weight of the first image: class 0 recall 3/4
    w = np.array([2, 1, 1, 1, 1, 1.0])
    assert S.weighted_score("balanced_accuracy", {"true": t, "pred": p}, w) == pytest.approx((0.75 + 1 + 0.5) / 3)
    np.testing.assert_allclose(S.weighted_scores("balanced_accuracy", {"true": t, "pred": p}, np.stack([np.ones(6), w])),
                               [13 / 18, (0.75 + 1 + 0.5) / 3])


def test_bootstrap_resamples_seeds_too():
    """Three seeds whose effects are 0.1, 0.2, 0.3 exactly (no test-sampling spread): the replicates
    are means of three draws from {0.1, 0.2, 0.3}, so the interval spans more than one value."""
    groups = []
    for eff in (0.1, 0.2, 0.3):
        v = np.full(50, 0.5)
        groups.append({"patients": np.arange(50).astype(str), "pairs": [({"value": v + eff}, {"value": v})]})
    b = S.hierarchical_bootstrap(groups, "mean", n_boot=400, seed=1)
    assert b["effect"] == pytest.approx(0.2)
    assert set(np.round(b["replicates"], 10)) <= {round(x / 30, 10) for x in range(3, 10)}
    assert b["low"] < 0.2 < b["high"] and b["low"] >= 0.1 - 1e-12 and b["high"] <= 0.3 + 1e-12


def test_bootstrap_p_value():
    assert S.bootstrap_p_value([1, 2, 3, -1]) == pytest.approx(0.5)
    assert S.bootstrap_p_value([1, 2, 3, 4]) == pytest.approx(0.25)   # floor 1/n


def test_holm_known_example():
    adj = S.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    adj = S.holm([0.2, float("nan"), 0.01])
    assert np.isnan(adj[1])
    np.testing.assert_allclose(adj[[0, 2]], [0.2, 0.02])


def test_t_p_value_known():
    # mean 1, sd sqrt(2/3), n 4 -> t = sqrt(6) = 2.449, df 3 -> two-sided p = 0.0917
    assert S.t_p_value([0, 1, 1, 2]) == pytest.approx(0.091721, abs=1e-5)


def test_mde_known_variance():
    assert S.mde(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    # Student t with 14 df (printed tables): t(0.975) = 2.1448, t(0.8) = 0.8681
    assert S.mde(0.01, df=14) == pytest.approx((2.1448 + 0.8681) * 0.01, rel=1e-4)
    assert np.isnan(S.mde(0.0))


def test_verdict_from():
    assert S.verdict_from(0.02, 0.01) == "supported"
    assert S.verdict_from(-0.02, 0.01) == "not supported"
    assert S.verdict_from(0.02, 0.2) == "inconclusive"


def test_isotonic_known_curve():
    fit = S.isotonic([0.482, 0.523, 0.513, 0.515, 0.505])
    np.testing.assert_allclose(fit, [0.482, 0.514, 0.514, 0.514, 0.514])
    np.testing.assert_allclose(S.isotonic([1, 2, 3]), [1, 2, 3])


def test_crossing_on_known_curve():
    ps = [15, 30, 45, 60, 70]
    assert S.crossing(ps, [p / 100 for p in ps], 0.4) == (pytest.approx(40.0), "=")
    assert S.crossing(ps, [0.482, 0.514, 0.514, 0.514, 0.514], 0.5) == (pytest.approx(15 + 0.018 / 0.032 * 15), "=")
    assert S.crossing(ps, [0.482, 0.514, 0.514, 0.514, 0.514], 0.52) == (70.0, ">")
    assert S.crossing(ps, [0.6] * 5, 0.5) == (15.0, "<")


def test_monotone_p_prime_interval():
    ps = [15, 30, 45, 60, 70]
    ref = [[p / 100 + d for p in ps] for d in (-0.01, 0.0, 0.01)]
    out = S.monotone_p_prime(ps, ref, [0.40, 0.40, 0.40], n_boot=300, seed=0)
    assert out["p_prime"] == pytest.approx(40.0) and out["relation"] == "="
    assert out["low"] < 40 < out["high"] and out["low"] >= 39 - 1e-9 and out["high"] <= 41 + 1e-9
