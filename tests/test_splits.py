"""Patient-level, stratified, nested splits (repro.data.splits) and the data facade (repro.data) on the real data."""

import numpy as np
import pandas as pd
import pytest

from repro.names import P_VALUES
from repro.data import splits as S
from repro.data.prepare import data_summary, prepare_data
from repro.data.sources import Dataset
from repro.errors import DataError
from repro.errors import ConfigError


@pytest.fixture(scope="module")
def real_split(odir_dataset):
    return S.make_split(odir_dataset.manifest, seed=0)


def test_patients_never_cross_splits(real_split, odir_dataset):
    assert len(real_split) == len(odir_dataset.manifest)
    per_patient = real_split.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()  # hence both eyes of a patient share a split
    both = real_split.groupby("patient_id").filter(lambda g: len(g) == 2)
    assert both.groupby("patient_id")["split"].nunique().max() == 1
    assert both.groupby("patient_id")["p_min"].nunique(dropna=False).max() == 1


def test_split_sizes_and_stratification(real_split):
    pats = real_split.drop_duplicates("patient_id")
    n = len(pats)
    counts = pats["split"].value_counts()
    assert counts["test"] == round(0.15 * n) and counts["val"] == round(0.15 * n)
    assert counts["train"] == n - 2 * round(0.15 * n)
    share = pd.crosstab(real_split["coarse"], real_split["split"], normalize="columns")
    assert (share.max(axis=1) - share.min(axis=1)).max() < 0.03


def test_fractions_nested_and_sized(real_split):
    n = real_split["patient_id"].nunique()
    prev = set()
    for p in P_VALUES:
        lab = S.labeled_images(real_split, p)
        pats = set(lab["patient_id"])
        assert prev <= pats
        expected = real_split.loc[real_split["split"] == "train", "patient_id"].nunique() if p == 70 \
            else round(p / 100 * n)
        assert len(pats) == expected
        prev = pats
    assert real_split.loc[real_split["split"] != "train", "p_min"].isna().all()
    all_u = S.unlabeled_images(real_split, 15, "all")
    rest = S.unlabeled_images(real_split, 15, "rest")
    assert len(all_u) == (real_split["split"] == "train").sum()
    assert set(rest["image"]) == set(all_u["image"]) - set(S.labeled_images(real_split, 15)["image"])


def test_split_file_is_stable_and_reused(odir_dataset, tmp_path, monkeypatch):
    a, path = S.load_or_make_split(odir_dataset, seed=0, directory=tmp_path / "a")
    b, path_b = S.load_or_make_split(odir_dataset, seed=0, directory=tmp_path / "b")
    assert path.name == "odir5k-n5503_seed0.csv"
    assert path.read_bytes() == path_b.read_bytes() and S.split_hash(path) == S.split_hash(path_b)
    h = S.split_hash(path)
    monkeypatch.setattr(S, "make_split", lambda *a, **k: pytest.fail("the saved split was not reused"))
    again, _ = S.load_or_make_split(odir_dataset, seed=0, directory=tmp_path / "a")
    assert S.split_hash(path) == h
    pd.testing.assert_frame_equal(again, a)
    assert list(a["image"]) == list(odir_dataset.manifest["image"])


def test_subsample_and_mismatch(odir_dataset, tmp_path):
    sub, path = S.load_or_make_split(odir_dataset, seed=0, max_patients=240, directory=tmp_path)
    assert path.name == "odir5k-n5503_seed0_n240.csv" and sub["patient_id"].nunique() == 240
    S.load_or_make_split(odir_dataset, seed=0, max_patients=240, directory=tmp_path)
    m = odir_dataset.manifest
    fewer = Dataset(manifest=m[m["image"] != sub["image"].iloc[0]], excluded=odir_dataset.excluded,
                    bad_images=odir_dataset.bad_images, root=odir_dataset.root, layout="odir", name="odir5k-n5503")
    # fewer images are another data set (by content): a split file of its own, the first one untouched
    before = path.read_bytes()
    _, other = S.load_or_make_split(fewer, seed=0, max_patients=240, directory=tmp_path)
    assert other != path and other.name == f"{S.data_identity(fewer.manifest, 'odir5k')}_seed0_n240.csv"
    assert path.read_bytes() == before
    with pytest.raises(DataError) as e:  # a split file that no longer fits its data is still refused
        S.check_split_matches(sub, fewer.manifest, path, max_patients=240)
    assert str(path) in str(e.value) and "Delete" in str(e.value)


def test_bad_p_is_config_error(real_split):
    with pytest.raises(ConfigError) as e:
        S.labeled_images(real_split, 20)
    assert "p=20" in str(e.value) and "[15, 30, 45, 60, 70]" in str(e.value)
    with pytest.raises(ConfigError):
        S.unlabeled_images(real_split, 15, mode="some")


def test_empty_split_is_data_error(real_split):
    no_train = real_split[real_split["split"] != "train"]
    with pytest.raises(DataError, match="L_15 is empty"):
        S.labeled_images(no_train, 15)
    with pytest.raises(DataError, match="empty"):
        S.unlabeled_images(real_split, 70, mode="rest")
    tiny = real_split[real_split["patient_id"].isin(["0", "4"])].assign(categories="")
    with pytest.raises(DataError, match="too few"):
        S.make_split(tiny, seed=0)


def test_prepare_data_smoke_on_real_data(tmp_path):
    prep = prepare_data(profile="smoke", split_directory=tmp_path, with_images=False)
    m = prep.manifest
    assert m["patient_id"].nunique() == 240
    assert prep.captions.shape == (len(m), 15) and prep.captions.dtype == np.int64
    assert set(m["coarse_idx"]) <= set(range(len(prep.coarse_classes)))
    assert list(prep.fine_classes) == sorted(prep.fine_classes)
    pool_counts = m.loc[m["split"] == "train", "fine_class"].value_counts()
    unfolded = [c for c in pool_counts.index if not c.startswith("other:")]
    assert pool_counts[unfolded].min() >= 3  # smoke: t2_min_count = 3
    l15 = prep.indices("train", p=15)
    assert set(l15) <= set(prep.indices("train")) and set(prep.indices(unlabeled=("rest", 15))).isdisjoint(l15)
    assert len(prep.indices(unlabeled=("all", 15))) == len(prep.indices("train"))
    s = data_summary(prep)
    assert s["images_kept"] == len(m) and sum(v["images"] for v in s["splits"].values()) == len(m)
    assert s["per_p"]["70"]["images"] == s["splits"]["train"]["images"]
    with pytest.raises(ConfigError):
        prep.indices("val", p=15)


def test_split_does_not_depend_on_taxonomy(odir_root, real_split):
    from repro.data.sources import load_odir

    odir8 = S.make_split(load_odir(odir_root, taxonomy="odir8").manifest, seed=0)
    assert S.split_to_csv(odir8) == S.split_to_csv(real_split)
    assert S.split_to_csv(S.make_split(load_odir(odir_root).manifest, seed=1)) != S.split_to_csv(real_split)


def test_committed_split_is_regenerated_byte_for_byte(odir_dataset, tmp_path):
    """A fresh split of the reference data is the committed file, byte for byte (guards refactors)."""
    from repro.paths import split_dir

    _, path = S.load_or_make_split(odir_dataset, seed=0, directory=tmp_path)
    assert path.read_bytes() == (split_dir() / "odir5k-n5503_seed0.csv").read_bytes()
