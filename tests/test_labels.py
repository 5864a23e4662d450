"""Keyword handling (repro.data.labels): splitting, canonical spelling, the keyword table, T1/T2/T3 labels."""

import pandas as pd
import pytest

from repro.data import labels as L
from repro.data.sources import patient_flag_agreement, patient_flag_table
from repro.errors import DataError
from repro.errors import ConfigError


def test_split_keywords_both_separators_and_whitespace():
    text = " Laser  Spot，moderate non proliferative retinopathy,lens dust，"
    assert L.split_keywords(text) == ["laser spot", "moderate non proliferative retinopathy", "lens dust"]
    assert L.split_keywords("") == []


def test_canonical_keyword_merges_spelling_variants():
    assert L.canonical_keyword("Moderate  non proliferative retinopathy") == "moderate nonproliferative retinopathy"
    assert L.canonical_keyword("mild nonproliferative retinopathy") == "mild nonproliferative retinopathy"
    assert L.canonical_keyword("optic disk epiretinal membrane") == "optic disc epiretinal membrane"


def test_keyword_categories_follow_design_rules():
    cat = L.keyword_category
    assert cat("normal fundus") == "N"
    assert cat("moderate non proliferative retinopathy") == "D"
    assert cat("proliferative diabetic retinopathy") == "D"
    assert cat("suspected glaucoma") == "G"
    assert cat("cataract") == "C"
    assert cat("wet age-related macular degeneration") == "A"
    assert cat("hypertensive retinopathy") == "H"
    assert cat("myopic maculopathy") == "M"
    assert cat("pathological myopia") == "M"
    assert cat("drusen") == "O"
    for q in L.QUALITY_KEYWORDS:
        assert cat(q) is None


def test_unknown_keyword_falls_to_the_rules():
    assert L.decide_keyword("purple fundus") == ("O", "other")
    assert L.keyword_category("suspicious optic disc edema", where="full_df.csv:line 7") == "O"
    assert L.decide_keyword("normal fundus") == ("N", L.TABLE)


def test_table_covers_every_keyword_of_the_real_csv(odir_root):
    df = pd.read_csv(odir_root / "full_df.csv", dtype=str, keep_default_na=False)
    seen = {k for col in ("Left-Diagnostic Keywords", "Right-Diagnostic Keywords")
            for text in df[col] for k in L.split_keywords(text)}
    missing = sorted(k for k in seen if L.canonical_keyword(k) not in L.KEYWORD_TABLE)
    assert not missing


def test_mapping_reproduces_patient_flags(odir_root):
    rate = patient_flag_agreement(odir_root)
    table = patient_flag_table(odir_root)
    print(f"patient-level N..O flag agreement: {rate:.4f} ({int(table['agree'].sum())}/{len(table)} patients)")
    assert len(table) == 2878
    assert rate >= 0.99  # measured: 1.0 on the shared subset


def test_coarse_label_priority():
    assert L.coarse_label("D,O") == "dr"
    assert L.coarse_label("N,D") == "dr"
    assert L.coarse_label(["A", "G"]) == "amd"
    assert L.coarse_label(["G", "O"]) == "glaucoma"
    assert L.coarse_label(["C", "N"]) == "other"
    assert L.coarse_label("N") == "normal"
    assert L.coarse_label("C,H", "odir8") == "cataract"
    assert L.coarse_label("M,O", "odir8") == "myopia"
    assert L.coarse_label("N", "odir8") == "normal"
    with pytest.raises(DataError):
        L.coarse_label("")
    with pytest.raises(ConfigError, match="paper5"):
        L.coarse_label("N", "paper6")


def test_fine_label_and_caption():
    kws = L.split_keywords("macular epiretinal membrane，lens dust，moderate non proliferative retinopathy")
    assert L.fine_label(kws) == "macular epiretinal membrane + moderate nonproliferative retinopathy"
    assert L.fine_label(["normal fundus", "normal fundus"]) == "normal fundus"
    assert L.fine_label(["lens dust"]) == ""
    assert L.caption_text("Laser spot，moderate non proliferative retinopathy,lens  dust") == \
        "laser spot, moderate non proliferative retinopathy, lens dust"
