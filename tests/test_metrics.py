"""Tests of repro.engine.metrics against hand-computed values (and sklearn / nltk where useful)."""

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    top_k_accuracy_score,
)

from repro.engine.metrics import bleu_paper, bleu_paper_scores, caption_metrics, coarse_metrics, fine_metrics, topk_accuracy

# ---------------------------------------------------------------------------
# T1
# ---------------------------------------------------------------------------

CLASSES = ["a", "b", "c"]
Y_TRUE = ["a", "a", "a", "b", "b", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c"]


def test_coarse_metrics_hand_computed():
    m = coarse_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)   # 13/18
    # F1: a = 2*1*(2/3)/(5/3) = 0.8; b = 0.5; c = 2*.5*1/1.5 = 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["support"] == 2
    json.dumps(m)


def test_coarse_metrics_match_sklearn():
    m = coarse_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["confusion"] == confusion_matrix(Y_TRUE, Y_PRED, labels=CLASSES).tolist()
    prec = precision_score(Y_TRUE, Y_PRED, labels=CLASSES, average=None, zero_division=0)
    rec = recall_score(Y_TRUE, Y_PRED, labels=CLASSES, average=None, zero_division=0)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c]["precision"] == pytest.approx(prec[i])
        assert m["per_class"][c]["recall"] == pytest.approx(rec[i])


def test_coarse_metrics_absent_classes():
    # "c" appears nowhere, "d" is only predicted
    classes = ["a", "b", "c", "d"]
    y_true, y_pred = ["a", "a", "b"], ["a", "d", "b"]
    m = coarse_metrics(y_true, y_pred, classes)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)          # over {a, b}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)          # over {a, b, d}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert len(m["confusion"]) == 4 and m["confusion"][2] == [0, 0, 0, 0]


def test_coarse_metrics_accepts_indices_and_rejects_unknown():
    idx = {c: i for i, c in enumerate(CLASSES)}
    m = coarse_metrics(np.array([idx[y] for y in Y_TRUE]), [idx[y] for y in Y_PRED], CLASSES)
    assert m == coarse_metrics(Y_TRUE, Y_PRED, CLASSES)
    with pytest.raises(ValueError, match="zz"):
        coarse_metrics(["a", "zz"], ["a", "b"], CLASSES)


# ---------------------------------------------------------------------------
# T2
# ---------------------------------------------------------------------------

SCORES = np.array([
    [0.1, 0.5, 0.2, 0.15, 0.05],   # true 1: rank 1
    [0.4, 0.3, 0.2, 0.06, 0.04],   # true 2: rank 3
    [0.3, 0.25, 0.2, 0.15, 0.1],   # true 4: rank 5
    [0.05, 0.1, 0.15, 0.3, 0.4],   # true 3: rank 2
])
Y_FINE = np.array([1, 2, 4, 3])


def test_topk_accuracy_hand_computed():
    assert topk_accuracy(Y_FINE, SCORES, 1) == pytest.approx(0.25)
    assert topk_accuracy(Y_FINE, SCORES, 2) == pytest.approx(0.5)
    assert topk_accuracy(Y_FINE, SCORES, 3) == pytest.approx(0.75)
    assert topk_accuracy(Y_FINE, SCORES, 5) == pytest.approx(1.0)
    for k in (1, 2, 3):
        assert topk_accuracy(Y_FINE, SCORES, k) == pytest.approx(
            top_k_accuracy_score(Y_FINE, SCORES, k=k, labels=range(5)))


def test_topk_ties_break_towards_lower_index():
    scores = np.array([[0.5, 0.5, 0.0]])
    assert topk_accuracy([0], scores, 1) == 1.0
    assert topk_accuracy([1], scores, 1) == 0.0


def test_fine_metrics_by_group():
    m = fine_metrics(Y_FINE, SCORES, groups=[0, 0, 1, 1], group_names=["dr", "amd"])
    assert m["top1"] == pytest.approx(0.25) and m["top5"] == pytest.approx(1.0)
    assert list(m["topk_by_group"]) == ["dr", "amd"]
    assert m["topk_by_group"]["dr"] == pytest.approx({1: 0.5, 2: 0.5, 3: 1.0, 4: 1.0, 5: 1.0})
    assert m["topk_by_group"]["amd"] == pytest.approx({1: 0.0, 2: 0.5, 3: 0.5, 4: 0.5, 5: 1.0})
    assert m["n_by_group"] == {"dr": 2, "amd": 2}
    json.dumps(m)


# ---------------------------------------------------------------------------
# T3
# ---------------------------------------------------------------------------

def test_bleu_paper_identical_and_empty():
    s = ["mild", "nonproliferative", "retinopathy", "lens", "dust"]
    assert bleu_paper(s, s) == pytest.approx(1.0)
    assert bleu_paper(s, []) == 0.0
    assert bleu_paper("a b c", "a b c") == pytest.approx(1.0)


def test_bleu_paper_short_hypotheses_use_reduced_weights():
    from nltk.translate.bleu_score import sentence_bleu

    ref = ["a", "b", "c"]
    # 2 tokens, weights (1/2, 1/2): p1 = p2 = 1, BP = exp(1 - 3/2)
    assert bleu_paper(ref, ["a", "b"]) == pytest.approx(math.exp(-0.5), rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sentence_bleu([ref], ["a", "b"]) < 1e-100   # default 4-gram weights: ~0
    # 1 token, weights (1,): BP = exp(1 - 2)
    assert bleu_paper(["a", "b"], ["a"]) == pytest.approx(math.exp(-1.0), rel=1e-9)
    # no matching bigram: no smoothing -> ~0
    assert bleu_paper(ref, ["b", "a"]) < 1e-100


def test_bleu_paper_four_gram_partial_match():
    ref, hyp = "a b c d e".split(), "a b c d x".split()
    expected = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25   # BP = 1
    assert bleu_paper(ref, hyp) == pytest.approx(expected, rel=1e-9)


def test_bleu_paper_emits_no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bleu_paper(["a", "b", "c", "d", "e"], ["e", "d", "c", "b", "a"])
        bleu_paper(["a", "b", "c"], ["b", "a"])
    assert caught == []


def test_caption_metrics():
    refs = [["a", "b", "c", "d", "e"], ["x", "y"], ["a", "b", "c"]]
    hyps = [["a", "b", "c", "d", "e"], ["x", "y"], ["a", "b"]]
    m = caption_metrics(refs, hyps, groups=["dr", "amd", "dr"])
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert m["bleu_paper"] == pytest.approx((1.0 + 1.0 + math.exp(-0.5)) / 3)
    assert m["bleu_paper_by_group"] == pytest.approx({"dr": (1.0 + math.exp(-0.5)) / 2, "amd": 1.0})
    assert m["n_by_group"] == {"amd": 1, "dr": 2}
    assert 0.0 < m["bleu4"] < 1.0
    assert bleu_paper_scores(refs, hyps) == pytest.approx([1.0, 1.0, math.exp(-0.5)])
    json.dumps(m)


def test_bleu4_corpus():
    refs = [["a", "b", "c", "d", "e"], ["f", "g", "h", "i"]]
    assert caption_metrics(refs, refs)["bleu4"] == pytest.approx(1.0)
    # one sentence, no zero n-gram counts: (4/5 * 3/4 * 2/3 * 1/2)^(1/4), BP = 1
    m = caption_metrics([["a", "b", "c", "d", "e"]], [["a", "b", "c", "d", "x"]])
    assert m["bleu4"] == pytest.approx(0.2 ** 0.25, rel=1e-6)
    assert m["exact_match"] == 0.0
