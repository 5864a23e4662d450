"""Decode-once image cache (repro.data.imagecache) on a tiny ODIR folder, and prepare_data with bad images."""

import numpy as np
import pytest
from PIL import Image

from repro.data import imagecache as IC
from repro.data.prepare import prepare_data
from repro.data.sources import load_odir
from repro.errors import DataError


def test_cache_builds_once_and_matches_pil(tiny_odir, tmp_path, monkeypatch):
    m = load_odir(tiny_odir).manifest
    arr, bad = IC.load_image_cache(m, 32, cache_root=tmp_path / "c")
    assert bad == [] and arr.shape == (len(m), 32, 32, 3) and arr.dtype == np.uint8
    assert isinstance(arr, np.memmap) or isinstance(arr.base, np.memmap)
    with Image.open(m["path"].iloc[3]) as im:
        ref = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(arr[3], ref)
    info = IC.cache_info(m, 32, cache_root=tmp_path / "c")
    assert info["images"] == len(m) and info["bytes"] > len(m) * 32 * 32 * 3 and "build_seconds" in info
    monkeypatch.setattr(IC, "_build", lambda *a, **k: pytest.fail("the cache was rebuilt"))
    again, _ = IC.load_image_cache(m, 32, cache_root=tmp_path / "c")
    assert np.array_equal(again, arr)
    assert not list((tmp_path / "c").glob("*.tmp"))


def test_cache_key_follows_files_and_order(tiny_odir):
    m = load_odir(tiny_odir).manifest
    k = IC.cache_key(m, 32)
    assert IC.cache_key(m.iloc[::-1], 32) != k and IC.cache_key(m, 64) != k
    p = m["path"].iloc[0]
    with open(p, "ab") as f:
        f.write(b"\0")
    assert IC.cache_key(m, 32) != k


def test_corrupt_jpeg_names_the_file(tiny_odir, tmp_path):
    m = load_odir(tiny_odir).manifest
    victim = tiny_odir / "preprocessed_images" / "9_right.jpg"
    victim.write_bytes(b"this is not a jpeg" * 50)
    with pytest.raises(DataError) as e:
        IC.load_image_cache(m, 32, cache_root=tmp_path / "c")
    assert str(victim) in str(e.value) and "skip" in str(e.value)
    assert not list((tmp_path / "c").glob("*.npy"))
    arr, bad = IC.load_image_cache(m, 32, skip_bad_images=True, cache_root=tmp_path / "c")
    assert bad == ["9_right.jpg"]
    assert arr[m.index[m["image"] == "9_right.jpg"][0]].max() == 0
    with pytest.raises(DataError, match="9_right.jpg"):
        IC.load_image_cache(m, 32, cache_root=tmp_path / "c")


def test_prepare_data_skips_bad_images_only_when_asked(tiny_odir, tmp_path):
    (tiny_odir / "preprocessed_images" / "9_right.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="9_right.jpg"):
        prepare_data(tiny_odir, profile="smoke", split_directory=tmp_path)
    prep = prepare_data(tiny_odir, profile="smoke", split_directory=tmp_path / "s", skip_bad_images=True)
    assert list(prep.bad_images["image"]) == ["9_right.jpg"]
    assert "9_right.jpg" not in set(prep.manifest["image"])
    assert prep.images.shape == (len(prep.manifest), 96, 96, 3)
    assert prep.images[prep.indices("train")].mean() > 10
