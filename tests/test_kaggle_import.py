"""``data --from-kaggle``: the reference subset rebuilt from a synthetic Kaggle download made of real images.

The "download" holds 30 reference patients (the table shuffled, nested one folder down, beside a
decoy ``ODIR-5K/Training Images/``), a repeated table row and an extra patient; the second one also
512 px images, an exact duplicate, a missing file, a flipped image and an edited table row.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from repro.cli import main
from repro.data import kaggle as K
from repro.data.sources import load_dataset
from repro.data.splits import data_identity
from repro.errors import DataError
from repro.io import process_tag
from tiny_odir import make_tiny_odir

N_PATIENTS = 30


EXTRA_ID = "999999"


UPSCALED = ("0_right", "4_left", "5_right", "6_left", "11_right")


DUPLICATE = ("7_right", "7_left")  # the download's 7_left is a copy of its 7_right (first in the reference order)


NO_FILE = "8_left"


FLIPPED = "9_right"


EDITED_ROW = "10_left"


@pytest.fixture(scope="module")
def reference(odir_root, tmp_path_factory) -> tuple[Path, tuple[pd.DataFrame, dict]]:
    """A reference folder of the first 30 patients of the real data, and its key list and meta data."""
    table = pd.read_csv(odir_root / "full_df.csv", dtype=str, keep_default_na=False)
    patients = tuple(table["ID"].drop_duplicates()[:N_PATIENTS])
    ref = make_tiny_odir(odir_root, tmp_path_factory.mktemp("ref") / "odir5k", patients)
    return ref, K.reference_rows(ref)


def _key_name(key: str) -> str:
    return f"{key}.jpg"


def make_download(ref: Path, dest: Path, damaged: bool) -> Path:
    """A Kaggle-like download of the reference folder ``ref`` in ``dest`` (see the module doc)."""
    root = dest / "archive"
    img = root / "preprocessed_images"
    img.mkdir(parents=True)
    table = pd.read_csv(ref / "full_df.csv", dtype=str, keep_default_na=False)
    for name in table["filename"]:
        shutil.copyfile(ref / "preprocessed_images" / name, img / name)
    decoy = root / "ODIR-5K" / "Training Images"
    decoy.mkdir(parents=True)
    Image.new("RGB", (600, 400), (200, 90, 40)).save(decoy / table["filename"].iloc[0])
    extra = table.iloc[:2].copy()  # patient EXTRA_ID: two rows, images copied from a reference patient
    for i, eye in enumerate(("left", "right")):
        name = f"{EXTRA_ID}_{eye}.jpg"
        shutil.copyfile(img / table["filename"].iloc[i], img / name)
        extra.iloc[i, list(extra.columns).index("filename")] = name
    extra["ID"], extra["Left-Fundus"], extra["Right-Fundus"] = EXTRA_ID, f"{EXTRA_ID}_left.jpg", f"{EXTRA_ID}_right.jpg"
    rows = pd.concat([table.sample(frac=1.0, random_state=0), extra, table.iloc[[3]]], ignore_index=True)
    if damaged:
        for key in UPSCALED:
            with Image.open(img / _key_name(key)) as im:
                big = im.resize((512, 512), Image.Resampling.BICUBIC)
            big.save(img / _key_name(key), quality=95)
        shutil.copyfile(img / _key_name(DUPLICATE[0]), img / _key_name(DUPLICATE[1]))
        (img / _key_name(NO_FILE)).unlink()
        with Image.open(img / _key_name(FLIPPED)) as im:
            ImageOps.mirror(im).save(img / _key_name(FLIPPED))
        edited = rows["filename"] == _key_name(EDITED_ROW)
        rows.loc[edited, "Left-Diagnostic Keywords"] += "，lens dust"
    rows.to_csv(root / "full_df.csv", index=False)
    return dest


def table_key(ref: Path, i: int) -> str:
    """The key (``<id>_<eye>``) of row ``i`` of the reference table."""
    return pd.read_csv(ref / "full_df.csv", dtype=str)["filename"].iloc[i].removesuffix(".jpg")


def _identity(folder: Path) -> str:
    ds = load_dataset(folder)
    return data_identity(ds.manifest, ds.name)


def test_exact_download_rebuilds_the_reference(reference, tmp_path):
    ref, keys_meta = reference
    keys = keys_meta[0]
    download = make_download(ref, tmp_path / "download", damaged=False)
    out = tmp_path / "data"
    stale = tmp_path / f".data.{process_tag(999999999)}.tmp"  # the temp folder of an import that was killed
    foreign = tmp_path / ".data.999999999@another-host.tmp"    # one of another host: its pid is not ours to check
    for q in (stale, foreign):
        (q / "preprocessed_images").mkdir(parents=True)
    rep = K.import_kaggle(download, out, reference=keys_meta)
    assert not stale.exists() and foreign.exists()
    shutil.rmtree(foreign)

    assert rep.download == (download / "archive").resolve()
    assert rep.exact and rep.table_identical
    assert rep.missing == [] and rep.rows_differ == [] and rep.duplicate_images == []
    assert rep.count(K.IDENTICAL) == len(keys) and {w["action"] for w in rep.written} == {"copied"}
    repeated = table_key(ref, 3)
    assert [(d["key"], d["line"] - d["same_as_line"] > 0) for d in rep.duplicate_rows] == [(repeated, True)]
    assert rep.not_in_reference == 2  # the extra patient's two rows
    written = sorted(p.name for p in (out / "preprocessed_images").iterdir())
    assert written == sorted(f"{p}_{e}.jpg" for p, e in zip(keys["patient_id"], keys["eye"]))
    assert all((out / "preprocessed_images" / n).read_bytes() == (ref / "preprocessed_images" / n).read_bytes()
               for n in written)
    assert (out / "full_df.csv").read_bytes() == (ref / "full_df.csv").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["full_df.csv", K.IMPORT_REPORT, "preprocessed_images"]
    assert rep.identity == _identity(out) == _identity(ref)


def test_damaged_download_is_reported_image_by_image(reference, tmp_path):
    ref, keys_meta = reference
    keys = keys_meta[0]
    out = tmp_path / "data"
    rep = K.import_kaggle(make_download(ref, tmp_path / "download", damaged=True), out, reference=keys_meta)

    missing = {m["key"]: m["reason"] for m in rep.missing}
    assert missing == {DUPLICATE[1]: f"file identical to {DUPLICATE[0]} (exact duplicate)",
                       NO_FILE: f"image file preprocessed_images/{NO_FILE}.jpg missing"}
    assert rep.duplicate_images == [{"key": DUPLICATE[1], "same_as": DUPLICATE[0]}]
    match = {w["key"]: w["match"] for w in rep.written}
    assert len(match) == len(keys) - 2
    assert {k for k, m in match.items() if m == K.SAME_PICTURE} == set(UPSCALED)
    assert {k for k, m in match.items() if m == K.DIFFERENT} == {FLIPPED}
    assert rep.count(K.IDENTICAL) == len(keys) - 2 - len(UPSCALED) - 1
    assert {w["key"] for w in rep.written if w["action"] == "resized"} == set(UPSCALED)
    for key in UPSCALED:
        with Image.open(out / "preprocessed_images" / _key_name(key)) as im:
            assert im.size == (K.REFERENCE_SIZE, K.REFERENCE_SIZE)
            ours = np.asarray(im, dtype=float)
        theirs = np.asarray(Image.open(ref / "preprocessed_images" / _key_name(key)), dtype=float)
        assert np.abs(ours - theirs).mean() < 3.0  # measured pixel difference of the same picture
    assert rep.rows_differ == [{"key": EDITED_ROW, "line": rep.rows_differ[0]["line"]}]
    table = pd.read_csv(out / "full_df.csv", dtype=str, keep_default_na=False)
    assert len(table) == len(keys) - 2 and _key_name(NO_FILE) not in set(table["filename"])
    assert table.loc[table["filename"] == _key_name(EDITED_ROW), "Left-Diagnostic Keywords"].str.endswith(
        "，lens dust").all()
    assert not rep.table_identical and not rep.exact
    saved = pd.read_json(out / K.IMPORT_REPORT, typ="series")
    assert saved["counts"] == {K.IDENTICAL: rep.count(K.IDENTICAL), K.SAME_PICTURE: len(UPSCALED), K.DIFFERENT: 1}
    assert rep.identity == _identity(out) != _identity(ref)
    lines = "\n".join(K.report_lines(rep))
    assert f"missing        2 reference image(s): {DUPLICATE[1]}" in lines and "verdict        not exact" in lines


def test_cli_uses_the_committed_key_list(reference, tmp_path, capsys):
    ref, _ = reference
    download = make_download(ref, tmp_path / "download", damaged=False)
    out = tmp_path / "data"
    assert main(["data", "--from-kaggle", str(download), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    n = len(pd.read_csv(ref / "full_df.csv"))
    assert f"written        {n} of 5503 reference images" in text
    assert f"missing        {5503 - n} reference image(s)" in text
    assert f"image match    {n} identical file, 0 same picture" in text
    assert f"verdict        not exact: {5503 - n} image(s) missing, 0 with other bytes, 0 table row(s) differ" in text
    assert f"use            --data-root {out}" in text
    assert main(["data", "--from-kaggle", str(download), "--out", str(out)]) == 2  # not empty now
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["data", "--out", str(tmp_path / "x")]) == 2


def test_bad_downloads_get_one_clear_error(reference, tmp_path):
    ref, keys_meta = reference
    with pytest.raises(DataError, match="holds no full_df.csv beside a preprocessed_images/"):
        K.import_kaggle(tmp_path, tmp_path / "out", reference=keys_meta)
    download = make_download(ref, tmp_path / "download", damaged=False)
    csv = download / "archive" / "full_df.csv"
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)
    clash = rows.iloc[[0]].copy()
    clash["Patient Age"] = "1"
    pd.concat([rows, clash]).to_csv(csv, index=False)
    with pytest.raises(DataError, match=rf"lines 2 and {len(rows) + 2} both describe image"):
        K.import_kaggle(download, tmp_path / "out", reference=keys_meta)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="overlaps the download"):
        K.import_kaggle(download, download / "archive" / "data", reference=keys_meta)


def test_committed_key_list_matches_the_reference_data(reference, odir_root):
    ref, (keys, meta) = reference
    committed, committed_meta = K.read_reference()
    assert K.REFERENCE_KEYS.stat().st_size < 600_000
    assert committed_meta["images"] == len(committed) == 5503 and committed["patient_id"].nunique() == 2878
    assert committed_meta["table_sha256"] == K.file_sha256(odir_root / "full_df.csv", None)
    assert committed_meta["columns"] == meta["columns"]
    head = committed.set_index(["patient_id", "eye"]).loc[list(zip(keys["patient_id"], keys["eye"]))]
    assert (head.reset_index().values == keys.values).all()


def test_unusable_images_are_listed_not_written(reference, tmp_path):
    ref, keys_meta = reference
    download = make_download(ref, tmp_path / "download", damaged=False)
    img = download / "archive" / "preprocessed_images"
    (img / "13_left.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (512, 384), (90, 40, 20)).save(img / "14_left.jpg")
    Image.new("RGB", (128, 128), (90, 40, 20)).save(img / "15_left.jpg")
    rep = K.import_kaggle(download, tmp_path / "data", reference=keys_meta)
    missing = {m["key"]: m["reason"] for m in rep.missing}
    assert set(missing) == {"13_left", "14_left", "15_left"}
    assert missing["13_left"].startswith("unreadable image (")
    assert missing["14_left"] == "not square (512 x 384 px)"
    assert missing["15_left"] == "smaller than the reference (128 px < 256 px)"
    assert not any((tmp_path / "data" / "preprocessed_images" / f"{k}.jpg").exists() for k in missing)
    assert len(rep.written) == len(keys_meta[0]) - 3 == rep.count(K.IDENTICAL)
