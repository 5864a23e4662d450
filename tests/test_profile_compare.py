"""Two profiles side by side (issue 18): the claims on each over their common p, the changed verdicts,
each model's gain with its paired interval, and the file a report build hands to notebook 06."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repro.analysis.stats import weighted_score
from repro.errors import ConfigError
from repro.report import profile_compare as pc
from repro.report import results as results_mod

LABELS = ("quick", "finetune")


def _row(stage, name, p, seed, t1=np.nan, t2=np.nan, t3=np.nan, acc=np.nan, f1=np.nan):
    return {"stage": stage, "name": name, "p": p, "seed": seed, "T1_bacc": t1, "T1_acc": acc, "T1_f1": f1,
            "T2_top1": t2, "T3_bleu": t3, "tau_task": None, "tau": np.nan}


def _profile(mtl_gain, ps=(15, 70), offset=0.0):
    """M1 {T1} and M1 {T1,T2,T3} at ``ps`` and seeds 0-2: MTL − single-task on T1 is ``mtl_gain`` plus
    seed noise of ±0.002; every score is raised by ``offset`` (the other profile)."""
    rows = []
    for p in ps:
        for seed in (0, 1, 2):
            noise = 0.002 * (seed - 1)
            rows.append(_row("m1", "T1", p, seed, t1=0.50 + offset, acc=0.55 + offset, f1=0.45 + offset))
            rows.append(_row("baseline", "probe", p, seed, t1=0.48, acc=0.5, t2=0.5))
            rows.append(_row("m1", "T1+T2+T3", p, seed, t1=0.50 + offset + mtl_gain + noise,
                             acc=0.55 + offset + mtl_gain + noise, f1=0.45 + offset + 0.01 * seed,
                             t2=0.5, t3=0.4))
    return pd.DataFrame(rows)


def test_common_ps_and_the_claims_side_by_side_mark_a_changed_verdict():
    quick = _profile(0.0, ps=(15, 30, 70))
    fine = _profile(0.05, offset=0.04)
    assert pc.common_ps(quick, fine) == [15, 70]
    comp = pc.compare_profiles(quick, fine, LABELS, n_boot=200)
    assert comp.ps == (15, 70)
    row = comp.claims[(comp.claims["comparison"] == "M1 (T1+T2+T3) − M1 (T1)")
                      & (comp.claims["metric"] == "balanced accuracy")].iloc[0]
    assert row["quick: effect"] == "+0.000" and row["quick: verdict (Holm)"].startswith("inconclusive")
    assert row["finetune: effect"] == "+0.050" and row["finetune: verdict (Holm)"] == "supported"
    assert row["verdict"] == pc.CHANGED
    # T1 is compared on accuracy too; a claim neither profile has pairs for is not a row
    acc = comp.claims[(comp.claims["comparison"] == "M1 (T1+T2+T3) − M1 (T1)") & (comp.claims["metric"] == "accuracy")]
    assert len(acc) == 1 and acc.iloc[0]["verdict"] == pc.CHANGED
    assert not comp.claims["comparison"].str.startswith("M3").any()
    assert len(comp.changed()) == 2
    # the rows against the LR probe are the report's, not the README's table of the paper's claims
    probe = comp.claims[comp.claims["claim"] == "beats the LR probe"]
    assert list(probe["metric"]) == ["balanced accuracy", "accuracy", "top-1 accuracy"]
    md = comp.markdown()
    assert "2 of 2 verdicts change" in md and "| M1 (T1+T2+T3) − M1 (T1) | T1 balanced accuracy |" in md
    assert "| beats the LR probe |" not in md


def test_model_gains_are_paired_by_p_and_seed_with_a_t_interval_without_per_image_predictions():
    quick, fine = _profile(0.0, ps=(15, 30, 70)), _profile(0.0, offset=0.04)
    gains = pc.model_gains(pc.at_ps(quick, [15, 70]), fine, LABELS, n_boot=200)
    g = gains[(gains["model"] == "M1 (T1)") & (gains["p"] == 70) & (gains["metric"] == "T1 bacc")].iloc[0]
    assert g["pairs"] == 3 and g["quick"] == pytest.approx(0.50) and g["finetune"] == pytest.approx(0.54)
    assert g["gain"] == pytest.approx(0.04) and g["interval"] == "t over seeds"
    f1 = gains[(gains["model"] == "M1 (T1+T2+T3)") & (gains["p"] == 15) & (gains["metric"] == "T1 macro-F1")].iloc[0]
    assert f1["gain"] == pytest.approx(0.04)
    assert set(gains["p"]) == {15, 70}
    # T2 and T3 gains are 0 for the 3-task model; a model without a metric has no row for it
    t2 = gains[(gains["model"] == "M1 (T1+T2+T3)") & (gains["metric"] == "T2 top-1")]
    assert list(t2["gain"]) == [pytest.approx(0.0)] * 2
    assert gains[(gains["model"] == "M1 (T1)") & (gains["metric"] == "T2 top-1")].empty
    pivot = pc.gains_pivot(gains, LABELS)
    assert list(pivot.columns) == ["model", "p", "T1 bacc", "T1 acc", "T1 macro-F1", "T2 top-1", "T3 BLEU"]
    assert pivot.iloc[0]["T1 bacc"].startswith("0.500 → 0.540 (+0.040 [")


def _per_image(extra: float, n_patients: int = 60) -> pd.DataFrame:
    """M1 {T1,T2,T3} at p = 70, seeds 0-2, each seed its own test patients (two eyes): right on a seeded
    half of the patients, plus a share ``extra`` of the others; scores recomputed from the predictions."""
    rows = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        pats = np.repeat([f"s{seed}-{i}" for i in range(n_patients)], 2)
        true = np.repeat(rng.integers(0, 3, n_patients), 2)
        ok = np.repeat(rng.random(n_patients) < 0.5, 2) | np.repeat(np.random.default_rng(99 + seed).random(
            n_patients) < extra, 2)
        pred = np.where(ok, true, (true + 1) % 3)
        data = {"true": true, "pred": pred}
        row = _row("m1", "T1+T2+T3", 70, seed, t1=weighted_score("balanced_accuracy", data, np.ones(len(true))),
                   acc=weighted_score("accuracy", data, np.ones(len(true))))
        row["result"] = {"test_predictions": {"image": [f"{p}_{i % 2}" for i, p in enumerate(pats)],
                                              "patient_id": list(pats),
                                              "coarse": {"true": true.tolist(), "pred": pred.tolist()}}}
        rows.append(row)
    return pd.DataFrame(rows)


def test_a_gain_uses_the_paired_patient_bootstrap_where_predictions_are_stored():
    quick, fine = _per_image(0.0), _per_image(0.4)
    gains = pc.model_gains(quick, fine, LABELS, n_boot=400)
    g = gains[gains["metric"] == "T1 bacc"].iloc[0]
    assert g["interval"] == "bootstrap (seeds + test patients)"
    assert g["gain"] == pytest.approx(g["finetune"] - g["quick"]) and g["gain"] > 0.1
    assert 0 < g["low"] < g["gain"] < g["high"] and g["verdict"] == "supported"
    same = pc.model_gains(quick, quick, LABELS, n_boot=400)
    assert same[same["metric"] == "T1 bacc"].iloc[0]["verdict"] == "inconclusive"


def test_save_load_round_trip_and_a_stale_file_is_one_clear_error(tmp_path):
    quick, fine = _profile(0.0), _profile(0.05, offset=0.04)
    comp = pc.compare_profiles(quick, fine, LABELS, n_boot=200)
    path = comp.save(tmp_path / pc.COMPARISON_FILE)
    back = pc.load_comparison(path, fine)
    pd.testing.assert_frame_equal(back.claims, comp.claims)
    pd.testing.assert_frame_equal(back.gains, comp.gains, check_dtype=False)
    assert back.labels == LABELS and back.ps == (15, 70)
    with pytest.raises(ConfigError, match="computed from other results"):
        pc.load_comparison(path, _profile(0.05, offset=0.05))
    with pytest.raises(ConfigError, match="no profile comparison"):
        pc.load_comparison(tmp_path / "missing.json", fine)


def test_against_base_reads_quick_beside_the_folder_and_is_none_where_it_does_not_apply(tmp_path, monkeypatch):
    quick, fine = _profile(0.0, ps=(15, 30, 70)), _profile(0.05, offset=0.04)
    read = []

    def fake_load(profile, results_root=None, results_dir=None):
        read.append((profile, results_dir))
        return quick if profile == pc.BASE_PROFILE else pd.DataFrame()

    monkeypatch.setattr(results_mod, "load_results", fake_load)
    folder = tmp_path / "finetune"
    assert pc.against_base("quick", tmp_path / "quick", quick) is None and not read
    assert pc.against_base("finetune", folder, pd.DataFrame()) is None and not read
    comp = pc.against_base("finetune", folder, fine)
    assert read == [("quick", tmp_path / "quick")] and comp.labels == ("quick", "finetune") and comp.ps == (15, 70)
    assert pc.against_base("finetune", folder, _profile(0.05, ps=(45,))) is None   # no shared p


def test_settings_differences_name_what_besides_the_encoder_differs():
    from repro.report.profile_compare import settings_differences

    diff = settings_differences("quick", "finetune")
    assert diff["trainable"] == (0, 2) and diff["caption_max_epochs"] == (6, None) and "name" not in diff
    assert "lr" not in diff and settings_differences("quick", "quick") == {}
    assert settings_differences("quick", "no-such-profile") == {}
