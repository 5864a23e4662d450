"""Keyword table + rules (repro.data.labels): a full Kaggle download's unseen keywords prepare, are listed,
and ``--strict-keywords`` makes them one error (issue 10, item 1)."""

from __future__ import annotations

import json

import pytest
import torch

from repro.cli import main
from repro.data import labels as L
from repro.data.prepare import data_summary, prepare_data
from repro.errors import DataError
from synthetic_odir import csv_line, make_kaggle_odir

#: keywords of a full ODIR-5K download that the shared 90 % subset lacks: all in the table now
FULL_DOWNLOAD = {"suspected cataract": "C", "suspicious diabetic retinopathy": "D",
                 "suspected diabetic retinopathy": "D", "myopia retinopathy": "M", "myopic retinopathy": "M", "retinal detachment": "O",
                 "rhegmatogenous retinal detachment": "O", "vitreous opacity": "O", "asteroid hyalosis": "O",
                 "suspected abnormal color of  optic disc": "O", "wedge-shaped change": "O",
                 "punctate inner choroidopathy": "O", "suspected retinitis pigmentosa": "O"}

#: patient id -> (left, right) keyword texts never seen in the table, one or more per rule
UNSEEN = {
    "0": ("blurred image，normal fundus", "blurred image"),
    "1": ("suspicious pathological myopia", "suspected hypertensive vasculopathy"),
    "2": ("diabetic macular edema", "proliferative retinopathy with vitreous hemorrhage"),
    "3": ("neovascular glaucoma", "nuclear cataract"),
    "4": ("early macular degeneration", "hypertensive choroidopathy"),
    "5": ("high myopia", "retinal coloboma of unknown type"),
    "6": ("high myopia", "normal fundus"),
}

#: (keyword, count, category, rule) in report order: most frequent first, then alphabetical
EXPECTED = [
    ("blurred image", 2, None, "quality"),
    ("high myopia", 2, "M", "myopia"),
    ("diabetic macular edema", 1, "D", "diabetic"),
    ("early macular degeneration", 1, "A", "macular degeneration"),
    ("hypertensive choroidopathy", 1, "H", "hypertensive"),
    ("neovascular glaucoma", 1, "G", "glaucoma"),
    ("nuclear cataract", 1, "C", "cataract"),
    ("proliferative retinopathy with vitreous hemorrhage", 1, "D", "diabetic"),
    ("retinal coloboma of unknown type", 1, "O", "other"),
    ("suspected hypertensive vasculopathy", 1, "H", "suspected"),
    ("suspicious pathological myopia", 1, "M", "suspected"),
]


@pytest.fixture()
def unseen_odir(tmp_path):
    return make_kaggle_odir(tmp_path / "kaggle", n_patients=30, extra=UNSEEN)


def test_full_download_keywords_are_in_the_table():
    for kw, cat in FULL_DOWNLOAD.items():
        assert L.decide_keyword(kw) == (cat, L.TABLE), kw
    assert sum(c is not None for c in L.KEYWORD_TABLE.values()) >= 95   # the published vocabulary, ~100 keywords


def test_each_rule_in_order():
    assert L.decide_keyword("over-exposed photograph") == (None, "quality")
    assert L.decide_keyword("suspected retinal detachment") == ("O", "suspected")        # X from the table
    assert L.decide_keyword("suspicious neovascular glaucoma") == ("G", "suspected")     # X from the rules
    assert L.decide_keyword("Severe Non Proliferative Retinopathy, stage 3") == ("D", "diabetic")
    assert L.decide_keyword("hypertensive glaucoma") == ("G", "glaucoma")              # glaucoma before hypertensive
    assert L.decide_keyword("myopic cataract") == ("C", "cataract")                    # cataract before myopia
    assert L.decide_keyword("purple fundus") == ("O", "other")
    assert list(L.RULES) == ["quality", "suspected", "diabetic", "glaucoma", "cataract", "macular degeneration",
                             "hypertensive", "myopia", "other"]
    assert L.is_quality("blurred image") and not L.is_quality("high myopia")
    assert L.fine_label(["blurred image", "high myopia"]) == "high myopia"


def test_unseen_keywords_prepare_with_their_rule_categories(unseen_odir, tmp_path):
    prep = prepare_data(unseen_odir, profile="smoke", split_directory=tmp_path / "splits", with_images=False)
    m = prep.manifest.set_index("image")
    cats = {img: m.loc[img, "categories"] for img in
            ("0_left.jpg", "1_left.jpg", "1_right.jpg", "2_left.jpg", "2_right.jpg", "3_left.jpg", "3_right.jpg",
             "4_left.jpg", "4_right.jpg", "5_left.jpg", "5_right.jpg")}
    assert cats == {"0_left.jpg": "N", "1_left.jpg": "M", "1_right.jpg": "H", "2_left.jpg": "D", "2_right.jpg": "D",
                    "3_left.jpg": "G", "3_right.jpg": "C", "4_left.jpg": "A", "4_right.jpg": "H",
                    "5_left.jpg": "M", "5_right.jpg": "O"}
    assert m.loc["2_left.jpg", "coarse"] == "dr" and m.loc["4_left.jpg", "coarse"] == "amd"
    assert m.loc["3_right.jpg", "coarse"] == "other"
    # a quality-only eye is excluded as before; a quality phrase never enters the T2 class
    assert dict(zip(prep.excluded["image"], prep.excluded["reason"])) == {"0_right.jpg": "quality keywords only"}
    assert m.loc["0_left.jpg", "fine"] == "normal fundus"
    # an unseen keyword is its own raw T2 class, folded into other:<T1 class> when rare in the pool
    assert m.loc["3_left.jpg", "fine"] == "neovascular glaucoma"
    assert m.loc["3_left.jpg", "fine_class"] == "other:glaucoma"
    report = prep.info["keywords"]
    got = [(r["keyword"], r["count"], r["category"], r["rule"]) for r in report["by_rule"]]
    assert got == EXPECTED
    assert report["by_rule"][0]["first_line"] == csv_line(unseen_odir, "0_left.jpg")
    assert report["distinct_by_rule"] == 11 and report["occurrences_by_rule"] == 13 and report["unknown"] == 0
    assert report["occurrences_by_table"] == 60 - 13 + 1   # 0_left holds one rule keyword and one table keyword
    summary = data_summary(prep)
    assert summary["keywords"] == report
    assert any("11 diagnostic keyword(s) not in the keyword table were decided by rule" in w
               for w in summary["warnings"])


def test_strict_keywords_is_one_error_listing_them(unseen_odir, tmp_path):
    with pytest.raises(DataError) as e:
        prepare_data(unseen_odir, profile="smoke", split_directory=tmp_path / "s", with_images=False,
                     strict_keywords=True)
    msg = str(e.value)
    assert msg.startswith("11 diagnostic keyword(s) in ") and "full_df.csv" in msg
    for kw, n, _, rule in EXPECTED:
        assert f"{kw!r} ({n} image(s)" in msg and L.RULES[rule] in msg
    assert "Remove --strict-keywords" in msg and "KEYWORD_TABLE in repro/data/labels.py" in msg
    assert "\n" not in msg


def test_cli_data_summary_lists_rule_decided_keywords(unseen_odir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "out"))
    assert main(["data", "--data-root", str(unseen_odir), "--profile", "smoke", "--summary"]) == 0
    cap = capsys.readouterr()
    assert "keywords       5 by table (48 occurrences), 11 by rule (13 occurrences), unknown 0" in cap.out
    assert "  by rule: 'blurred image' x2 -> no label  (a quality phrase -> no label)" in cap.out
    assert "  by rule: 'suspicious pathological myopia' x1 -> M  (suspected/suspicious X -> the category of X)" \
        in cap.out
    assert "decided by rule" in cap.err   # the warning, also recorded by every training run

    assert main(["data", "--data-root", str(unseen_odir), "--profile", "smoke", "--no-images", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert [(r["keyword"], r["count"], r["category"], r["rule"]) for r in js["keywords"]["by_rule"]] == EXPECTED

    assert main(["data", "--data-root", str(unseen_odir), "--profile", "smoke", "--strict-keywords"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: 11 diagnostic keyword(s)")


def test_evaluate_lists_rule_decided_keywords(unseen_odir, tmp_path, monkeypatch, capsys):
    from repro.models.checkpoints import save_checkpoint
    from repro.models.mtlnet import MTLNet
    from repro.profiles import get_profile

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "out"))
    prof = get_profile("smoke")
    prep = prepare_data(unseen_odir, profile=prof, split_directory=tmp_path / "splits", with_images=False)
    torch.manual_seed(0)
    model = MTLNet(encoder=prof.encoder, tasks=("coarse", "fine", "caption"),
                   num_classes={"coarse": len(prep.coarse_classes), "fine": len(prep.fine_classes)},
                   vocab_size=len(prep.vocab), trainable=0, pretrained=False, taps=prof.taps, neck_hidden=16,
                   hidden=16, embed=8)
    ckpt = save_checkpoint(tmp_path / "untrained.pt", model, prep, extra={"profile": prof.to_dict()})
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data-root", str(unseen_odir), "--out", str(out),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "11 by rule (13 occurrences), unknown 0" in printed
    assert "  by rule: 'high myopia' x2 -> M  (names myopi... -> M)" in printed
    res = json.loads(out.read_text())
    assert [(r["keyword"], r["count"], r["category"], r["rule"]) for r in res["keywords"]["by_rule"]] == EXPECTED
    assert res["counts"]["images"] == 59

    assert main(["evaluate", "--checkpoint", str(ckpt), "--data-root", str(unseen_odir), "--out", str(out),
                 "--device", "cpu", "--strict-keywords"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'neovascular glaucoma' (1 image(s)" in err and "--strict-keywords" in err
