"""Issue 16: data identity by content, faithful decoding, images outside the data folder, and the
crashes that became one message (disk full, absurd checkpoint profiles, ``$...$`` captions, notebook 00
on relabelled data)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from repro.cli import main
from repro.data import identity as I
from repro.data.imagecache import decode_image, load_image_cache
from repro.data.prepare import data_summary, prepare_data
from repro.data.sources import load_dataset
from repro.data.splits import reference_name
from repro.errors import DataError
from repro.io import DiskFullError, write_json
from repro.paths import PROJECT_ROOT, layout
from synthetic_odir import make_kaggle_odir

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _identity(root: Path, cache: Path, **kw) -> str:
    ds = load_dataset(root, **kw)
    return I.data_identity(ds.manifest, ds.name, cache)


# --- 1. identity = content ---------------------------------------------------------------------

def test_identity_is_image_bytes_and_labels_not_names_or_sizes(tmp_path):
    a = make_kaggle_odir(tmp_path / "a", n_patients=6)
    cache = tmp_path / "cache"
    ident = _identity(a, cache)
    assert _identity(shutil.copytree(a, tmp_path / "copy"), cache) == ident  # a copy is the same data

    same_size = shutil.copytree(a, tmp_path / "same_size")
    f = same_size / "preprocessed_images" / "0_left.jpg"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF  # one byte flipped: same name, same size
    f.write_bytes(bytes(data))
    assert _identity(same_size, cache) != ident

    relabelled = shutil.copytree(a, tmp_path / "relabelled")
    df = pd.read_csv(relabelled / "full_df.csv", dtype=str, keep_default_na=False)
    df["Left-Diagnostic Keywords"] = df["Left-Diagnostic Keywords"].replace("glaucoma", "normal fundus")
    df.to_csv(relabelled / "full_df.csv", index=False)
    assert _identity(relabelled, cache) != ident


def test_file_hashes_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    a = make_kaggle_odir(tmp_path / "a", n_patients=4)
    cache = tmp_path / "cache"
    first = _identity(a, cache)
    assert list((cache / "hashes").glob("*.json"))
    I._MEMO.clear()
    hashed = []
    real = I.sha256_file
    monkeypatch.setattr(I, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert _identity(a, cache) == first and hashed == []  # every digest from the cache file
    f = a / "preprocessed_images" / "1_right.jpg"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(f, format="JPEG")
    assert _identity(a, cache) != first and [Path(p).name for p in hashed] == ["1_right.jpg"]


def test_hashing_works_without_a_writable_cache(tmp_path):
    a = make_kaggle_odir(tmp_path / "a", n_patients=4)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    I._MEMO.clear()
    assert _identity(a, blocker / "cache") == _identity(a, tmp_path / "cache")


def test_the_reference_data_is_recognised_by_content_and_a_relabelled_copy_is_not(odir_root, tmp_path):
    link = tmp_path / "ref"
    (link / "preprocessed_images").mkdir(parents=True)
    for f in os.listdir(odir_root / "preprocessed_images"):
        os.symlink(odir_root / "preprocessed_images" / f, link / "preprocessed_images" / f)
    shutil.copyfile(odir_root / "full_df.csv", link / "full_df.csv")
    cache = tmp_path / "cache"
    assert reference_name(_identity(link, cache, allow_outside_root=True)) == "odir5k-n5503"
    text = (link / "full_df.csv").read_text(encoding="utf-8")
    (link / "full_df.csv").write_text(text.replace("cataract", "cataract xyz"), encoding="utf-8")
    assert reference_name(_identity(link, cache, allow_outside_root=True)) is None


def test_image_cache_of_other_bytes_under_the_same_names_is_not_reused(tmp_path):
    a = make_kaggle_odir(tmp_path / "a", n_patients=4)
    m = load_dataset(a).manifest
    cache = tmp_path / "cache" / "images"
    first, _ = load_image_cache(m, 24, cache_root=cache)
    first = np.array(first)
    for p in m["path"]:
        st = os.stat(p)
        Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(p, format="JPEG")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    I._MEMO.clear()
    (tmp_path / "cache" / "hashes").exists() and shutil.rmtree(tmp_path / "cache" / "hashes")
    again, _ = load_image_cache(m, 24, cache_root=cache)
    assert np.ptp(np.asarray(again)) <= 2 and np.ptp(first) > 100
    assert len(list(cache.glob("*.npy"))) == 2


# --- 2. images decoded faithfully ----------------------------------------------------------------

def _png16(path: Path, mean8: int = 53) -> np.ndarray:
    rng = np.random.default_rng(0)
    a16 = np.clip(rng.normal(mean8 * 257, 20 * 257, (32, 32)), 0, 65535).astype(np.uint16)
    Image.fromarray(a16).save(path, format="PNG")
    return a16


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    a16 = _png16(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode.startswith("I")
    img = decode_image(str(tmp_path / "x.png"), 32)
    assert abs(img.mean() - a16.mean() / 257) < 0.6 and (img == 255).mean() < 0.01
    assert np.array_equal(img[..., 0], img[..., 2])  # gray stays gray


def test_float_image_outside_unit_range_is_a_bad_image(tmp_path):
    Image.fromarray(np.full((8, 8), 300.0, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="no known bit depth"):
        decode_image(str(tmp_path / "f.tif"), 8)


def test_converted_modes_are_counted_in_the_data_summary(tmp_path, capsys):
    from repro.cli import print_summary

    root = make_kaggle_odir(tmp_path / "d", n_patients=30)
    _png16(root / "preprocessed_images" / "0_left.jpg")  # PNG bytes under the Kaggle name
    Image.open(root / "preprocessed_images" / "1_left.jpg").convert("L").save(root / "preprocessed_images" / "1_left.jpg",
                                                                                format="JPEG")
    prep = prepare_data(root, "smoke", layout=layout(tmp_path / "R"))
    s = data_summary(prep)
    assert s["image_modes"] == {"I;16": 1, "L": 1, "RGB": 58} or s["image_modes"] == {"I": 1, "L": 1, "RGB": 58}
    assert any("converted to 8-bit RGB" in w and "1 in mode L" in w for w in s["warnings"])
    capsys.readouterr()
    print_summary(s)
    assert "1 L, 58 RGB  (converted to 8-bit RGB)" in capsys.readouterr().out
    i = int(np.flatnonzero(prep.manifest["image"] == "0_left.jpg")[0])
    assert 40 < prep.images[i].mean() < 70  # 53 in the file, not the 213 of a clipped decode


# --- 3. images outside the data folder -----------------------------------------------------------

@pytest.fixture()
def secret(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(folder / "secret.jpg", format="JPEG")
    return folder / "secret.jpg"


def _set_filename(root: Path, old: str, new: str) -> None:
    df = pd.read_csv(root / "full_df.csv", dtype=str, keep_default_na=False)
    for col in ("Left-Fundus", "Right-Fundus", "filename"):
        df[col] = df[col].replace(old, new)
    df.to_csv(root / "full_df.csv", index=False)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_an_image_outside_the_data_folder_is_refused_unopened(how, tmp_path, secret, monkeypatch, capsys):
    root = make_kaggle_odir(tmp_path / "d", n_patients=30)
    if how == "absolute":
        _set_filename(root, "3_left.jpg", str(secret))
    elif how == "dotdot":
        _set_filename(root, "3_left.jpg", "../../elsewhere/secret.jpg")
    else:
        (root / "preprocessed_images" / "3_left.jpg").unlink()
        os.symlink(secret, root / "preprocessed_images" / "3_left.jpg")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    real_sha = I.sha256_file
    monkeypatch.setattr(I, "sha256_file", lambda p: opened.append(str(p)) or real_sha(p))
    rc = main(["data", "--profile", "smoke", "--data-root", str(root), "--results-root", str(tmp_path / "R")])
    err = _one_error_line(capsys)
    assert rc == 2 and str(secret.resolve()) in err and "outside the data folder" in err
    assert "--allow-outside-root" in err and "full_df.csv:line" in err
    assert opened == []  # nothing was read: not the secret, not any image

    if how == "symlink":  # with the flag the row is used
        rc = main(["data", "--profile", "smoke", "--data-root", str(root), "--results-root", str(tmp_path / "R"),
                   "--allow-outside-root", "--json"])
        assert rc == 0 and str(root / "preprocessed_images" / "3_left.jpg") in opened
        assert os.environ.get("REPRO_ALLOW_OUTSIDE_ROOT") is None  # the flag does not outlive the command


def test_a_manifest_row_outside_its_folder_is_refused(tmp_path, secret):
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(folder / "a.jpg", format="JPEG")
    pd.DataFrame({"image": ["a.jpg", "../elsewhere/secret.jpg"], "patient_id": ["1", "2"],
                  "coarse": ["normal", "dr"], "fine": ["", ""], "caption": ["normal fundus", "dr"]}
                 ).to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(DataError, match=r"manifest.csv:line 3: image '../elsewhere/secret.jpg' is .*outside"):
        load_dataset(folder)
    assert len(load_dataset(folder, allow_outside_root=True).manifest) == 2


# --- 4. crashes that became one message -----------------------------------------------------------

def test_disk_full_while_building_the_image_cache(tmp_path, monkeypatch, capsys):
    root = make_kaggle_odir(tmp_path / "d", n_patients=30)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.delenv("REPRO_CACHE")  # the cache of the results root
    rc = main(["data", "--profile", "smoke", "--data-root", str(root), "--results-root", str(tmp_path / "R")])
    err = _one_error_line(capsys)
    images = tmp_path / "R" / "cache" / "images"
    assert rc == 2 and f"no space left on the disk holding {images}" in err
    assert f"needed {60 * 96 * 96 * 3 / 1024 / 1024:.1f} MB" in err and "free" in err and "--results-root" in err
    assert not [q for q in images.iterdir() if q.suffix in (".npy", ".json") or ".tmp" in q.name]


def test_disk_full_while_writing_a_result_or_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    import repro.io as rio

    class FullFile:  # the temp file is created, then the disk is full half-way through the write
        def __init__(self, path, *a, **k):
            Path(path).write_bytes(b"half")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rio, "open", FullFile, raising=False)
    with pytest.raises(DiskFullError, match=r"writing r\.json needed 1[0-9] bytes"):
        write_json(tmp_path / "R" / "x" / "r.json", {"a": 1})
    with pytest.raises(DiskFullError, match=r"writing m\.pt needed .* KB"):
        rio.atomic_save(tmp_path / "R" / "x" / "m.pt", lambda f: np.save(f, np.zeros(1000)))
    assert list((tmp_path / "R" / "x").iterdir()) == []  # neither the target nor a temp file


def _bad_checkpoint(tmp_path, **profile) -> Path:
    import torch

    from repro.models.mtlnet import MTLNet
    from repro.profiles import get_profile

    model = MTLNet(encoder="efficientnet_lite0", tasks=("coarse",), num_classes={"coarse": 5}, vocab_size=10,
                   trainable=0, pretrained=False, taps=("block4", "block5", "block6"), neck_hidden=8)
    payload = {"model_config": model.config, "state_dict": model.state_dict(),
               "coarse_classes": ["normal", "dr", "amd", "glaucoma", "other"], "fine_classes": ["x"],
               "vocab": {"itos": ["<pad>", "<sos>", "<eos>", "<unk>"], "min_count": 1}, "split_hash": "0" * 16,
               "extra": {"profile": {**get_profile("smoke").to_dict(), **profile}}}
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("field,value,says", [("image_size", "96; rm -rf /", "not of type int"),
                                              ("max_caption_len", 1e9, "not of type int"),
                                              ("max_caption_len", 10**9, "outside 1..256"),
                                              ("batch_size", -1, "outside"),
                                              ("nonsense", 1, "unknown profile setting")])
def test_absurd_checkpoint_profile_is_one_message_before_anything_is_built(field, value, says, tiny_odir,
                                                                          tmp_path, monkeypatch, capsys):
    import repro.models.mtlnet as mtl

    path = _bad_checkpoint(tmp_path, **{field: value})
    monkeypatch.setattr(mtl.MTLNet, "from_config", classmethod(lambda cls, cfg: pytest.fail("built")))
    rc = main(["evaluate", "--checkpoint", str(path), "--data-root", str(tiny_odir), "--out", str(tmp_path / "e.json")])
    err = _one_error_line(capsys)
    assert rc == 2 and str(path) in err and field in err and says in err
    assert not (tmp_path / "e.json").exists()


def test_caption_with_dollar_signs_is_drawn_as_text(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from repro.analysis import cam_figures

    truth = [{"image": "0.jpg", "coarse": "dr", "fine": "$x^$", "caption": "cost $5 and $\\frac{1}{0$ keyword"}]
    preds = [[{t: cam_figures.judge_prediction(truth[0][t], truth[0], t) for t in ("coarse", "fine", "caption")}]]
    panels = cam_figures.Panels(np.zeros((1, 32, 32, 3), np.uint8), truth, ["$M_1$"],
                                {"coarse": np.random.default_rng(0).random((1, 1, 32, 32))}, preds)
    fig = cam_figures.gradcam_figure(panels)
    out = cam_figures.save_figure(fig, tmp_path / "g.png", dpi=30)  # drawing parses the text
    assert out.stat().st_size > 0
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("$\\frac{1}{0$" in t for t in texts)
    matplotlib.pyplot.close("all")


def test_notebook_00_on_relabelled_reference_data_shows_counts(odir_root, tmp_path):
    papermill = pytest.importorskip("papermill")
    from repro.sweep.kernel import DEFAULT_KERNEL, kernel_env

    data = tmp_path / "odir"
    (data / "preprocessed_images").mkdir(parents=True)
    for f in os.listdir(odir_root / "preprocessed_images"):
        os.symlink(odir_root / "preprocessed_images" / f, data / "preprocessed_images" / f)
    text = (odir_root / "full_df.csv").read_text(encoding="utf-8")
    (data / "full_df.csv").write_text(text.replace("cataract", "cataract xyz"), encoding="utf-8")
    results = tmp_path / "R" / "smoke"
    with pytest.MonkeyPatch.context() as mp, kernel_env():
        mp.setenv("REPRO_ALLOW_OUTSIDE_ROOT", "1")
        mp.setenv("MPLBACKEND", "Agg")
        papermill.execute_notebook(str(NOTEBOOKS / "00_data.ipynb"), str(tmp_path / "00.ipynb"),
                                   parameters={"profile": "smoke", "data_root": str(data), "results_dir": str(results)},
                                   kernel_name=DEFAULT_KERNEL, progress_bar=False, cwd=str(NOTEBOOKS))
    summary = json.loads((results / "00_data.json").read_text())
    assert reference_name(summary["data_identity"]) is None
    out = (tmp_path / "00.ipynb").read_text()
    assert "is not the reference subset" in out and "vocab_size" in out
