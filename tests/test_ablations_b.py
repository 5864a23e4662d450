"""Ablations 4, 6 and 7: transfer runners and the image-level split on smoke, label savings on known curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from repro.data.splits import image_level_split, make_split
from repro.names import ABLATION_STAGE, P_VALUES
from repro.report.ablation_curves import (label_savings, label_savings_view, leakage_view, p_prime, p_prime_label,
                                          plot_label_savings)


def _manifest(n_patients=200, seed=0):
    rng = np.random.default_rng(seed)
    classes = np.array(["normal", "dr", "amd", "glaucoma", "other"])
    rows = [{"image": f"{i}_{eye}.jpg", "patient_id": str(i), "coarse": str(rng.choice(classes, p=[.45, .25, .1, .1, .1]))}
            for i in range(n_patients) for eye in ("left", "right")]
    return pd.DataFrame(rows)


def _patients_in(df, split):
    return set(df.loc[df["split"] == split, "patient_id"])


def test_image_level_split_puts_patients_in_train_and_test_the_patient_split_never():
    patient = make_split(_manifest(), seed=0)
    image = image_level_split(patient, seed=0)
    assert not _patients_in(patient, "train") & _patients_in(patient, "test")
    assert not _patients_in(patient, "val") & _patients_in(patient, "test")
    assert len(_patients_in(image, "train") & _patients_in(image, "test")) >= 1
    assert list(image["image"]) == list(patient["image"])            # same images, same order
    assert image["split"].value_counts()["test"] == round(0.15 * len(image))
    for p, q in zip(P_VALUES, P_VALUES[1:]):                          # nested L15 ⊂ … ⊂ L70, by image
        lp = set(image.loc[image["p_min"].fillna(999) <= p, "image"])
        assert lp < set(image.loc[image["p_min"].fillna(999) <= q, "image"])
    assert image.equals(image_level_split(patient, seed=0))           # deterministic


def test_leakage_runner_on_smoke_writes_both_splits_and_leaves_the_split_file(smoke_ctx):
    from repro.experiments.ablations.leakage import SPLIT_FOLDER, run_leakage

    committed = smoke_ctx.prepared.split_file.read_bytes()
    out = run_leakage(smoke_ctx, subset="T1", progress=False)
    assert smoke_ctx.prepared.split_file.read_bytes() == committed
    img = json.loads(smoke_ctx.result_path(ABLATION_STAGE, "leakage-image").read_text())
    pat = json.loads(smoke_ctx.result_path(ABLATION_STAGE, "leakage-patient").read_text())
    assert img["split_hash"] != pat["split_hash"] == smoke_ctx.prepared.split_hash
    assert SPLIT_FOLDER in img["data"]["split_file"]
    assert pat["params"]["test_images_with_patient_in_train"] == 0.0
    assert img["params"]["test_images_with_patient_in_train"] > 0
    assert img["params"]["patients_in_train_and_test"] >= 1 and img["params"]["unit"] == "image"
    d = out["image_minus_patient"]["coarse"]["balanced_accuracy"]
    assert d == pytest.approx(img["metrics"]["test"]["coarse"]["balanced_accuracy"]
                              - pat["metrics"]["test"]["coarse"]["balanced_accuracy"])


def test_transfer_runner_on_smoke_records_what_was_trained(smoke_ctx):
    from repro.experiments.ablations.transfer import TRANSFER_SETTINGS, run_transfer

    out = run_transfer(smoke_ctx, progress=False)
    s = TRANSFER_SETTINGS["smoke"]
    assert sorted(out["runs"]) == sorted(f"transfer-{i}-{m}" for i in ("imagenet", "random") for m in ("m1", "m3"))
    n_pool = len(smoke_ctx.indices("train"))
    for name in out["runs"]:
        res = json.loads(smoke_ctx.result_path(ABLATION_STAGE, name).read_text())
        prm = res["params"]
        assert prm["trainable"] == "all" and prm["frozen_stages"] == []
        assert prm["trained_stages"][0] == "stem" and prm["trained_stages"][-1] == "head"
        assert prm["image_size"] == s["image_size"] == res["profile_settings"]["image_size"]
        assert prm["encoder_params_trained"] > 3_000_000                 # the whole EfficientNet-Lite0
        assert (prm["encoder_weights"] == "random") == (prm["init"] == "random")
        if prm["model"] == "m3":
            assert prm["init_from"] == f"{ABLATION_STAGE}-{name[:-1]}1" and res["data"]["n_train"] == n_pool
            assert prm["epochs"] == s["kd_max_epochs"] and res["tasks"] == ["coarse", "fine"]
        else:
            assert prm["epochs"] == s["max_epochs"] == res["max_epochs"]


CURVE = ((15, 30, 45, 60, 70), (0.40, 0.50, 0.45, 0.60, 0.70))


@pytest.mark.parametrize("score, expected", [
    (0.45, (22.5, "=")),    # between 15 and 30
    (0.55, (55.0, "=")),    # first crossing after the dip at 45
    (0.70, (70.0, "=")),    # reached exactly at the last p
    (0.40, (15.0, "=")),
    (0.35, (15.0, "<")),    # single-task M1 already does better at 15
    (0.80, (70.0, ">")),    # never reached: no extrapolation
])
def test_p_prime_known_answers(score, expected):
    value, rel = p_prime(*CURVE, score)
    assert (value, rel) == (pytest.approx(expected[0]), expected[1])


def test_p_prime_labels_and_missing_points():
    assert p_prime_label(*p_prime(*CURVE, 0.35)) == "< 15"
    assert p_prime_label(*p_prime(*CURVE, 0.8)) == "> 70"
    assert p_prime_label(22.5, "=") == "22.5"
    assert p_prime((15, 30, 45), (0.4, float("nan"), 0.6), 0.5) == (pytest.approx(30.0), "=")
    v, rel = p_prime((), (), 0.5)
    assert math.isnan(v) and rel == ""


def _frame(rows):
    return pd.DataFrame(rows, columns=["stage", "name", "p", "seed", "T1_bacc", "T1_acc"])


def test_label_savings_table_on_a_synthetic_study():
    rows = [("m1", "T1", p, s, v + 0.01 * (s - 0.5), v) for p, v in zip(*CURVE) for s in (0, 1)]
    rows += [("m3", "ensemble", 15, s, 0.45, 0.9) for s in (0, 1)] + [("m3", "ensemble", 30, 0, 0.3, 0.3)]
    t = label_savings(_frame(rows), models={"M3+ensemble": ("m3", "ensemble")}).set_index("p")
    assert t.loc[15, "p_prime"] == pytest.approx(22.5) and t.loc[15, "labels_saved"] == pytest.approx(-7.5)
    assert t.loc[15, "seeds"] == 2 and t.loc[30, "p_prime_label"] == "< 15"
    acc = label_savings(_frame(rows), "T1_acc", models={"M3+ensemble": ("m3", "ensemble")}).set_index("p")
    assert acc.loc[15, "p_prime_label"] == "> 70" and math.isnan(acc.loc[15, "labels_saved"])
    fig = plot_label_savings(t.reset_index().assign(model="M3+ensemble"))
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("paper's claim" in s for s in labels) and any("y = x" in s for s in labels)


def test_label_savings_view_says_what_is_missing(tmp_path):
    v = label_savings_view(tmp_path)
    assert v.effect["complete"] is False and "every p" in v.finding and v.table.empty
    assert {r["model"] for r in v.effect["paper"]} >= {"M3+ensemble"}   # the paper's own numbers are always there


def _write(folder, name, p, seed, bacc):
    d = folder / f"p{p}" / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    res = {"stage": ABLATION_STAGE, "name": name, "p": p, "seed": seed, "params": {},
           "metrics": {"test": {"coarse": {"balanced_accuracy": bacc, "accuracy": bacc}, "fine": {"top1": 0.5}}}}
    (d / f"{ABLATION_STAGE}-{name}.json").write_text(json.dumps(res))


def test_leakage_effect_is_paired_by_seed_per_p(tmp_path):
    from repro.report.claims import t_interval

    diffs = {0: 0.05, 1: 0.03, 2: 0.07}
    for s, dlt in diffs.items():
        _write(tmp_path, "leakage-patient", 15, s, 0.4 + 0.1 * s)
        _write(tmp_path, "leakage-image", 15, s, 0.4 + 0.1 * s + dlt)
    rec = [r for r in leakage_view(tmp_path).effect["image_minus_patient"] if r["metric"] == "T1 bacc"]
    mean, lo, hi = t_interval(list(diffs.values()))
    assert len(rec) == 1 and rec[0]["n_pairs"] == 3 and rec[0]["p"] == 15
    assert (rec[0]["effect"], rec[0]["ci_low"], rec[0]["ci_high"]) == (pytest.approx(mean), pytest.approx(lo),
                                                                         pytest.approx(hi))
    assert rec[0]["verdict"] == "supported"


def test_bad_transfer_init_and_too_small_image_split_are_clear_errors(smoke_ctx):
    from repro.errors import ConfigError, DataError
    from repro.experiments.ablations.transfer import transfer_context

    with pytest.raises(ConfigError, match=r"transfer init 'scratch' is not one of \['imagenet', 'random'\]"):
        transfer_context(smoke_ctx, "scratch")
    tiny = _manifest(n_patients=1).assign(split="train", p_min=15)
    with pytest.raises(DataError, match="2 images are too few for a test/val/train split"):
        image_level_split(tiny, seed=0)
    with pytest.raises(DataError, match="lists image '0_left.jpg' twice"):
        image_level_split(pd.concat([tiny, tiny.iloc[:1]]), seed=0)
