"""Data set adapters (repro.data.sources): the real ODIR-5K manifest, the manifest CSV layout, bad input."""

import pandas as pd
import pytest

from repro.data.prepare import prepare_data
from repro.data.sources import MANIFEST_COLUMNS, load_dataset, load_manifest_csv, load_odir
from repro.errors import DataError


def test_real_manifest_one_row_per_image(odir_dataset, odir_root):
    m = odir_dataset.manifest
    assert list(m.columns) == list(MANIFEST_COLUMNS)
    assert odir_dataset.layout == "odir" and odir_dataset.name == "odir5k-n5503"
    assert len(m) + len(odir_dataset.excluded) == 5503
    assert m["image"].is_unique
    assert m["patient_id"].nunique() == 2878
    assert set(m["eye"]) == {"left", "right"}
    assert (m["image"] == m["patient_id"] + "_" + m["eye"] + ".jpg").all()
    assert set(m["coarse"]) == {"normal", "dr", "amd", "glaucoma", "other"}
    assert (m["fine"] != "").all() and (m["caption"] != "").all()
    row = m.set_index("image").loc["0_left.jpg"]
    assert (row["coarse"], row["fine"], row["categories"]) == ("other", "cataract", "C")
    row = m.set_index("image").loc["2_right.jpg"]
    assert row["fine"] == "moderate nonproliferative retinopathy"


def test_odir8_taxonomy(tiny_odir):
    m = load_odir(tiny_odir, taxonomy="odir8").manifest.set_index("image")
    assert m.loc["0_left.jpg", "coarse"] == "cataract"
    assert m.loc["0_right.jpg", "coarse"] == "normal"


def test_missing_image_names_file_and_row(tiny_odir):
    (tiny_odir / "preprocessed_images" / "5_left.jpg").unlink()
    with pytest.raises(DataError) as e:
        load_odir(tiny_odir)
    msg = str(e.value)
    assert "5_left.jpg" in msg and "full_df.csv:line" in msg and "skip" in msg
    ds = load_odir(tiny_odir, skip_bad_images=True)
    assert list(ds.bad_images["image"]) == ["5_left.jpg"]
    assert "5_left.jpg" not in set(ds.manifest["image"])


def test_csv_missing_column(tiny_odir):
    csv = tiny_odir / "full_df.csv"
    pd.read_csv(csv, dtype=str).drop(columns=["Left-Diagnostic Keywords"]).to_csv(csv, index=False)
    with pytest.raises(DataError) as e:
        load_dataset(tiny_odir)
    assert "full_df.csv" in str(e.value) and "'Left-Diagnostic Keywords'" in str(e.value)


def test_unknown_keyword_names_row(tiny_odir):
    csv = tiny_odir / "full_df.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    i = int((df["filename"] == "8_left.jpg").to_numpy().nonzero()[0][0])
    df.loc[i, "Left-Diagnostic Keywords"] = "normal fundus，purple fundus"
    df.to_csv(csv, index=False)
    ds = load_odir(tiny_odir)
    assert ds.manifest.set_index("image").loc["8_left.jpg", "categories"] == "N,O"
    assert ds.info["keywords"]["by_rule"] == [{"keyword": "purple fundus", "count": 1, "category": "O",
                                               "rule": "other", "means": "anything else -> O",
                                               "first_line": i + 2}]
    with pytest.raises(DataError) as e:
        load_odir(tiny_odir, strict_keywords=True)
    msg = str(e.value)
    assert f"'purple fundus' (1 image(s), first at line {i + 2}" in msg and "full_df.csv" in msg
    assert "KEYWORD_TABLE" in msg


def test_exclusion_keywords_go_to_excluded(tiny_odir):
    csv = tiny_odir / "full_df.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    df.loc[df["filename"] == "8_left.jpg", "Left-Diagnostic Keywords"] = "anterior segment image"
    df.loc[df["filename"] == "8_right.jpg", "Right-Diagnostic Keywords"] = "lens dust"
    df.to_csv(csv, index=False)
    ds = load_odir(tiny_odir)
    assert dict(zip(ds.excluded["image"], ds.excluded["reason"])) == {
        "8_left.jpg": "anterior segment image", "8_right.jpg": "quality keywords only"}
    assert not ({"8_left.jpg", "8_right.jpg"} & set(ds.manifest["image"]))


def test_filename_must_be_one_of_the_eyes(tiny_odir):
    csv = tiny_odir / "full_df.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    df.loc[0, "filename"] = "999_left.jpg"
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match="line 2.*neither Left-Fundus"):
        load_odir(tiny_odir)


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path)
    assert "full_df.csv" in str(e.value) and "manifest.csv" in str(e.value)


def test_manifest_csv_layout(tiny_odir, tmp_path):
    folder = tmp_path / "mydata"
    (folder / "img").mkdir(parents=True)
    odir = load_odir(tiny_odir).manifest
    rows = []
    for r in odir.itertuples():
        (folder / "img" / r.image).write_bytes(open(r.path, "rb").read())
        rows.append({"image": f"img/{r.image}", "patient_id": r.patient_id, "coarse": r.coarse,
                     "fine": r.fine, "caption": r.caption})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    ds = load_dataset(folder)
    assert ds.layout == "manifest" and ds.name == "mydata"
    assert len(ds.manifest) == len(odir)
    assert ds.manifest["path"].iloc[0] == str(folder / "img" / odir["image"].iloc[0])
    prep = prepare_data(folder, profile="smoke", split_directory=tmp_path / "splits", with_images=False)
    assert prep.layout == "manifest" and prep.split_file.name == f"{prep.data_identity}_seed0_n240.csv"
    assert prep.data_identity.startswith(f"mydata-n{len(odir)}-")  # named by content, not only the folder
    assert set(prep.coarse_classes) == set(odir["coarse"])

    pd.DataFrame(rows).drop(columns=["fine"]).to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(DataError, match=r"manifest.csv.*\['fine'\]"):
        load_manifest_csv(folder / "manifest.csv")
