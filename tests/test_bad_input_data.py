"""Bad data input through ``python -m repro data``: one clear line on stderr and exit code 2, never a traceback
(docs/bad-input.md). The data are synthetic (tests/synthetic_odir.py), so every test runs without ODIR-5K."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from repro.cli import main
from repro.data.prepare import prepare_data
from synthetic_odir import csv_line, make_kaggle_odir, write_jpeg


@pytest.fixture()
def kaggle(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "out"))   # split files of this data go here
    return make_kaggle_odir(tmp_path / "kaggle", n_patients=30)


def data(*args: str) -> int:
    return main(["data", "--profile", "smoke", *args])


def one_error(capsys) -> str:
    """The single ``error:`` line of stderr (progress bars aside); fails on a traceback or a second error."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in re.split(r"[\r\n]+", err) if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_missing_image_listed_in_the_table(kaggle, capsys):
    (kaggle / "preprocessed_images" / "3_left.jpg").unlink()
    assert data("--data-root", str(kaggle)) == 2
    msg = one_error(capsys)
    assert "3_left.jpg is missing" in msg and f"full_df.csv:line {csv_line(kaggle, '3_left.jpg')}" in msg
    assert "--skip-bad-images" in msg
    assert data("--data-root", str(kaggle), "--skip-bad-images", "--no-images", "--json") == 0
    js = json.loads(capsys.readouterr().out)
    assert js["bad_images"] == ["3_left.jpg"] and js["images_kept"] == 59


@pytest.mark.parametrize("kind", ["truncated", "zero-byte"])
def test_truncated_or_zero_byte_jpeg(kaggle, capsys, kind):
    victim = kaggle / "preprocessed_images" / "4_right.jpg"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2] if kind == "truncated" else b"")
    assert data("--data-root", str(kaggle)) == 2
    msg = one_error(capsys)
    assert f"cannot decode image file {victim}" in msg and "--skip-bad-images" in msg
    assert ("Truncated File Read" if kind == "truncated" else "cannot identify image file") in msg
    assert data("--data-root", str(kaggle), "--skip-bad-images", "--json") == 0
    js = json.loads(capsys.readouterr().out)
    assert js["bad_images"] == ["4_right.jpg"] and js["images_kept"] == 59


def test_grayscale_and_rgba_images_become_rgb(kaggle, tmp_path, capsys):
    img = kaggle / "preprocessed_images"
    write_jpeg(img / "4_right.jpg", seed=7, mode="L")
    write_jpeg(img / "5_left.jpg", seed=8, mode="RGBA")   # PNG bytes with an alpha channel
    assert data("--data-root", str(kaggle)) == 0
    assert "error" not in capsys.readouterr().err
    prep = prepare_data(kaggle, profile="smoke", split_directory=tmp_path / "splits")
    row = dict(zip(prep.manifest["image"], range(len(prep.manifest))))
    gray = prep.images[row["4_right.jpg"]]
    assert gray.shape == (96, 96, 3) and gray.mean() > 10
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    src = np.random.default_rng(8).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(src, "RGB").resize((96, 96), Image.Resampling.BILINEAR))
    assert np.array_equal(prep.images[row["5_left.jpg"]], want)   # alpha dropped, colours kept


def test_csv_missing_a_column(kaggle, capsys):
    csv = kaggle / "full_df.csv"
    pd.read_csv(csv, dtype=str, keep_default_na=False).drop(columns=["Right-Diagnostic Keywords"]).to_csv(
        csv, index=False)
    assert data("--data-root", str(kaggle)) == 2
    msg = one_error(capsys)
    assert f"CSV file {csv} lacks the required column(s) ['Right-Diagnostic Keywords']" in msg


def test_unknown_keyword_rules_or_strict(kaggle, capsys):
    csv = kaggle / "full_df.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    df.loc[df["filename"] == "7_left.jpg", "Left-Diagnostic Keywords"] = "purple fundus"
    df.to_csv(csv, index=False)
    assert data("--data-root", str(kaggle), "--no-images", "--summary") == 0
    out = capsys.readouterr().out
    assert "  by rule: 'purple fundus' x1 -> O  (anything else -> O)" in out
    assert data("--data-root", str(kaggle), "--no-images", "--strict-keywords") == 2
    msg = one_error(capsys)
    line = csv_line(kaggle, "7_left.jpg")
    assert f"'purple fundus' (1 image(s), first at line {line}, rule \"anything else -> O\")" in msg
    assert "Remove --strict-keywords" in msg


def test_nonexistent_data_root(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert data("--data-root", str(missing)) == 2
    msg = one_error(capsys)
    assert str(missing) in msg and "does not exist" in msg


def test_manifest_with_wrong_columns(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_jpeg(folder / "a.jpg", seed=1)
    pd.DataFrame({"file": ["a.jpg"], "patient": ["1"], "label": ["normal"]}).to_csv(folder / "manifest.csv",
                                                                                  index=False)
    assert data("--data-root", str(folder)) == 2
    msg = one_error(capsys)
    assert "manifest.csv lacks the required column(s) ['image', 'patient_id', 'coarse', 'fine', 'caption']" in msg
    assert "it has ['file', 'patient', 'label']" in msg


def test_data_folder_too_small_to_split(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "out"))
    tiny = make_kaggle_odir(tmp_path / "tiny", n_patients=3)
    assert data("--data-root", str(tiny), "--no-images") == 2
    msg = one_error(capsys)
    assert "3 patients are too few for a test/val/train split" in msg
