"""Evaluation metrics of the three tasks (docs/design.md §5, paper §4).

* T1 (coarse): accuracy, balanced accuracy, macro-F1, confusion matrix,
  per-class precision / recall (paper Table 6).
* T2 (fine): top-k accuracy, overall and per T1 class (paper Fig. 4).
* T3 (caption): ``bleu_paper`` -- the authors' per-image nltk sentence BLEU,
  averaged over images (comparable with the paper's ~0.48) -- and a standard
  corpus BLEU-4 (sacrebleu), exact-match rate and BLEU per T1 class.

Every function returns plain Python floats, ints, lists and dicts (JSON-ready).
Scores are on a 0-1 scale, like the paper's tables in ``paper/``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "coarse_metrics",
    "topk_accuracy",
    "fine_metrics",
    "bleu_paper",
    "bleu_paper_scores",
    "caption_metrics",
]


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _encode(values, classes: Sequence) -> np.ndarray:
    """Map labels to indices into ``classes``; integer indices are accepted as they are."""
    values = list(_to_numpy(values).tolist())
    index = {c: i for i, c in enumerate(classes)}
    if all(v in index for v in values):
        return np.array([index[v] for v in values], dtype=np.int64)
    if all(isinstance(v, int) and 0 <= v < len(classes) for v in values):
        return np.array(values, dtype=np.int64)
    bad = next(v for v in values if v not in index)
    raise ValueError(f"label {bad!r} is not one of the classes {list(classes)}")


def _group_keys(groups, group_names) -> list:
    """Group labels as JSON-ready keys, named through ``group_names`` (list or mapping)."""
    keys = _to_numpy(groups).tolist()
    if group_names is None:
        return keys
    if isinstance(group_names, Mapping):
        return [group_names.get(g, g) for g in keys]
    return [group_names[g] if isinstance(g, int) else g for g in keys]


def _ordered_groups(keys: list, group_names) -> list:
    present = set(keys)
    if group_names is not None:
        names = list(group_names.values()) if isinstance(group_names, Mapping) else list(group_names)
        ordered = [g for g in names if g in present]
        return ordered + sorted((g for g in present if g not in set(ordered)), key=str)
    return sorted(present, key=str)


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def coarse_metrics(y_true, y_pred, classes: Sequence) -> dict:
    """Accuracy, balanced accuracy, macro-F1, confusion matrix and per-class scores.

    ``y_true``/``y_pred`` hold labels from ``classes`` or integer indices into it.

    * ``balanced_accuracy``: mean recall over the classes present in ``y_true``
      (as sklearn's ``balanced_accuracy_score``).
    * ``macro_f1``: mean F1 over the classes present in ``y_true`` or ``y_pred``
      (as sklearn's ``f1_score(average="macro")``); an undefined precision or
      recall counts as 0.
    * ``confusion``: ``confusion[i][j]`` = number of images of true class
      ``classes[i]`` predicted as ``classes[j]``.
    * ``per_class``: ``{str(class): {precision, recall, f1, support}}`` for every
      class in ``classes`` (0.0 where undefined).
    """
    yt, yp = _encode(y_true, classes), _encode(y_pred, classes)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has {yt.size} labels but y_pred has {yp.size}")
    if yt.size == 0:
        raise ValueError("coarse_metrics needs at least one example")
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.array([_safe_div(tp[i], predicted[i]) for i in range(k)])
    recall = np.array([_safe_div(tp[i], support[i]) for i in range(k)])
    f1 = np.array([_safe_div(2 * precision[i] * recall[i], precision[i] + recall[i])
                   for i in range(k)])
    in_true = support > 0
    in_either = in_true | (predicted > 0)
    return {
        "n": int(yt.size),
        "accuracy": float(tp.sum() / yt.size),
        "balanced_accuracy": float(recall[in_true].mean()),
        "macro_f1": float(f1[in_either].mean()),
        "classes": [str(c) for c in classes],
        "confusion": cm.tolist(),
        "per_class": {
            str(c): {"precision": float(precision[i]), "recall": float(recall[i]),
                     "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
    }


def _topk_hits(y_true, scores, k: int) -> np.ndarray:
    """Per-example hit: the true class is among the k highest scores.

    Ties are broken towards the lower class index (stable sort), so a hit is
    never decided by chance.
    """
    s = _to_numpy(scores).astype(float)
    y = _to_numpy(y_true).astype(np.int64)
    if s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be (N, C) with N = len(y_true) = {y.shape[0]}, "
                         f"got {s.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return (order == y[:, None]).any(axis=1)


def topk_accuracy(y_true, scores, k: int) -> float:
    """Fraction of examples whose true class index is among the top-k ``scores`` (N, C)."""
    hits = _topk_hits(y_true, scores, k)
    if hits.size == 0:
        raise ValueError("topk_accuracy needs at least one example")
    return float(hits.mean())


def fine_metrics(y_true, scores, ks=(1, 5), groups=None, group_names=None) -> dict:
    """Top-k accuracies ``top<k>`` for k in ``ks``; per group for k = 1..5 (paper Fig. 4).

    ``groups`` (N,) is e.g. the T1 class of each image; ``group_names`` names
    integer groups (a list indexed by group, or a mapping). Adds
    ``topk_by_group`` = ``{group: {k: acc}}`` and ``n_by_group`` = ``{group: count}``.
    """
    out: dict = {f"top{k}": topk_accuracy(y_true, scores, k) for k in ks}
    out["n"] = int(_to_numpy(y_true).shape[0])
    if groups is not None:
        keys = _group_keys(groups, group_names)
        if len(keys) != out["n"]:
            raise ValueError(f"groups has {len(keys)} entries, expected {out['n']}")
        hits = {k: _topk_hits(y_true, scores, k) for k in range(1, 6)}
        key_arr = np.array([str(g) for g in keys])
        out["topk_by_group"], out["n_by_group"] = {}, {}
        for g in _ordered_groups(keys, group_names):
            sel = key_arr == str(g)
            out["topk_by_group"][g] = {k: float(hits[k][sel].mean()) for k in range(1, 6)}
            out["n_by_group"][g] = int(sel.sum())
    return out


def _tokens(x) -> list:
    return x.split() if isinstance(x, str) else list(x)


def bleu_paper(reference_tokens, hypothesis_tokens) -> float:
    """Sentence BLEU as the authors computed it: nltk ``sentence_bleu([ref], hyp)``.

    No smoothing; weights ``(1/4,) * 4``, reduced to ``(1/n,) * n`` when the
    hypothesis has n < 4 tokens; an empty hypothesis scores 0. Tokens are
    lists (a string is split on whitespace) without SOS/EOS/PAD. nltk's
    zero-count warnings are silenced (a missing n-gram order gives ~0).
    """
    from nltk.translate.bleu_score import sentence_bleu

    ref, hyp = _tokens(reference_tokens), _tokens(hypothesis_tokens)
    n = len(hyp)
    if n == 0:
        return 0.0
    weights = (1.0 / n,) * n if n < 4 else (0.25, 0.25, 0.25, 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = sentence_bleu([ref], hyp, weights=weights)
    return float(score) if math.isfinite(score) else 0.0


def bleu_paper_scores(refs, hyps) -> list[float]:
    """Per-image :func:`bleu_paper` (for error analysis, supplement §3)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return [bleu_paper(r, h) for r, h in zip(refs, hyps)]


def _corpus_bleu4(refs: list[list], hyps: list[list]) -> float:
    import sacrebleu

    hyp_lines = [" ".join(map(str, h)) for h in hyps]
    ref_lines = [" ".join(map(str, r)) for r in refs]
    result = sacrebleu.corpus_bleu(hyp_lines, [ref_lines], tokenize="none", force=True)
    return float(result.score) / 100.0


def caption_metrics(refs, hyps, groups=None, group_names=None) -> dict:
    """Caption metrics over N images (one reference each).

    * ``bleu_paper``: mean over images of :func:`bleu_paper`.
    * ``bleu4``: standard corpus BLEU-4 of sacrebleu's ``corpus_bleu`` (its
      default exponential smoothing, brevity penalty over the corpus) on the
      space-joined tokens with ``tokenize="none"``, divided by 100.
    * ``exact_match``: fraction of hypotheses identical to their reference.
    * ``distinct_captions``: how many different hypotheses there are (1 = one constant sentence),
      and ``top_caption_share``: the fraction of images given the most frequent one.
    * ``bleu_paper_by_group`` / ``n_by_group`` / ``exact_match_by_group`` (per-class caption
      accuracy: the fraction of a class's images whose caption is exactly right) when
      ``groups`` (N,) is given.
    """
    refs = [_tokens(r) for r in refs]
    hyps = [_tokens(h) for h in hyps]
    scores = bleu_paper_scores(refs, hyps)
    if not scores:
        raise ValueError("caption_metrics needs at least one caption")
    out: dict = {
        "n": len(scores),
        "bleu_paper": float(np.mean(scores)),
        "bleu4": _corpus_bleu4(refs, hyps),
        "exact_match": float(np.mean([r == h for r, h in zip(refs, hyps)])),
        "distinct_captions": len({tuple(h) for h in hyps}),
        "top_caption_share": max(Counter(tuple(h) for h in hyps).values()) / len(hyps),
    }
    if groups is not None:
        keys = _group_keys(groups, group_names)
        if len(keys) != len(scores):
            raise ValueError(f"groups has {len(keys)} entries, expected {len(scores)}")
        arr, key_arr = np.array(scores), np.array([str(g) for g in keys])
        exact = np.array([r == h for r, h in zip(refs, hyps)], dtype=float)
        out["bleu_paper_by_group"], out["n_by_group"], out["exact_match_by_group"] = {}, {}, {}
        for g in _ordered_groups(keys, group_names):
            sel = key_arr == str(g)
            out["bleu_paper_by_group"][g] = float(arr[sel].mean())
            out["n_by_group"][g] = int(sel.sum())
            out["exact_match_by_group"][g] = float(exact[sel].mean())
    return out
