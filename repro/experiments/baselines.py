"""Baselines that learn nothing or little, on the same split as the models (issue 8, docs/design.md §5).

* **majority** (``baseline-majority.json``): T1 and T2 answer the most frequent class of the labeled
  set L_p for every image (T2's scores are the class frequencies of L_p, so its top-5 is the five most
  frequent classes); T3 answers the most frequent caption of L_p (as token ids, a row of
  ``prepared.captions``). Report rows "Majority class" (T1, T2) and "Most frequent caption" (T3).
* **probe** (``baseline-probe.json``): a scikit-learn logistic regression on the frozen encoder's
  features, i.e. the model inputs cached by :meth:`Context.bank` (view ``orig``; spatial dims
  mean-pooled), standardised with the training pool's mean and std, fitted on L_p; T1 with
  ``class_weight="balanced"``, T2 plain; ``C`` chosen per task on validation by the task's main
  metric (:data:`repro.names.PRIMARY`) on a log grid (:data:`PROBE_GRID`) that is widened tenfold at
  whichever end holds the best C until the best is interior or :data:`PROBE_LIMITS` is reached
  (:func:`widened_search`); ``params.C_at_edge`` records a choice still at the edge (the probe's score
  is then a lower bound of what the probe could reach, and a model's margin over it an upper bound).
  No T3. Report row "LR probe (frozen features)".

Both files have the schema of a model's result JSON (stage ``baseline``; metrics from
:func:`repro.engine.evaluate.score_predictions`, so every metric key matches the models'). The probe
does not depend on the seed: a probe file of another seed with the same p and split hash is copied
(``reused_from_seed``) instead of refitted.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import numpy as np

from repro.errors import ConfigError
from repro.experiments.context import settings_changed
from repro.io import read_json, write_json
from repro.names import BASELINE_STAGE, PRIMARY
from repro.phases import BASELINE_FITS, phase

PROBE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # the first grid; widened at an edge holding the best C
PROBE_LIMITS = (1e-7, 1e3)                     # the widening stops here (C at a limit is reported at the edge)
PROBE_FACTOR = 10.0
PROBE_MAX_ITER = 2000
PROBE_STOP_AFTER = 2                           # the ascending grid stops after this many C in a row worse than the best
#: the probe's solvers (profile setting ``probe_solver``): all minimise scikit-learn's objective
PROBE_SOLVERS = {"sklearn": "sklearn LogisticRegression (lbfgs)",
                 "torch": "torch L-BFGS, scikit-learn's objective (repro.experiments.probe_solver)",
                 "torch-fp32": "torch L-BFGS in float32, scikit-learn's objective (repro.experiments.probe_solver)"}


# ---------------------------------------------------------------- pure parts (tested on synthetic data)

def class_prior(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Frequencies of ``labels`` (integer classes 0..n_classes-1), as a float vector summing to 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(float)
    return counts / max(counts.sum(), 1.0)


def majority_class(labels: Sequence[int], n_classes: int | None = None) -> int:
    """The most frequent class of ``labels`` (ties: the smaller class index)."""
    labels = np.asarray(labels, dtype=np.int64)
    return int(np.argmax(np.bincount(labels, minlength=n_classes or 0)))


def most_frequent_caption(captions: np.ndarray) -> np.ndarray:
    """The most frequent row of ``captions`` [N, L] (token ids); ties: the row seen first."""
    captions = np.asarray(captions)
    rows, first, counts = np.unique(captions, axis=0, return_index=True, return_counts=True)
    best = max(range(len(rows)), key=lambda i: (counts[i], -first[i]))
    return captions[first[best]].copy()


def pooled_features(x) -> np.ndarray:
    """``[N, C]`` float32 features: inputs with more than 2 dims are mean-pooled over the trailing dims."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim > 2:
        x = x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)
    return x


def standardise(x: np.ndarray, pool_idx: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` with the mean and std of the rows ``pool_idx`` (constant features: std 1)."""
    mu = x[pool_idx].mean(axis=0)
    sd = x[pool_idx].std(axis=0)
    sd[sd < 1e-8] = 1.0
    return ((x - mu) / sd).astype(np.float32)


def full_scores(clf, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities ``[N, n_classes]`` of a fitted classifier; classes it never saw score −1."""
    out = np.full((x.shape[0], n_classes), -1.0, dtype=np.float32)
    out[:, clf.classes_.astype(int)] = clf.predict_proba(x)
    return out


def best_of(scores: dict[float, float]) -> float:
    """The C with the highest score (ties: the smaller C, the stronger regularisation)."""
    return min(scores, key=lambda c: (-scores[c], c))


def widened_search(score_of, grid: Sequence[float] = PROBE_GRID, limits: tuple[float, float] = PROBE_LIMITS,
                   factor: float = PROBE_FACTOR, stop_after: int | None = PROBE_STOP_AFTER
                   ) -> tuple[float, dict[float, float], str | None]:
    """Score the C of ``grid`` in ascending order with ``score_of(C)``, stopping once ``stop_after`` C in a
    row score below the best so far (None: the whole grid; the large C, the slowest fits, are then skipped
    when the validation score has clearly turned down); while the best C is the smallest (largest) one tried
    and strictly better than its neighbour, try C / ``factor`` (C · ``factor``) too, within ``limits``.
    Returns ``(best C, {C: score}, edge)`` with ``edge`` ``"low"``/``"high"`` when the best C is still
    strictly best at an end of the searched range (the optimum may lie beyond it), else None (a tie with
    the neighbour is a plateau: nothing suggests a better C further out)."""
    lo_lim, hi_lim = limits

    def at_edge(scores):
        best, tried = best_of(scores), sorted(scores)
        if len(tried) > 1 and best == tried[0] and scores[tried[0]] > scores[tried[1]]:
            return best, "low"
        if len(tried) > 1 and best == tried[-1] and scores[tried[-1]] > scores[tried[-2]]:
            return best, "high"
        return best, None

    scores: dict[float, float] = {}
    worse = 0
    for c in sorted(float(c) for c in grid):
        scores[c] = float(score_of(c))
        worse = worse + 1 if scores[c] < scores[best_of(scores)] else 0
        if stop_after and worse >= stop_after:
            break
    while True:
        best, edge = at_edge(scores)
        if edge == "low" and best / factor >= lo_lim * (1 - 1e-9):
            c = best / factor
        elif edge == "high" and best * factor <= hi_lim * (1 + 1e-9):
            c = best * factor
        else:
            break
        scores[float(c)] = float(score_of(float(c)))
    return best, dict(sorted(scores.items())), edge


def probe_classifier(solver: str, c: float, class_weight: str | None, max_iter: int):
    """An unfitted logistic regression of ``solver`` (:data:`PROBE_SOLVERS`) that warm-starts from a
    ``coef_``/``intercept_`` set before ``fit``."""
    if solver == "sklearn":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=float(c), class_weight=class_weight, max_iter=max_iter, solver="lbfgs",
                                  warm_start=True)
    if solver in ("torch", "torch-fp32"):
        from repro.experiments.probe_solver import TorchLogistic

        return TorchLogistic(C=float(c), class_weight=class_weight, max_iter=max_iter,
                             dtype="float32" if solver == "torch-fp32" else "float64")
    raise ConfigError(f"probe solver {solver!r}: use one of {sorted(PROBE_SOLVERS)} (profile setting probe_solver)")


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, n_classes: int, val_score,
              grid: Sequence[float] = PROBE_GRID, class_weight: str | None = None,
              max_iter: int = PROBE_MAX_ITER, limits: tuple[float, float] = PROBE_LIMITS, solver: str = "sklearn"):
    """Logistic regression for each ``C`` of ``grid``, widened at the edges (:func:`widened_search`);
    keeps the one whose ``val_score(scores_val)`` is highest (ties: the smaller C). Each fit starts from
    the solution of the nearest C already fitted (lbfgs warm start: the same optimum, fewer iterations).
    ``solver``: see :data:`PROBE_SOLVERS`. Returns ``(classifier, C, {C: validation score}, edge)``."""
    fitted = {}

    def score_of(c):
        clf = probe_classifier(solver, c, class_weight, max_iter)
        if fitted:
            near = fitted[min(fitted, key=lambda k: abs(np.log(k) - np.log(c)))]
            clf.coef_, clf.intercept_ = near.coef_.copy(), near.intercept_.copy()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(n_jobs|max_iter|converge).*")
            clf.fit(x_train, y_train)
        fitted[float(c)] = clf
        return float(val_score(full_scores(clf, x_val, n_classes)))

    best_c, scores, edge = widened_search(score_of, grid, limits)
    return fitted[best_c], best_c, scores, edge


# ---------------------------------------------------------------- on one Context

def _primary(metrics: dict, task: str) -> float:
    return float(metrics[task][PRIMARY[task][0]])


def probe_tasks(prep) -> tuple[tuple[str, str, int, str | None], ...]:
    """``(task, manifest label column, number of classes, class weight)`` of each task the probe fits:
    T1 class-balanced, T2 plain."""
    return (("coarse", "coarse_idx", len(prep.coarse_classes), "balanced"),
            ("fine", "fine_idx", len(prep.fine_classes), None))


def validation_score(prep, val_idx: np.ndarray, task: str):
    """``scores -> the task's main metric`` on the validation images ``val_idx``: how the probe picks C."""
    from repro.engine.evaluate import score_predictions

    return lambda scores: _primary(score_predictions(prep, val_idx, {task: scores}, detail=False), task)


def _record(ctx, name: str, tasks, params: dict, val: dict, test: dict, t0: float, **extra) -> dict[str, Any]:
    from repro.paths import project_relative
    from repro.provenance import git_commit, peak_memory_mb, versions

    train_idx = ctx.indices("train", p=ctx.p)
    return {
        "schema": 1, "stage": BASELINE_STAGE, "name": name, "tasks": list(tasks), "profile": ctx.profile.name,
        "p": ctx.p, "seed": ctx.seed, "params": params, "profile_settings": ctx.profile.to_dict(),
        "data": {"dataset": ctx.prepared.dataset_name, "split_file": project_relative(ctx.prepared.split_file),
                 "split_hash": ctx.prepared.split_hash, "n_train": int(len(train_idx)),
                 "n_val": int(len(ctx.indices("val"))), "n_test": int(len(ctx.indices("test"))),
                 **ctx.split_record()},
        "split_hash": ctx.prepared.split_hash,
        "metrics": {"val": val, "test": test},
        "wall_s": time.perf_counter() - t0, "peak_mem_mb": peak_memory_mb(), "git_commit": git_commit(),
        "versions": versions(), **extra,
    }


def majority_predictions(prepared, train_idx: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Predictions of the majority baseline for ``n`` images: T1/T2 scores = class frequencies of the
    labeled images ``train_idx`` (argmax: the majority class), T3 = their most frequent caption."""
    m = prepared.manifest.iloc[train_idx]
    coarse = class_prior(m["coarse_idx"].to_numpy(), len(prepared.coarse_classes))
    fine = class_prior(m["fine_idx"].to_numpy(), len(prepared.fine_classes))
    cap = most_frequent_caption(np.asarray(prepared.captions)[train_idx])
    return {"coarse": np.tile(coarse, (n, 1)), "fine": np.tile(fine, (n, 1)), "caption": np.tile(cap, (n, 1))}


def run_majority(ctx, force: bool = False) -> dict[str, Any]:
    """``baseline-majority.json``: the majority class (T1, T2) and most frequent caption (T3) of L_p."""
    from repro.engine.evaluate import score_predictions

    path = ctx.result_path(BASELINE_STAGE, "majority")
    if path.exists() and not force:
        return read_json(path)
    t0 = time.perf_counter()
    prep = ctx.prepared
    train_idx, val_idx, test_idx = ctx.indices("train", p=ctx.p), ctx.indices("val"), ctx.indices("test")
    val = score_predictions(prep, val_idx, majority_predictions(prep, train_idx, len(val_idx)), detail=False)
    test = score_predictions(prep, test_idx, majority_predictions(prep, train_idx, len(test_idx)))
    pred = majority_predictions(prep, train_idx, 1)
    params = {"baseline": "majority", "trained_on": f"L{ctx.p}",
              "coarse": prep.coarse_classes[int(pred["coarse"][0].argmax())],
              "fine": prep.fine_classes[int(pred["fine"][0].argmax())],
              "caption": " ".join(prep.vocab.decode(list(pred["caption"][0])))}
    res = _record(ctx, "majority", ("coarse", "fine", "caption"), params, val, test, t0)
    write_json(path, res)
    return res


def _reusable_probe(ctx) -> tuple[int, dict] | None:
    """Another seed's probe result for this profile, p and split (the probe does not depend on the seed)."""
    for path in sorted((ctx.results_dir / f"p{ctx.p}").glob(f"seed*/{BASELINE_STAGE}-probe.json")):
        if path == ctx.result_path(BASELINE_STAGE, "probe"):
            continue
        try:
            res = read_json(path)
        except (OSError, ValueError):
            continue
        if (res.get("split_hash") == ctx.prepared.split_hash and res.get("profile") == ctx.profile.name
                and res.get("p") == ctx.p and "reused_from_seed" not in res
                and (res.get("params") or {}).get("base_grid") == list(PROBE_GRID)
                and (res.get("params") or {}).get("limits") == list(PROBE_LIMITS)
                and (res.get("params") or {}).get("model") == PROBE_SOLVERS[ctx.profile.probe_solver]
                and not settings_changed(ctx.profile, res)):
            return int(res["seed"]), res
    return None


def probe_features(ctx) -> np.ndarray | None:
    """``[N, C]`` frozen-encoder features of every image (the cached model inputs, view ``orig``), or
    None when the profile trains the whole encoder (no frozen features to probe)."""
    bank = ctx.bank()
    if "orig" not in getattr(bank, "data", {}):
        return None
    return pooled_features(bank.data["orig"])


def run_probe(ctx, force: bool = False, grid: Sequence[float] = PROBE_GRID) -> dict[str, Any] | None:
    """``baseline-probe.json``: logistic regression on frozen features for T1 (class-balanced) and T2."""
    from repro.engine.evaluate import PER_IMAGE_KEY, per_image_predictions, score_predictions

    path = ctx.result_path(BASELINE_STAGE, "probe")
    if path.exists() and not force:
        stored = read_json(path)
        if not settings_changed(ctx.profile, stored):
            return stored
    t0 = time.perf_counter()
    prep = ctx.prepared
    if not force:
        found = _reusable_probe(ctx)
        if found is not None:
            seed, other = found
            extra = {k: other[k] for k in (PER_IMAGE_KEY,) if k in other}
            res = _record(ctx, "probe", other["tasks"], other["params"], other["metrics"]["val"],
                          other["metrics"]["test"], t0, reused_from_seed=seed, **extra)
            write_json(path, res)
            return res
    feats = probe_features(ctx)
    if feats is None:
        warnings.warn(f"profile {ctx.profile.name!r} has no frozen encoder features; no probe baseline",
                      stacklevel=2)
        return None
    pool, train_idx = ctx.indices("train"), ctx.indices("train", p=ctx.p)
    val_idx, test_idx = ctx.indices("val"), ctx.indices("test")
    x = standardise(feats, pool)
    m = prep.manifest
    val_preds, test_preds, chosen, val_scores, fit_s, edges = {}, {}, {}, {}, {}, {}
    for task, col, n_cls, cw in probe_tasks(prep):
        y = m[col].to_numpy()
        t1 = time.perf_counter()
        with phase(BASELINE_FITS):
            clf, c, scores, edge = fit_probe(x[train_idx], y[train_idx], x[val_idx], n_cls,
                                             validation_score(prep, val_idx, task), grid, cw,
                                             solver=ctx.profile.probe_solver)
        fit_s[task] = round(time.perf_counter() - t1, 2)
        chosen[task], val_scores[task], edges[task] = c, {f"{k:g}": v for k, v in scores.items()}, edge
        if edge:
            warnings.warn(f"LR probe {task}: the best C = {c:g} is at the {edge} end of the searched range "
                          f"{min(scores):g}..{max(scores):g} (limits {PROBE_LIMITS}); its score is a lower "
                          "bound of the probe's, so a model's margin over it is an upper bound", stacklevel=2)
        val_preds[task] = full_scores(clf, x[val_idx], n_cls)
        test_preds[task] = full_scores(clf, x[test_idx], n_cls)
    val = score_predictions(prep, val_idx, val_preds, detail=False)
    test = score_predictions(prep, test_idx, test_preds)
    params = {"baseline": "probe", "trained_on": f"L{ctx.p}", "model": PROBE_SOLVERS[ctx.profile.probe_solver],
              "features": "frozen encoder (cached model inputs, view orig), spatial mean-pooled",
              "dim": int(x.shape[1]), "standardise": "mean/std of the training pool",
              "class_weight": {"coarse": "balanced", "fine": None}, "base_grid": list(grid),
              "limits": list(PROBE_LIMITS), "grid": {t: sorted(float(k) for k in v) for t, v in val_scores.items()},
              "C": chosen, "C_at_edge": {t: e is not None for t, e in edges.items()}, "edge": edges,
              "val_scores": val_scores, "selected_by": {t: PRIMARY[t][0] for t in chosen},
              "max_iter": PROBE_MAX_ITER, "stop_after": PROBE_STOP_AFTER, "warm_start": True, "fit_s": fit_s}
    res = _record(ctx, "probe", ("coarse", "fine"), params, val, test, t0,
                  **{PER_IMAGE_KEY: per_image_predictions(prep, test_idx, test_preds)})
    write_json(path, res)
    return res


def run_baselines(ctx, force: bool = False) -> dict[str, dict]:
    """Both baselines for this ``(profile, p, seed)``: ``{"majority": result, "probe": result}``
    (``probe`` is absent when the profile has no frozen features)."""
    out = {"majority": run_majority(ctx, force=force)}
    probe = run_probe(ctx, force=force)
    if probe is not None:
        out["probe"] = probe
    return out
