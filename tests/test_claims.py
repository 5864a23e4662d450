"""Claims: the verdict logic and the claims table on synthetic result sets with known numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repro.errors import ConfigError
from repro.report import claim_set, claims, claims_view

T975_3 = 3.182446305284263  # t quantile 0.975 with 3 degrees of freedom


# ---------------------------------------------------------------- verdict

def test_clear_win_is_supported():
    effect, lo, hi, v = claims.verdict([0.05, 0.06, 0.04, 0.05])
    half = T975_3 * np.std([0.05, 0.06, 0.04, 0.05], ddof=1) / 2
    assert effect == pytest.approx(0.05)
    assert (lo, hi) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    assert v == "supported"


def test_clear_loss_is_not_supported():
    effect, lo, hi, v = claims.verdict([-0.05, -0.06, -0.04, -0.05])
    assert effect == pytest.approx(-0.05) and hi < 0
    assert v == "not supported"


def test_overlap_is_inconclusive():
    effect, lo, hi, v = claims.verdict([0.05, -0.04, 0.03, -0.02])
    assert lo < 0 < hi
    assert v == "inconclusive"


def test_too_few_pairs_is_inconclusive():
    effect, lo, hi, v = claims.verdict([0.2])
    assert effect == pytest.approx(0.2) and math.isnan(lo) and math.isnan(hi)
    assert v == "inconclusive"
    effect, lo, hi, v = claims.verdict([])
    assert math.isnan(effect) and v == "inconclusive"
    # NaN samples (a metric the run lacks) are dropped, not counted
    assert claims.verdict([0.2, float("nan")])[3] == "inconclusive"


def test_bootstrap_interval():
    x = [0.01, 0.02, 0.03, 0.04, 0.05]
    lo, hi = claims.bootstrap_ci(x)
    assert 0.01 <= lo < 0.03 < hi <= 0.05
    assert claims.bootstrap_ci(x) == (lo, hi)  # seeded: repeatable
    assert all(math.isnan(v) for v in claims.bootstrap_ci([0.1]))


# ---------------------------------------------------------------- the table

def _row(stage, name, p, seed, t1=np.nan, t2=np.nan, t3=np.nan, tau_task=None, tau=np.nan, acc=None):
    """``t1`` is T1's claim metric, balanced accuracy; T1 accuracy is a constant 0.5 unless given (so a
    claim computed on accuracy would find no effect)."""
    acc = (0.5 if np.isfinite(t1) else np.nan) if acc is None else acc
    return {"stage": stage, "name": name, "p": p, "seed": seed, "T1_bacc": t1, "T1_acc": acc, "T2_top1": t2,
            "T3_bleu": t3, "tau_task": tau_task, "tau": tau}


@pytest.fixture(scope="module")
def synthetic():
    """M1 {T1,T2,T3} beats M1 {T1} by 0.02/0.03/0.04 (seeds 0/1/2) at p = 15 and 70; M3 loses to M2
    by 0.01 + 0.01·seed; M2 vs M3 ensembles overlap; no M1 {T2}; τ study at p = 15 and 30."""
    rows = []
    for p in (15, 70):
        for seed in (0, 1, 2):
            rows.append(_row("m1", "T1", p, seed, t1=0.60 + 0.01 * seed))
            rows.append(_row("m1", "T1+T2+T3", p, seed, t1=0.62 + 0.02 * seed, t2=0.3, t3=0.2))
            rows.append(_row("m2", "single", p, seed, t1=0.70, t2=0.40, t3=0.30))
            rows.append(_row("m3", "single", p, seed, t1=0.69 - 0.01 * seed, t2=0.40, t3=0.30))
            rows.append(_row("m2", "ensemble", p, seed, t1=0.70))
            rows.append(_row("m3", "ensemble", p, seed, t1=0.70 + (0.01 if seed % 2 else -0.01)))
    rows.append(_row("m1", "T1+T2+T3", 70, 3, t1=0.99))  # no partner: not a pair
    for p in (15, 30):
        for seed in (0, 1):
            for tau, bonus in ((0.5, 0.0), (1.0, 0.02), (5.0, 0.05), (10.0, 0.05 + 0.01 * seed)):
                rows.append(_row("tau", f"T1-tau{tau:g}", p, seed, t1=0.5 + bonus + (0.3 if p == 30 else 0),
                                 tau_task="T1", tau=tau))
    return pd.DataFrame(rows)


def _get(table, claim, task, comparison_start, scope="pooled over p"):
    sel = table[(table.claim == claim) & (table.task == task) & table.comparison.str.startswith(comparison_start)
                & (table.scope == scope)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_claims_table_known_numbers(synthetic):
    table = claims.claims_table(synthetic)
    assert list(table.columns) == claims.COLUMNS
    mtl = _get(table, "MTL beats single-task", "T1", "M1 (T1+T2+T3)")
    assert mtl.n_pairs == 6 and mtl.p == "15, 70"
    assert mtl.effect == pytest.approx(0.03)
    assert mtl.verdict == "supported"
    # the paper: mean over p = 15, 70 of Table 3 row 7 minus row 1 (T1)
    assert mtl.paper_effect == pytest.approx(((0.693 - 0.684) + (0.781 - 0.744)) / 2)

    m3 = _get(table, "M3 beats M2", "T1", "M3 −")
    assert m3.effect == pytest.approx(-0.02) and m3.verdict == "not supported"
    assert _get(table, "M3 beats M2", "T2", "M3 −").verdict == "inconclusive"  # identical scores: CI [0, 0]
    ens = _get(table, "M3 beats M2", "T1", "M3+ensemble")
    assert ens.n_pairs == 6 and ens.verdict == "inconclusive"


def test_claims_table_missing_models(synthetic):
    table = claims.claims_table(synthetic)
    no_t2 = _get(table, "MTL beats single-task", "T2", "M1 (T1+T2+T3)")
    assert no_t2.n_pairs == 0 and math.isnan(no_t2.effect) and no_t2.verdict == "inconclusive"
    assert np.isfinite(no_t2.paper_effect)  # the paper's side is there even when ours is not
    empty = claims.claims_table(synthetic.iloc[0:0])
    assert len(empty) == len(table) and set(empty.verdict) == {"inconclusive"}


def test_tau_claim_at_smallest_p(synthetic):
    table = claims.claims_table(synthetic)
    tau = _get(table, "higher τ better at small p", "T1", "τ", scope="smallest p")
    assert tau.p == "15" and tau.n_pairs == 2
    # seed 0: (0.05 + 0.05)/2 - (0 + 0.02)/2 = 0.04; seed 1: (0.05 + 0.06)/2 - 0.01 = 0.045
    assert tau.effect == pytest.approx(0.0425)
    assert tau.verdict == "supported"
    assert tau.paper_effect == pytest.approx((0.769 + 0.769) / 2 - (0.687 + 0.752) / 2)
    assert _get(table, "higher τ better at small p", "T2", "τ", scope="smallest p").n_pairs == 0


def test_per_p_rows_and_summary(synthetic):
    table = claims.claims_table(synthetic, per_p=True)
    one = table[(table.scope == "one p") & (table.claim == "MTL beats single-task") & (table.task == "T1")]
    assert list(one.p) == ["15", "70"] and list(one.n_pairs) == [3, 3]
    assert one.iloc[0].paper_effect == pytest.approx(0.693 - 0.684)
    counts = claims.summarize(table)
    assert counts.loc["MTL beats single-task"].sum() == 3  # pooled rows only
    assert counts.loc["higher τ better at small p", "supported"] == 1


# ---------------------------------------------------------------- balanced accuracy and the probe

def test_claims_use_balanced_accuracy():
    from repro.names import CLAIM_COL

    assert CLAIM_COL["T1"] == "T1_bacc"
    rows = []
    for p in (15, 70):
        for seed in (0, 1, 2):
            # accuracy says M2 wins clearly; balanced accuracy says it loses clearly
            rows.append(_row("m1", "T1+T2+T3", p, seed, t1=0.50 + 0.01 * seed, acc=0.60))
            rows.append(_row("m2", "single", p, seed, t1=0.45 + 0.01 * seed, acc=0.70 + 0.01 * seed))
    table = claims.claims_table(pd.DataFrame(rows))
    r = _get(table, "M2 beats M1", "T1", "M2 −")
    assert r.effect == pytest.approx(-0.05) and r.verdict == "not supported"


def test_which_models_beat_the_probe():
    rows = []
    for p in (15, 70):
        for seed in (0, 1, 2):
            rows.append(_row("baseline", "probe", p, seed, t1=0.40, t2=0.50))
            rows.append(_row("m1", "T1+T2+T3", p, seed, t1=0.45 + 0.01 * seed, t2=0.50 + 0.01 * (seed - 1)))
            rows.append(_row("m2", "single", p, seed, t1=0.35 - 0.01 * seed, t2=0.55))
    table = claims.claims_table(pd.DataFrame(rows))
    m1 = _get(table, claims.PROBE_CLAIM, "T1", "M1 (T1+T2+T3) − LR probe")
    assert m1.n_pairs == 6 and m1.effect == pytest.approx(0.06) and m1.verdict == "supported"
    assert math.isnan(m1.paper_effect)
    assert _get(table, claims.PROBE_CLAIM, "T2", "M1 (T1+T2+T3)").verdict == "inconclusive"
    assert _get(table, claims.PROBE_CLAIM, "T1", "M2 −").verdict == "not supported"
    assert _get(table, claims.PROBE_CLAIM, "T1", "M3 −").n_pairs == 0  # no M3: no pairs
    assert set(table.loc[table.claim == claims.PROBE_CLAIM, "task"]) == {"T1", "T2"}
    who = claims.beats_probe(table)   # after Holm over the table's 14 tests: these effects are clear
    assert who["T1"] == {"supported": ["M1 (T1+T2+T3)"], "not supported": ["M2"], "inconclusive": []}
    assert who["T2"]["supported"] == ["M2"] and who["T2"]["inconclusive"] == ["M1 (T1+T2+T3)"]
    acc = claims.beats_probe(table, accuracy=True)   # T1 accuracy is 0.5 everywhere: no effect
    assert list(acc) == ["T1"] and acc["T1"]["inconclusive"] == ["M1 (T1+T2+T3)", "M2"]


# ---------------------------------------------------------------- bootstrap with test sampling, Holm, MDE (issue 21)

def _per_image_rows(n_patients=60, shift=0.0):
    """M2 and M1 {T1,T2,T3} at p = 15, 70 and seeds 0-2, each seed its own test set of ``n_patients``
    patients with two eyes; M2 is right on every image M1 gets right plus a seeded extra share.
    Scores in the frame are recomputed from the per-image predictions, so the two agree."""
    from repro.analysis.stats import weighted_score

    rows = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        pats = np.repeat([f"s{seed}-{i}" for i in range(n_patients)], 2)
        images = [f"{pid}_{eye}" for pid, eye in zip(pats, ["left", "right"] * n_patients)]
        true = np.repeat(rng.integers(0, 3, n_patients), 2)
        for p in (15, 70):
            m1_ok = np.repeat(rng.random(n_patients) < 0.5, 2)
            m2_ok = m1_ok | np.repeat(rng.random(n_patients) < 0.1 + shift, 2)
            for stage, name, ok in (("m1", "T1+T2+T3", m1_ok), ("m2", "single", m2_ok)):
                pred = np.where(ok, true, (true + 1) % 3)
                per = {"image": images, "patient_id": list(pats),
                       "coarse": {"true": true.tolist(), "pred": pred.tolist()}}
                data = {"true": true, "pred": pred}
                row = _row(stage, name, p, seed, t1=weighted_score("balanced_accuracy", data, np.ones(len(true))),
                           acc=weighted_score("accuracy", data, np.ones(len(true))),
                           t2=0.4 + (0.01 * seed if stage == "m2" else 0.0))   # T2 without per-image predictions
                row["result"] = {"test_predictions": per}
                rows.append(row)
    return pd.DataFrame(rows)


def test_bootstrap_includes_test_sampling_when_predictions_are_stored():
    df = _per_image_rows()
    table = claims.claims_table(df, n_boot=400)
    r = _get(table, "M2 beats M1", "T1", "M2 −")
    assert r.boot_method == claims.BOOT_TEST
    assert r.n_pairs == 6 and r.effect > 0
    # the bootstrap interval contains the point estimate and its p-value drives the raw verdict
    assert r.boot_low < r.effect < r.boot_high
    assert (r.boot_low > 0) == (r.verdict == "supported")
    assert np.isfinite(r.mde) and r.mde > 0 and np.isfinite(r.se)
    # accuracy is tested too, on the same resampled images
    assert np.isfinite(r.effect_acc) and r.acc_low < r.effect_acc < r.acc_high
    # rows without per-image predictions say why they fall back to the t-interval
    t2 = _get(table, "M2 beats M1", "T2", "M2 −")
    assert t2.n_pairs == 6 and t2.boot_method.startswith("none (no per-image test predictions in 6 of 6")
    assert math.isnan(t2.boot_low)


def test_identical_seed_effects_still_have_test_sampling_error():
    """Every seed gives the same effect: the t-interval has no width, the bootstrap over test patients has."""
    df = _per_image_rows()
    for stage, name in (("m1", "T1+T2+T3"), ("m2", "single")):   # p = 15, seed 0 everywhere
        src = df[(df.stage == stage) & (df.name == name) & (df.p == 15) & (df.seed == 0)].iloc[0]
        for i in df.index[(df.stage == stage) & (df.name == name)]:
            df.at[i, "T1_bacc"], df.at[i, "T1_acc"], df.at[i, "result"] = src.T1_bacc, src.T1_acc, src.result
    r = _get(claims.claims_table(df, n_boot=400), "M2 beats M1", "T1", "M2 −")
    assert r.ci_high - r.ci_low == pytest.approx(0.0, abs=1e-12)
    assert r.boot_high - r.boot_low > 0.01


def test_holm_adjusts_the_family_of_pooled_tests():
    base = {c: np.nan for c in claims.COLUMNS}
    rows = []
    for i, (pv, eff) in enumerate(((0.01, 0.1), (0.04, 0.1), (0.03, -0.1), (0.005, 0.1))):
        rows.append({**base, "claim": f"c{i}", "task": "T2", "scope": "pooled over p", "n_pairs": 15,
                     "effect": eff, "p_value": pv, "mde": 0.05, "verdict": "supported" if eff > 0 else "not supported",
                     "verdict_acc": ""})
    rows.append({**base, "claim": "c4", "task": "T2", "scope": "one p", "n_pairs": 3, "effect": 0.1,
                 "p_value": 0.0001, "mde": 0.05, "verdict": "supported", "verdict_acc": ""})
    t = claims.adjust(pd.DataFrame(rows, columns=claims.COLUMNS))
    np.testing.assert_allclose(t.p_holm[:4], [0.03, 0.06, 0.06, 0.02])
    assert list(t.verdict_holm) == ["supported", "inconclusive", "inconclusive", "supported", ""]
    assert t.reading[1] == "inconclusive: smaller than 0.050"
    assert t.reading[4] == "supported" and math.isnan(t.p_holm[4])   # per-p rows are not in the family


def test_accuracy_verdict_and_disagreement_flag():
    rows = []
    for p in (15, 70):
        for seed in (0, 1, 2):
            rows.append(_row("m1", "T1+T2+T3", p, seed, t1=0.50 + 0.01 * seed, acc=0.60))
            rows.append(_row("m2", "single", p, seed, t1=0.45 + 0.01 * seed, acc=0.70 + 0.01 * seed))
    r = _get(claims.claims_table(pd.DataFrame(rows)), "M2 beats M1", "T1", "M2 −")
    assert r.verdict == "not supported" and r.verdict_acc == "supported"
    assert r.effect_acc == pytest.approx(0.11) and r.metrics_disagree


def test_students_against_the_teacher_ensemble():
    rows = []
    for p in (15, 70):
        for seed in (0, 1, 2):
            rows.append(_row("ensemble", "m1", p, seed, t1=0.55, t2=0.5, t3=0.3))
            rows.append(_row("m3", "ensemble", p, seed, t1=0.54 - 0.001 * seed, t2=0.5, t3=0.3))
    table = claims.claims_table(pd.DataFrame(rows))
    r = _get(table, claims.ENSEMBLE_CLAIM, "T1", "M3+ensemble − Ensemble (M1 teachers)")
    assert r.n_pairs == 6 and r.effect == pytest.approx(-0.011) and r.verdict == "not supported"
    assert math.isnan(r.paper_effect)
    assert _get(table, claims.ENSEMBLE_CLAIM, "T1", "M2+ensemble").n_pairs == 0


# ---------------------------------------------------------------- label savings on a monotone curve

def test_monotone_label_savings_known_curve():
    from repro.report.label_savings import monotone_savings, paper_monotone_savings

    rows = []
    for seed, d in enumerate((-0.01, 0.0, 0.01)):
        for p in (15, 30, 45, 60, 70):
            rows.append(_row("m1", "T1", p, seed, t1=p / 100 + d))   # M1{T1}: the line p / 100
            rows.append(_row("m3", "ensemble", p, seed, t1=0.40 - d))
    out = monotone_savings(pd.DataFrame(rows), models={"M3+ensemble": ("m3", "ensemble")}, n_boot=300)
    r = out.set_index("p").loc[15]
    assert r.p_prime == pytest.approx(40.0) and r.relation == "=" and r.labels_saved == pytest.approx(-25.0)
    assert r.p_prime_low < 40 < r.p_prime_high
    # the paper's own numbers: M1{T1} 0.684, 0.755, 0.755, 0.774, 0.744 -> isotonic top 0.759 < 0.765
    paper = paper_monotone_savings().set_index(["model", "p"])
    assert paper.loc[("M3+ensemble", 15), "p_prime_label"] == "> 70"
    assert paper.loc[("M2", 15), "p_prime"] == pytest.approx(15 + (0.746 - 0.684) / (0.755 - 0.684) * 15)


def test_label_savings_table_and_finding_show_the_interval_and_the_paper():
    from repro.report.label_savings import monotone_savings, paper_monotone_savings, savings_finding, savings_table

    rows = []
    for seed, d in enumerate((-0.01, 0.0, 0.01)):
        for p in (15, 30, 45, 60, 70):
            rows.append(_row("m1", "T1", p, seed, t1=p / 100 + d, acc=0.3 + p / 100))
            rows.append(_row("m3", "ensemble", p, seed, t1=0.40 - d, acc=0.3))
    df, model = pd.DataFrame(rows), {"M3+ensemble": ("m3", "ensemble")}
    ours, acc = monotone_savings(df, models=model, n_boot=300), monotone_savings(df, "T1_acc", models=model, n_boot=300)
    paper = paper_monotone_savings()
    table = savings_table(ours, acc, paper).set_index("p")
    assert list(table.columns) == ["model", "seeds", "T1 bacc", "p′ (isotonic, 95 %)", "T1 acc",
                                   "p′ on acc (isotonic, 95 %)", "paper T1 acc", "paper p′ (isotonic)"]
    r = ours.set_index("p").loc[15]
    assert table.loc[15, "p′ (isotonic, 95 %)"] == f"40.0 [{r.p_prime_low:.1f}, {r.p_prime_high:.1f}]"
    assert table.loc[15, "p′ on acc (isotonic, 95 %)"].startswith("< 15")
    assert table.loc[15, "paper p′ (isotonic)"] == "> 70" and table.loc[15, "paper T1 acc"] == pytest.approx(0.765)
    text = savings_finding(ours, paper, acc)
    assert text.startswith("On the isotonic M1{T1} curve, M3+ensemble at p = 15 matches M1{T1} at p′ 40.0 [")
    assert "on T1 balanced accuracy and < 15" in text and "paper's own T1 accuracies gives > 70" in text


def test_display_has_the_columns_the_reader_needs(synthetic):
    table = claims.claims_table(synthetic, per_p=True)
    shown = claims_view.claims_display(table)
    assert list(shown.columns) == ["claim", "task", "comparison", "p", "pairs", "effect", "95% t-interval",
                                   "95% bootstrap (seeds + test patients)", "verdict (raw)", "verdict (Holm)",
                                   "verdict on accuracy (Holm)", "MDE (80 %)", "paper effect"]
    assert len(shown) == len(claims.claims_table(synthetic))          # pooled rows only
    row = shown[(shown.claim == "M3 beats M2") & (shown.task == "T2") & shown.comparison.str.startswith("M3+ens")]
    assert row.iloc[0]["verdict (Holm)"].startswith("inconclusive")
    per_p = claims_view.claims_display(table[table.scope == "one p"], pooled_only=False)
    assert "verdict (in words)" in per_p.columns and "verdict on accuracy" in per_p.columns
    assert "Holm" in claims_view.claims_markdown(claims.claims_table(synthetic))


# ---------------------------------------------------------------- the words: Holm verdicts, both T1 metrics, MDE

def _pooled_row(claim, task, comparison, effect, p_value, verdict, mde, **acc):
    base = {c: np.nan for c in claims.COLUMNS}
    return {**base, "claim": claim, "task": task, "comparison": comparison, "scope": "pooled over p",
            "p": "15, 70", "n_pairs": 6, "effect": effect, "ci_low": effect - 0.019, "ci_high": effect + 0.019,
            "p_value": p_value, "verdict": verdict, "mde": mde, "paper_effect": 0.016, "verdict_acc": "",
            "boot_method": claims.BOOT_NONE, **acc}


@pytest.fixture()
def holm_table():
    """M2 − M1 on T1: raw supported on balanced accuracy (p = 0.02) and raw not supported on accuracy
    (p = 0.03); with two more tests in the family, neither survives Holm. The probe: M1 clear, M2 not after Holm."""
    rows = [_pooled_row("M2 beats M1", "T1", "M2 − M1 (T1+T2+T3)", 0.02, 0.02, "supported", 0.03,
                        effect_acc=-0.01, acc_low=-0.02, acc_high=-0.001, p_value_acc=0.03,
                        verdict_acc="not supported", mde_acc=0.02),
            _pooled_row("M3 beats M2", "T2", "M3 − M2", 0.001, 0.6, "inconclusive", 0.012),
            _pooled_row(claims.PROBE_CLAIM, "T2", "M1 (T1+T2+T3) − LR probe", 0.05, 1e-6, "supported", 0.01),
            _pooled_row(claims.PROBE_CLAIM, "T2", "M2 − LR probe", 0.03, 0.02, "supported", 0.03)]
    return claims.adjust(pd.DataFrame(rows, columns=claims.COLUMNS))


def test_headline_lines_use_the_holm_verdicts_and_both_t1_metrics(holm_table, monkeypatch):
    from repro.report.summary import headline_markdown

    def no_recompute(*args, **kwargs):
        raise AssertionError("the headline recomputed the claims it was given")

    monkeypatch.setattr(claim_set, "claims_table", no_recompute)
    row = holm_table.iloc[0]
    assert (row.verdict, row.verdict_holm, row.verdict_acc, row.verdict_acc_holm) == (
        "supported", "inconclusive", "not supported", "inconclusive")
    empty = pd.DataFrame(columns=["stage", "name", "model", "p", "seed"])
    md = headline_markdown("synthetic", df=empty, claims=claim_set.ClaimSet(holm_table, "x"))
    line = next(x for x in md.splitlines() if x.startswith("- M2 beats M1"))
    assert "**inconclusive: smaller than 0.030** (raw: supported)" in line
    assert "on accuracy **inconclusive: smaller than 0.020** (raw: not supported) (≠ balanced accuracy)" in line
    assert "effect +0.020 [t: +0.001, +0.039]" in line and "paper +0.016" in line
    # the probe lines follow Holm too: M2's raw "supported" (p = 0.02 of 5 tests) is inconclusive after it
    assert "- T2 top-1 accuracy: beat the probe: M1 (T1+T2+T3); below it: none; inconclusive: M2" in md
    assert "Where T1's two metrics disagree:\n\n- M2 − M1 (T1+T2+T3) (M2 beats M1): balanced accuracy supported " \
           "(Holm: inconclusive), accuracy not supported (Holm: inconclusive)" in md
    assert "Here the family holds 5 tests: 4 claims on their task's metric and 1 T1 claims on accuracy" in md


def test_readme_table_one_row_per_comparison(holm_table):
    md = claims_view.compact_markdown(holm_table)
    lines = md.splitlines()
    assert lines[0] == ("| claim | A − B | T1 balanced accuracy | T1 accuracy | T2 top-1 | T3 BLEU (paper) | "
                        "paper (T1 acc / T2 / T3) |")
    m2 = next(x for x in lines if x.startswith("| M2 beats M1"))
    assert ("| +0.020 inconclusive: smaller than 0.030 (raw: supported) | -0.010 inconclusive: smaller than "
            "0.020 (raw: not supported) ≠ |  |  | +0.016 / – / – |") in m2
    assert "| M3 beats M2 | M3 − M2 |  |  | +0.001 inconclusive: smaller than 0.012 |" in md
    assert not any(x.startswith(f"| {claims.PROBE_CLAIM}") for x in lines)   # the probe: lines below the table
    assert "- T2 top-1 accuracy: beat the probe: M1 (T1+T2+T3);" in md


def test_claims_are_computed_once_and_read_back(synthetic, tmp_path, claims_table_calls):
    calls = claims_table_calls
    computed = claim_set.claims_for(synthetic)
    assert len(calls) == 1 and calls[0]["per_p"] is True
    assert len(computed.pooled) + len(computed.per_p) == len(computed.table)
    path = computed.save(tmp_path / claim_set.CLAIMS_FILE)
    back = claim_set.load_claims(path, synthetic)
    assert len(calls) == 1 and back.origin == claim_set.READ.format(name=claim_set.CLAIMS_FILE)
    pd.testing.assert_frame_equal(back.table.reset_index(drop=True), computed.table.reset_index(drop=True))
    # other results (one score changed) or no file: a clear error, never a silent mismatch
    other = synthetic.copy()
    other.loc[0, "T1_bacc"] += 0.01
    with pytest.raises(ConfigError, match="computed from other results"):
        claim_set.load_claims(path, other)
    with pytest.raises(ConfigError, match="no claims file"):
        claim_set.load_claims(tmp_path / "none.json", synthetic)
