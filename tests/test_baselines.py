"""Baselines (issue 8): majority class, most frequent caption and the LR probe, on tiny synthetic data
with known answers; the report shows them as rows; the claims use T1 balanced accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from repro.data.captions import Vocab
from repro.data.prepare import PreparedData
from repro.errors import ConfigError
from repro.experiments import baselines
from repro.experiments.context import Context
from repro.io import read_json
from repro.names import EOS, PAD, SPECIALS
from repro.profiles import get_profile

COARSE = ("normal", "dr", "amd", "glaucoma", "other")
FINE = ("f0", "f1", "f2", "f3", "f4", "f5")


# ---------------------------------------------------------------- pure parts

def test_majority_class_and_prior():
    assert baselines.majority_class([2, 2, 1, 0, 2, 1]) == 2
    assert baselines.majority_class([1, 0, 0, 1]) == 0  # tie: the smaller class
    assert baselines.class_prior([0, 0, 1, 3], 5).tolist() == [0.5, 0.25, 0.0, 0.25, 0.0]


def test_most_frequent_caption():
    caps = np.array([[5, 6, EOS, PAD], [7, EOS, PAD, PAD], [5, 6, EOS, PAD], [7, EOS, PAD, PAD], [8, EOS, PAD, PAD]])
    assert baselines.most_frequent_caption(caps).tolist() == [5, 6, EOS, PAD]  # tie: seen first
    assert baselines.most_frequent_caption(caps[1:]).tolist() == [7, EOS, PAD, PAD]


def test_pooled_features_and_standardise():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float16).reshape(2, 3, 2, 2)
    f = baselines.pooled_features(x)
    assert f.shape == (2, 3) and f.dtype == np.float32
    assert f[0, 0] == pytest.approx(1.5)
    z = baselines.standardise(np.array([[1.0, 5.0], [3.0, 5.0], [100.0, 0.0]]), np.array([0, 1]))
    assert z[:2, 0].tolist() == [-1.0, 1.0] and z[:2, 1].tolist() == [0.0, 0.0]  # constant feature: std 1


def test_probe_separable_is_perfect_and_chooses_c_on_validation():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 4)).astype(np.float32) * 0.1
    x[np.arange(60), y] += 5.0  # linearly separable
    tr, va = np.arange(0, 60, 2), np.arange(1, 60, 2)
    calls = []

    def acc(scores):
        calls.append(1)
        return float((scores.argmax(1) == y[va]).mean())

    clf, c, scores, edge = baselines.fit_probe(x[tr], y[tr], x[va], 4, acc, grid=(0.01, 1.0),
                                               class_weight="balanced", limits=(0.01, 1.0))
    assert len(calls) == 2 and set(scores) == {0.01, 1.0}
    assert c == 0.01 and edge is None  # both perfect: the tie goes to the smaller C; a plateau is no edge
    s = baselines.full_scores(clf, x[va], 4)
    assert s.shape == (30, 4) and (s[:, 3] == -1).all()  # a class never seen scores -1
    assert (s.argmax(1) == y[va]).mean() == 1.0


def test_widened_search_finds_an_interior_optimum():
    """Validation score peaks at C = 1e-3, below the first grid: the grid widens down until the best C
    is interior, and no further."""
    tried = []

    def score(c):
        tried.append(c)
        return -abs(np.log10(c) + 3)

    best, scores, edge = baselines.widened_search(score, grid=(0.01, 0.1, 1.0), limits=(1e-7, 1e3))
    assert best == pytest.approx(1e-3) and edge is None
    assert sorted(scores) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert len(tried) == 5


def test_widened_search_stops_ascending_once_the_score_turns_down():
    """Peak at C = 1e-2 of a five-point grid: after two worse C in a row the larger C are not fitted;
    without ``stop_after`` every C is."""
    tried = []

    def score(c):
        tried.append(c)
        return -abs(np.log10(c) + 2)

    best, scores, edge = baselines.widened_search(score, grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
                                                  limits=(1e-7, 1e3))
    assert best == pytest.approx(1e-2) and edge is None
    assert tried == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    tried.clear()
    baselines.widened_search(score, grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), limits=(1e-7, 1e3), stop_after=None)
    assert len(tried) == 6


def test_widened_search_reports_an_edge_at_the_limit():
    best, scores, edge = baselines.widened_search(lambda c: -c, grid=(0.01, 0.1), limits=(1e-4, 1e3))
    assert best == pytest.approx(1e-4) and edge == "low" and min(scores) == pytest.approx(1e-4)
    best, _, edge = baselines.widened_search(lambda c: c, grid=(0.01, 0.1), limits=(1e-4, 10.0))
    assert best == pytest.approx(10.0) and edge == "high"


# ---------------------------------------------------------------- on a tiny fake data set

def _prepared(tmp: Path, n: int = 60) -> PreparedData:
    split = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    # T1: normal 50 %, dr 30 %, amd 20 % in every split
    coarse_idx = np.tile([0, 0, 0, 0, 0, 1, 1, 1, 2, 2], n // 10)
    fine_idx = coarse_idx * 2  # f0, f2, f4
    vocab = Vocab(list(SPECIALS) + ["normal", "fundus", "diabetic", "retinopathy", "amd"])
    words = {0: ["normal", "fundus"], 1: ["diabetic", "retinopathy"], 2: ["amd"]}
    captions = np.array([vocab.encode(words[c], max_len=4) for c in coarse_idx])
    manifest = pd.DataFrame({
        "image": [f"{i}_left.jpg" for i in range(n)], "patient_id": np.arange(n),
        "coarse": [COARSE[c] for c in coarse_idx], "fine_class": [FINE[f] for f in fine_idx],
        "coarse_idx": coarse_idx, "fine_idx": fine_idx, "split": split,
        "p_min": np.where(split == "train", np.where(np.arange(n) < 20, 15, 70), np.nan),
    })
    return PreparedData(manifest=manifest, excluded=manifest.iloc[0:0], bad_images=manifest.iloc[0:0],
                        coarse_classes=COARSE, fine_classes=FINE, vocab=vocab, captions=captions, images=None,
                        split_file=tmp / "split.csv", split_hash="h0", dataset_name="synthetic", data_root=tmp)


def _ctx(tmp: Path, prepared, p: int = 15, seed: int = 0, feats=None) -> Context:
    if feats is None:
        # features separable by T1 class and by T2 class (T2 is a function of T1 here)
        feats = np.zeros((len(prepared), 6, 2, 2), dtype=np.float16)
        feats[np.arange(len(prepared)), prepared.manifest["coarse_idx"].to_numpy()] = 3.0
    bank = SimpleNamespace(data={"orig": torch.from_numpy(feats)})
    return Context(profile=get_profile("smoke"), p=p, seed=seed, prepared=prepared, results_dir=tmp / "res",
                   runs_dir=tmp / "runs", device=torch.device("cpu"), _bank=bank)


def test_run_baselines_known_answers(tmp_path):
    prep = _prepared(tmp_path)
    ctx = _ctx(tmp_path, prep)
    out = baselines.run_baselines(ctx)
    maj, probe = out["majority"], out["probe"]
    assert ctx.result_path("baseline", "majority").name == "baseline-majority.json"
    assert read_json(ctx.result_path("baseline", "probe"))["name"] == "probe"
    # majority: "normal" for every test image -> accuracy = its prior 5/10, balanced accuracy 1/3
    t = maj["metrics"]["test"]
    assert maj["params"]["coarse"] == "normal" and maj["params"]["fine"] == "f0"
    assert maj["params"]["caption"] == "normal fundus"
    assert t["coarse"]["accuracy"] == pytest.approx(0.5)
    assert t["coarse"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert t["fine"]["top1"] == pytest.approx(0.5)
    assert t["fine"]["top5"] == pytest.approx(1.0)  # the three classes of L_p are among the top 5
    assert t["caption"]["exact_match"] == pytest.approx(0.5)
    assert set(maj["metrics"]) == {"val", "test"} and maj["stage"] == "baseline" and maj["split_hash"] == "h0"
    # probe: separable features -> perfect T1 and T2
    pt = probe["metrics"]["test"]
    assert pt["coarse"]["accuracy"] == 1.0 and pt["coarse"]["balanced_accuracy"] == 1.0
    assert pt["fine"]["top1"] == 1.0 and "caption" not in pt
    assert set(probe["params"]["C"]) == {"coarse", "fine"}
    assert probe["params"]["selected_by"] == {"coarse": "balanced_accuracy", "fine": "top1"}
    assert probe["params"]["dim"] == 6 and probe["tasks"] == ["coarse", "fine"]
    # every C tried is recorded with its validation score, and whether the choice is at the range's edge
    for task in ("coarse", "fine"):
        assert len(probe["params"]["grid"][task]) == len(probe["params"]["val_scores"][task]) >= len(baselines.PROBE_GRID)
        assert probe["params"]["C_at_edge"][task] == (probe["params"]["edge"][task] is not None)
    # per-image test predictions for the claims' bootstrap
    per = probe["test_predictions"]
    assert per["coarse"]["pred"] == per["coarse"]["true"] and len(per["image"]) == 10
    # the metric keys are the models' (score_predictions)
    assert {"accuracy", "balanced_accuracy", "macro_f1", "confusion"} <= set(pt["coarse"])


def test_probe_is_reused_across_seeds(tmp_path):
    prep = _prepared(tmp_path)
    ctx0 = _ctx(tmp_path, prep, seed=0)
    baselines.run_probe(ctx0)
    first = read_json(ctx0.result_path("baseline", "probe"))
    # seed 1 gets features that would give another answer: the seed-0 file must be copied instead
    other = _ctx(tmp_path, prep, seed=1, feats=np.zeros((len(prep), 6), dtype=np.float16))
    second = baselines.run_probe(other)
    assert second["reused_from_seed"] == 0 and second["seed"] == 1
    assert second["metrics"] == first["metrics"]
    # another split is not reused
    prep2 = _prepared(tmp_path)
    prep2.split_hash = "h1"
    third = baselines.run_probe(_ctx(tmp_path, prep2, seed=2, feats=np.zeros((len(prep2), 6), dtype=np.float16)))
    assert "reused_from_seed" not in third
    assert third["metrics"]["test"]["coarse"]["accuracy"] < 1.0


def test_no_frozen_features_no_probe(tmp_path):
    prep = _prepared(tmp_path)
    ctx = _ctx(tmp_path, prep)
    ctx._bank = SimpleNamespace(data={"uint8": torch.zeros(len(prep), 4, 4, 3, dtype=torch.uint8)})
    with pytest.warns(UserWarning, match="no probe"):
        out = baselines.run_baselines(ctx)
    assert set(out) == {"majority"}
    assert not math.isnan(out["majority"]["metrics"]["test"]["coarse"]["accuracy"])


# ---------------------------------------------------------------- the report shows them

@pytest.fixture(scope="module")
def df_with_baselines(tmp_path_factory):
    from test_report import PS, SEEDS, make_results, result

    from repro import report
    from repro.io import write_json

    folder = tmp_path_factory.mktemp("results") / "synthetic"
    make_results(folder, stages=("m1", "m2", "m3", "ensemble"))
    for p in PS:
        for seed in SEEDS:
            run = folder / f"p{p}" / f"seed{seed}"
            # test scores: majority T1 acc 0.46 + 0.05 at p = 70 ∓ 0.01 per seed (bacc = acc − 0.05)
            write_json(run / "baseline-majority.json", result("baseline", "majority", p, seed, (0.46, 0.40, 0.30)))
            write_json(run / "baseline-probe.json", result("baseline", "probe", p, seed, (0.50, 0.45, None)))
    return report.load_results("synthetic", results_root=folder.parent)


def test_report_tables_show_baseline_rows(df_with_baselines):
    from repro import report

    df = df_with_baselines
    assert set(df.loc[df.stage == "baseline", "model"]) == {"Majority class", "LR probe (frozen features)"}
    for table in (report.table3(df), report.table5(df)):
        labels = list(dict.fromkeys(table.index.get_level_values(0)))
        assert labels[-3:] == ["Majority class", "Most frequent caption", "LR probe (frozen features)"]
        maj, cap, probe = (table.loc[(x, 15)] for x in labels[-3:])
        assert maj[("T1", "mean")] == pytest.approx(0.46) and maj[("T1 bacc", "mean")] == pytest.approx(0.41)
        assert maj[("T2", "mean")] == pytest.approx(0.40) and maj[("T3", "n")] == 0
        assert cap[("T3", "mean")] == pytest.approx(0.30) and cap[("T1", "n")] == 0 and cap[("T2", "n")] == 0
        assert probe[("T1 bacc", "mean")] == pytest.approx(0.45) and probe[("T3", "n")] == 0
        assert all(math.isnan(r[("T1", "paper")]) for r in (maj, cap, probe))
    t5 = report.table5(df)
    # T1's main metric beside accuracy; the paper has no balanced accuracy
    assert list(dict.fromkeys(t5.columns.get_level_values(0))) == ["T1 bacc", "T1", "T2", "T3"]
    assert t5.loc[("M2", 15), ("T1 bacc", "mean")] == pytest.approx(0.61)
    shown = report.fmt(t5)
    assert ("T1 bacc", "paper") not in shown.columns and ("T1", "paper") in shown.columns
    assert shown.loc[("Majority class", 70), ("T1", "ours")] == "0.510 ± 0.014 (2)"


def test_headline_and_claims_with_baselines(df_with_baselines):
    from repro import report
    from repro.report import claims

    md = report.headline_markdown("synthetic", df=df_with_baselines)
    assert "T1 bacc p=15" in md and "T1 acc p=15" in md and "balanced accuracy" in md
    assert "| Majority class | 0.410 ± 0.014 | 0.460 ± 0.014 | 0.400 ± 0.014 |  |" in md
    assert "| Most frequent caption |  |  |  | 0.300 ± 0.014 |" in md
    assert "| LR probe (frozen features) |" in md
    assert "Which models beat the LR probe" in md
    cl = claims.claims_table(df_with_baselines)
    m2 = cl[(cl.claim == claims.PROBE_CLAIM) & (cl.task == "T1") & cl.comparison.str.startswith("M2 −")].iloc[0]
    assert m2.n_pairs == 4 and m2.effect == pytest.approx(0.66 - 0.50)  # bacc − bacc: the 0.05 offsets cancel
    assert m2.verdict == "supported"


def test_report_without_baselines_and_counts_as_integers(df_with_baselines):
    from repro import report

    old = df_with_baselines[df_with_baselines.stage != "baseline"]  # results written before the baselines
    assert "Majority class" not in report.table5(old).index.get_level_values(0)
    assert "| Majority class |" not in report.headline_markdown("synthetic", df=old)
    assert any("baseline-majority" in n for n in report.missing(old))
    bl = report.fmt(report.bleu_by_class(df_with_baselines))
    assert bl.loc["all", ("test images", "mean")] == "100"
    ea = report.fmt(report.error_analysis(df_with_baselines), {"count": 1, "rate": 3})
    assert ea.loc["test samples", ("count", "ours")] == "100 ± 0 (2)"
    assert ea.loc["test samples", ("count", "paper")] == "1082"
    assert ea.loc["T1 correct, BLEU < 0.2", ("count", "ours")] == "10.5 ± 0.7 (2)"


def test_metric_vs_p_plot_draws_baselines(df_with_baselines):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from repro import report

    fig = report.plot_metric_vs_p(df_with_baselines)
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"Majority class", "Most frequent caption", "LR probe (frozen features)"} <= labels
    plt.close(fig)


def test_count_means_print_as_whole_numbers():
    from repro.report.formatting import fmt

    t = pd.DataFrame({("count", "mean"): [56.0, 821.0], ("count", "std"): [20.0 / 3, 0.0], ("count", "n"): [3, 3]},
                     index=["a", "b"])
    t.columns = pd.MultiIndex.from_tuples(t.columns)
    shown = fmt(t, {"count": 1})
    # a whole mean count prints as an integer (no "56.0", "821.0 ± 0.0"); a spread keeps its decimal
    assert list(shown[("count", "ours")]) == ["56 ± 6.7 (3)", "821 ± 0 (3)"]


def _separable(k: int) -> tuple[np.ndarray, np.ndarray]:
    """800 images of 60 features in ``k`` classes (each present), the class shifting one feature by 1."""
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 800)
    y[:k] = np.arange(k)
    x = rng.normal(size=(800, 60)).astype(np.float32)
    x[np.arange(800), y % 60] += 1.0
    return x, y


@pytest.mark.parametrize("k, class_weight", [(5, "balanced"), (2, None), (29, None)])
def test_torch_probe_solves_sklearns_objective(k, class_weight):
    """The torch solver (probe_solver="torch") and scikit-learn's lbfgs stop at the same tolerance on the same
    objective: multinomial (k ≥ 3) or one logit (k = 2), class-balanced or not. Their probabilities agree to
    2e-3 and their predicted classes on at least 99 % of the images."""
    from sklearn.linear_model import LogisticRegression

    from repro.experiments.probe_solver import TorchLogistic

    x, y = _separable(k)
    for c in (1e-3, 1e-1):
        sk = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000).fit(x, y)
        tl = TorchLogistic(C=c, class_weight=class_weight, max_iter=2000).fit(x, y)
        assert tl.coef_.shape == sk.coef_.shape and list(tl.classes_) == list(sk.classes_)
        ps, pt = sk.predict_proba(x), tl.predict_proba(x)
        assert np.abs(ps - pt).max() < 2e-3
        assert (ps.argmax(1) == pt.argmax(1)).mean() >= 0.99
    # a coefficient set before fit is the starting point: from the optimum, L-BFGS stops at once
    again = TorchLogistic(C=1e-1, class_weight=class_weight, max_iter=2000)
    again.coef_, again.intercept_, again.classes_ = tl.coef_.copy(), tl.intercept_.copy(), tl.classes_
    assert again.fit(x, y).n_iter_ <= 2


@pytest.mark.parametrize("k, class_weight", [(5, "balanced"), (29, None)])
def test_torch_probe_in_float32_stays_near_sklearn(k, class_weight):
    """probe_solver="torch-fp32" (the quick profile's): the same objective in float32, about 3x faster at one
    thread on the real T2 probe; probabilities within 5e-3 of scikit-learn's, classes on ≥ 98 % of images."""
    from sklearn.linear_model import LogisticRegression

    x, y = _separable(k)
    for c in (1e-3, 1e-1):
        sk = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000).fit(x, y)
        tl = baselines.probe_classifier("torch-fp32", c, class_weight, 2000).fit(x, y)
        assert tl.coef_.dtype == np.float32
        ps, pt = sk.predict_proba(x), tl.predict_proba(x)
        assert np.abs(ps - pt).max() < 5e-3
        assert (ps.argmax(1) == pt.argmax(1)).mean() >= 0.98


def test_probe_solver_torch_through_fit_probe_and_an_unknown_solver():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 4)).astype(np.float32) * 0.1
    x[np.arange(60), y] += 5.0
    tr, va = np.arange(0, 60, 2), np.arange(1, 60, 2)
    clf, c, scores, edge = baselines.fit_probe(x[tr], y[tr], x[va], 4, lambda s: float((s.argmax(1) == y[va]).mean()),
                                               grid=(0.01, 1.0), class_weight="balanced", limits=(0.01, 1.0),
                                               solver="torch")
    assert c == 0.01 and scores == {0.01: 1.0, 1.0: 1.0}
    assert (baselines.full_scores(clf, x[va], 4)[:, 3] == -1).all()
    with pytest.raises(ConfigError, match="probe solver 'scipy'"):
        baselines.fit_probe(x[tr], y[tr], x[va], 4, lambda s: 0.0, grid=(0.01,), solver="scipy")


def test_probe_solver_check_fits_both_solvers_on_real_features(odir_root, tmp_path):
    """`repro bench --probe-solvers` on the smoke profile's real features: both solvers search C on
    validation and score on test; the reported difference is the largest over every test metric."""
    from repro.analysis.bench import probe_solver_check

    r = probe_solver_check("smoke", p=15, seed=0, data_root=odir_root, results_root=tmp_path)
    assert set(r["solvers"]) == set(baselines.PROBE_SOLVERS) and r["dim"] > 0
    for per in r["solvers"].values():
        assert set(per) == {"coarse", "fine"}
        for task in per.values():
            assert task["fit_s"] > 0 and f"{task['C']:g}" in task["val"] and task["n_test"] > 0
            assert task["test"] and all(0.0 <= v <= 1.0 for v in task["test"].values())
    sk = r["solvers"]["sklearn"]
    assert r["max_test_diff"] == pytest.approx(max(abs(other[t]["test"][k] - sk[t]["test"][k])
                                                   for name, other in r["solvers"].items() if name != "sklearn"
                                                   for t in sk for k in sk[t]["test"]))
