"""Statistics behind the claims and the label savings (issue 21): pure functions, no file access.

* :func:`image_weights`, :func:`weighted_score`, :func:`hierarchical_bootstrap`: a paired bootstrap of
  an effect A − B that resamples seeds and, within each drawn seed, the test *patients* (both eyes
  together: an image's weight is how often its patient was drawn), recomputing both models' metric on
  the same resampled images. Balanced accuracy is recomputed from the weighted images, not averaged
  per image, so class imbalance in a resample is handled as the metric itself handles it.
* :func:`bootstrap_p_value`: two-sided p-value of "effect = 0" from bootstrap replicates.
* :func:`t_p_value`: two-sided one-sample t-test p-value of the mean of paired differences.
* :func:`holm`: Holm's step-down adjustment of a family of p-values.
* :func:`mde`: the minimum detectable effect at a given power from a standard error.
* :func:`isotonic`, :func:`crossing`, :func:`monotone_p_prime`: a non-decreasing curve fitted to
  scores over p (pool adjacent violators) and the fraction p′ at which it reaches a score, with a
  bootstrap interval over seeds.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

ALPHA = 0.05
POWER = 0.8


# ---------------------------------------------------------------- per-image metrics with patient weights

def image_weights(patients: Sequence, rng: np.random.Generator) -> np.ndarray:
    """Weight per image after drawing ``len(unique patients)`` patients with replacement: each image
    counts as often as its patient was drawn (both eyes of a patient move together)."""
    codes, inverse = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    draws = np.bincount(rng.integers(0, len(codes), size=len(codes)), minlength=len(codes))
    return draws[inverse].astype(float)


def weighted_score(kind: str, data: Mapping[str, np.ndarray], w: np.ndarray) -> float:
    """One model's metric on weighted images. ``kind``:

    * ``"balanced_accuracy"``: ``data = {"true", "pred"}`` class indices; mean over the classes with
      positive weight of the weighted recall (as :func:`repro.engine.metrics.coarse_metrics`);
    * ``"accuracy"``: ``data = {"true", "pred"}``; weighted share of ``true == pred``;
    * ``"mean"``: ``data = {"value"}`` per-image scores (e.g. per-image BLEU); weighted mean.
    """
    w = np.asarray(w, dtype=float)
    if kind == "mean":
        v = np.asarray(data["value"], dtype=float)
        return float(np.sum(w * v) / np.sum(w))
    t, p = np.asarray(data["true"], dtype=np.int64), np.asarray(data["pred"], dtype=np.int64)
    ok = (t == p).astype(float)
    if kind == "accuracy":
        return float(np.sum(w * ok) / np.sum(w))
    if kind == "balanced_accuracy":
        n = int(max(t.max(initial=0), p.max(initial=0))) + 1
        tot = np.bincount(t, weights=w, minlength=n)
        hit = np.bincount(t, weights=w * ok, minlength=n)
        present = tot > 0
        return float(np.mean(hit[present] / tot[present]))
    raise ValueError(f"unknown metric kind {kind!r}; use balanced_accuracy, accuracy or mean")


def patient_weight_matrix(patients: Sequence, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_rows, n_images]``: :func:`image_weights` drawn ``n_rows`` times (one resample per row)."""
    codes, inverse = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    return patient_draws(len(codes), n_rows, rng)[:, inverse]


def patient_draws(k: int, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_rows, k]``: how often each of ``k`` patients is drawn when ``k`` are drawn with replacement."""
    draws = rng.integers(0, k, size=(n_rows, k)) + (np.arange(n_rows) * k)[:, None]
    return np.bincount(draws.ravel(), minlength=n_rows * k).reshape(n_rows, k).astype(float)


def _per_patient(kind: str, data: Mapping[str, np.ndarray], inverse: np.ndarray, k: int) -> np.ndarray:
    """Per-patient sums ``[k, m]`` from which :func:`_scores_from` gets the metric of any patient weights:
    image count and hits (accuracy), image count and value sum (mean), or per-class counts and hits."""
    if kind == "mean":
        cols = np.stack([np.ones(len(inverse)), np.asarray(data["value"], dtype=float)], axis=1)
    else:
        t, p = np.asarray(data["true"], dtype=np.int64), np.asarray(data["pred"], dtype=np.int64)
        ok = (t == p).astype(float)
        if kind == "accuracy":
            cols = np.stack([np.ones(len(t)), ok], axis=1)
        elif kind == "balanced_accuracy":
            onehot = (t[:, None] == np.unique(t)[None, :]).astype(float)
            cols = np.concatenate([onehot, onehot * ok[:, None]], axis=1)
        else:
            raise ValueError(f"unknown metric kind {kind!r}; use balanced_accuracy, accuracy or mean")
    out = np.zeros((k, cols.shape[1]))
    np.add.at(out, inverse, cols)
    return out


def _scores_from(kind: str, agg: np.ndarray) -> np.ndarray:
    """The metric per row of weighted per-patient sums ``agg`` (:func:`_per_patient` times the draws)."""
    if kind in ("mean", "accuracy"):
        return agg[:, 1] / agg[:, 0]
    c = agg.shape[1] // 2
    tot, hit = agg[:, :c], agg[:, c:]
    present = tot > 0
    return np.divide(hit, tot, out=np.zeros_like(hit), where=present).sum(axis=1) / present.sum(axis=1)


def weighted_scores(kind: str, data: Mapping[str, np.ndarray], w: np.ndarray) -> np.ndarray:
    """:func:`weighted_score` for every row of a weight matrix ``w`` ``[R, n_images]`` at once."""
    w = np.atleast_2d(np.asarray(w, dtype=float))
    total = w.sum(axis=1)
    if kind == "mean":
        return w @ np.asarray(data["value"], dtype=float) / total
    t, p = np.asarray(data["true"], dtype=np.int64), np.asarray(data["pred"], dtype=np.int64)
    ok = (t == p).astype(float)
    if kind == "accuracy":
        return w @ ok / total
    if kind == "balanced_accuracy":
        onehot = (t[:, None] == np.unique(t)[None, :]).astype(float)       # [n_images, classes present]
        tot, hit = w @ onehot, w @ (onehot * ok[:, None])                  # [R, classes]
        present = tot > 0
        recall = np.divide(hit, tot, out=np.zeros_like(hit), where=present)
        return recall.sum(axis=1) / present.sum(axis=1)
    raise ValueError(f"unknown metric kind {kind!r}; use balanced_accuracy, accuracy or mean")


def hierarchical_bootstrap(groups: Sequence[Mapping], kind: str, n_boot: int = 2000, seed: int = 0,
                           level: float = 0.95) -> dict:
    """Paired bootstrap of the mean effect A − B over ``groups`` (one per training seed).

    Each group is ``{"patients": [patient id per test image], "pairs": [(a, b), ...]}`` where ``a`` and
    ``b`` are the per-image data of models A and B (:func:`weighted_score`) on that seed's test images,
    one pair per labeled fraction p. A replicate draws the groups with replacement and, within each
    drawn group, the test patients with replacement (:func:`image_weights`, drawn afresh for each draw
    of a group); the replicate's effect is the mean over all drawn pairs of ``score(a) − score(b)``
    on the same weights (paired: both models see the same resampled images).

    Returns ``{"effect", "low", "high", "se", "p_value", "n_boot", "replicates"}`` (``effect`` on the
    unresampled data; ``low``/``high`` the percentile interval; ``se`` the replicates' sd).
    """
    groups = [g for g in groups if len(g["pairs"])]
    if not groups:
        nan = float("nan")
        return {"effect": nan, "low": nan, "high": nan, "se": nan, "p_value": nan, "n_boot": 0,
                "replicates": np.array([])}
    for g in groups:
        n = len(g["patients"])
        for a, b in g["pairs"]:
            for d in (a, b):
                lengths = {len(v) for v in d.values()}
                if lengths != {n}:
                    raise ValueError(f"per-image data of {sorted(lengths)} images for a test set of {n}")
    k = len(groups)
    point = float(np.mean([weighted_score(kind, a, np.ones(len(g["patients"])))
                           - weighted_score(kind, b, np.ones(len(g["patients"])))
                           for g in groups for a, b in g["pairs"]]))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, k, size=(n_boot, k))      # which seed fills slot s of replicate i
    sums, counts = np.zeros(n_boot), np.zeros(n_boot)
    for j, g in enumerate(groups):
        rows = np.argwhere(drawn == j)                  # (replicate, slot) pairs that drew group j
        if rows.size == 0:
            continue
        codes, inverse = np.unique(np.asarray(g["patients"]).astype(str), return_inverse=True)
        draws = patient_draws(len(codes), len(rows), rng)       # [rows, patients]
        d = sum(_scores_from(kind, draws @ _per_patient(kind, a, inverse, len(codes)))
                - _scores_from(kind, draws @ _per_patient(kind, b, inverse, len(codes))) for a, b in g["pairs"])
        np.add.at(sums, rows[:, 0], d)
        np.add.at(counts, rows[:, 0], len(g["pairs"]))
    reps = sums / counts
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return {"effect": point, "low": float(lo), "high": float(hi), "se": float(reps.std(ddof=1)),
            "p_value": bootstrap_p_value(reps), "n_boot": int(n_boot), "replicates": reps}


def bootstrap_p_value(replicates: Sequence[float]) -> float:
    """Two-sided p-value of "effect = 0": twice the smaller share of replicates on either side of 0
    (a replicate at exactly 0 counts half to each side), at least ``1 / n``, at most 1."""
    r = np.asarray(replicates, dtype=float)
    if r.size == 0:
        return float("nan")
    below = np.mean(r < 0) + 0.5 * np.mean(r == 0)
    above = np.mean(r > 0) + 0.5 * np.mean(r == 0)
    return float(min(1.0, max(2 * min(below, above), 1.0 / r.size)))


# ---------------------------------------------------------------- tests on paired differences

def t_p_value(samples: Sequence[float]) -> float:
    """Two-sided p-value of the one-sample t-test "mean = 0" (NaN for fewer than 2 samples; 0 for a
    non-zero mean without spread)."""
    from scipy.stats import t

    x = np.asarray([s for s in samples if s is not None and np.isfinite(s)], dtype=float)
    if x.size < 2:
        return float("nan")
    sd = float(x.std(ddof=1))
    if sd == 0:
        return 1.0 if x.mean() == 0 else 0.0
    stat = float(x.mean()) / (sd / math.sqrt(x.size))
    return float(2 * t.sf(abs(stat), x.size - 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and is not counted).

    Sorted ascending, the k-th smallest of m p-values is multiplied by (m − k + 1); the running maximum
    keeps the adjusted values monotone; capped at 1. Reject at level α where adjusted < α.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def verdict_from(effect: float, p_value: float, alpha: float = ALPHA) -> str:
    """``supported`` / ``not supported`` (significant, positive / negative effect) or ``inconclusive``."""
    if not (np.isfinite(effect) and np.isfinite(p_value)) or p_value >= alpha:
        return "inconclusive"
    return "supported" if effect > 0 else "not supported"


def mde(se: float, alpha: float = ALPHA, power: float = POWER, df: int | None = None) -> float:
    """Minimum detectable effect of a two-sided test at level ``alpha`` with ``power``:
    ``(q(1 − α/2) + q(power)) · se``, ``q`` the normal quantile (``df`` given: Student's t with ``df``
    degrees of freedom). NaN for a missing or non-positive standard error."""
    if se is None or not np.isfinite(se) or se <= 0:
        return float("nan")
    if df is None:
        from scipy.stats import norm

        q = norm.ppf
    else:
        from scipy.stats import t

        def q(x):
            return t.ppf(x, df)
    return float((q(1 - alpha / 2) + q(power)) * se)


# ---------------------------------------------------------------- monotone curve and p′

def isotonic(y: Sequence[float], weights: Sequence[float] | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit to ``y`` (in order) by pooling adjacent violators."""
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    blocks: list[list[float]] = []   # [mean, weight, count]
    for v, wt in zip(y, w):
        blocks.append([v, wt, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(int(c), m) for m, _, c in blocks]) if blocks else np.array([])


def crossing(ps: Sequence[float], curve: Sequence[float], score: float) -> tuple[float, str]:
    """``(p′, relation)``: where the non-decreasing piecewise-linear ``curve`` over ``ps`` first reaches
    ``score``. ``"="`` interpolated; ``"<"`` the curve is already at or above it at the smallest p (p′ =
    that p); ``">"`` never reached (p′ = the largest p). On a flat stretch at exactly ``score`` the first
    p of the stretch."""
    ps, curve = np.asarray(ps, dtype=float), np.asarray(curve, dtype=float)
    if ps.size == 0 or not np.isfinite(score):
        return float("nan"), ""
    if curve[0] >= score:
        return float(ps[0]), "=" if curve[0] == score else "<"
    for i in range(1, ps.size):
        if curve[i] >= score:
            v0, v1 = curve[i - 1], curve[i]
            return float(ps[i - 1] + (score - v0) / (v1 - v0) * (ps[i] - ps[i - 1])), "="
    return float(ps[-1]), ">"


def monotone_p_prime(ps: Sequence[float], ref_by_seed: Sequence[Sequence[float]],
                     score_by_seed: Sequence[float], n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95, reference_curve: Callable | None = None) -> dict:
    """p′ at which the isotonic fit of the reference (M1{T1}) over ``ps`` reaches a model's score.

    ``ref_by_seed[k][i]``: the reference's score at ``ps[i]`` for seed ``k`` (NaN where missing);
    ``score_by_seed[k]``: the model's score for seed ``k``. The curve is the isotonic fit to the mean
    over seeds per p; the score is the mean over seeds. The interval resamples seeds with replacement
    (reference and model together), refits and recrosses; a replicate that does not cross inside the
    range counts at its end (the ``"<"`` / ``">"`` relation), so the interval can reach the range's ends.

    Returns ``{"p_prime", "relation", "low", "high", "curve", "share_outside"}`` (``curve``: the fitted
    values; ``share_outside``: the share of replicates that fell outside the range of p).
    """
    ps = np.asarray(ps, dtype=float)
    ref = np.atleast_2d(np.asarray(ref_by_seed, dtype=float))
    score = np.asarray(score_by_seed, dtype=float)
    fit = reference_curve or (lambda r: isotonic(np.nanmean(r, axis=0)))
    curve = fit(ref)
    value, rel = crossing(ps, curve, float(np.nanmean(score)))
    out = {"p_prime": value, "relation": rel, "low": float("nan"), "high": float("nan"),
           "curve": [float(c) for c in curve], "share_outside": float("nan")}
    k = ref.shape[0]
    if k < 2 or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    reps, outside = np.empty(n_boot), 0
    for i in range(n_boot):
        pick = rng.integers(0, k, size=k)
        v, r = crossing(ps, fit(ref[pick]), float(np.nanmean(score[pick])))
        reps[i] = v
        outside += r != "="
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    out.update(low=float(lo), high=float(hi), share_outside=outside / n_boot)
    return out
