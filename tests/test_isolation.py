"""Runs that cannot mix, bad input that fails before the work, caches that leave nothing behind (issue 11).

One test (at least) per finding 3-6 and 8 of issue 11; each fails on the code before the fix.
Checkpoints are written here with :func:`save_checkpoint` from untrained models (no training needed to
check where a run looks for its teachers); one test runs two real sweeps at once.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from repro.cli import build_parser, main, print_summary, sweep_extra_params
from repro.data import splits as S
from repro.data.captions import Vocab
from repro.data.imagecache import load_image_cache
from repro.data.prepare import data_summary, prepare_data
from repro.data.sources import load_dataset
from repro.errors import CheckpointError, DataError
from repro.experiments.context import check_stage_inputs, make_context, require_checkpoint, stage_inputs
from repro.io import atomic_path, clean_stale_temps, process_tag
from repro.models.checkpoints import CheckpointMismatchError, save_checkpoint
from repro.models.featcache import trunk_feature_cache
from repro.names import SUBSETS, subset_tasks
from repro.paths import PROJECT_ROOT, OutputError, check_writable, layout, layout_for_results
from repro.sweep.lock import LOCK_FILE
from repro.sweep.plan import notebook_parameters, plan_sweep

FIX = Path(__file__).parent / "fixtures" / "isolation"
STUDY_FIX = Path(__file__).parent / "fixtures" / "study"
NOTEBOOKS = PROJECT_ROOT / "notebooks"
COMMITTED = PROJECT_ROOT / "results" / "splits"


@pytest.fixture(autouse=True)
def _no_shared_runs(monkeypatch):
    """Runs and results follow the results root here (``pytest notebooks`` may have set these)."""
    monkeypatch.delenv("REPRO_RUNS", raising=False)
    monkeypatch.delenv("REPRO_RESULTS", raising=False)


def write_manifest_folder(folder: Path, patients: int = 30, seed: int = 0) -> Path:
    """A manifest-layout data set: ``patients`` x 2 small noisy JPEGs and their ``manifest.csv``."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    labels = [("normal", "normal fundus"), ("dr", "moderate retinopathy"), ("glaucoma", "glaucoma")]
    rows = []
    for i in range(patients):
        coarse, caption = labels[i % 3]
        for eye in ("left", "right"):
            name = f"{seed}_{i}_{eye}.jpg"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "img" / name)
            rows.append({"image": f"img/{name}", "patient_id": f"s{seed}p{i}", "coarse": coarse,
                         "fine": caption, "caption": caption})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def link_reference(src: Path, dest: Path, corrupt: str | None = None) -> Path:
    """The reference ODIR folder as a folder of links (same bytes, another path); ``corrupt`` is a
    file of bytes that are no JPEG instead of a link."""
    (dest / "preprocessed_images").mkdir(parents=True)
    shutil.copyfile(src / "full_df.csv", dest / "full_df.csv")
    for f in os.listdir(src / "preprocessed_images"):
        if f == corrupt:
            (dest / "preprocessed_images" / f).write_bytes(b"not a jpeg")
        else:
            os.symlink(src / "preprocessed_images" / f, dest / "preprocessed_images" / f)
    return dest


def fake_teachers(ctx, subsets=SUBSETS, stage="m1") -> list[Path]:
    """Untrained models saved where ``ctx`` looks for its teachers, recorded as this run's."""
    out = []
    for s in subsets:
        path = ctx.checkpoint_path(stage, s)
        save_checkpoint(path, ctx.new_model(subset_tasks(s)), ctx.prepared, extra=ctx.checkpoint_extra(stage, s))
        out.append(path)
    return out


@pytest.fixture(scope="module")
def root_a(module_tmp):
    return module_tmp


@pytest.fixture(scope="module")
def ctx_a(odir_root, root_a):
    """(smoke, p=15, seed=0) on the reference data in results root A, its runs derived from it."""
    os.environ.pop("REPRO_RUNS", None)
    return make_context("smoke", p=15, seed=0, data_root=odir_root, results_dir=root_a / "smoke")


@pytest.fixture(scope="module")
def teachers_a(ctx_a):
    return fake_teachers(ctx_a)


# --- finding 3: runs mix silently --------------------------------------------------------

def test_checkpoints_are_keyed_by_results_root_data_and_split(ctx_a, root_a):
    art = ctx_a.run_artifacts
    key = f"{ctx_a.prepared.data_identity}-{ctx_a.prepared.split_hash[:8]}"
    assert art == root_a / "runs" / "smoke" / key / "p15" / "seed0"
    assert ctx_a.prepared.data_identity == "odir5k-n5503-ab893fd36dde"
    assert ctx_a.checkpoint_path("m1", "T1").parent == art


def test_teachers_of_another_results_folder_are_not_used(odir_root, teachers_a, ctx_a, tmp_path, capsys):
    check_stage_inputs(ctx_a, "m2")  # A's own teachers: found and matching
    b = tmp_path / "B" / "smoke"
    rc = main(["train", "--stage", "m2", "--profile", "smoke", "--p", "15", "--seed", "0",
               "--data-root", str(odir_root), "--results-root", str(b.parent)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "m2 needs 7 earlier model(s) that are missing" in err and str(tmp_path / "B" / "runs") in err
    assert f"train --stage m1 --profile smoke --p 15 --seed 0 --results-root {b.parent}" in err
    assert not list((tmp_path / "B").rglob("*.pt")) and not list((tmp_path / "B").rglob("*.json"))


def test_teachers_of_another_split_are_refused(ctx_a, teachers_a, tmp_path):
    import dataclasses

    other = dataclasses.replace(ctx_a.prepared, split_hash="f" * 16)
    ctx = dataclasses.replace(ctx_a, prepared=other, results_dir=tmp_path / "res", runs_dir=tmp_path / "runs")
    ckpt = ctx.checkpoint_path("m1", "T1+T2+T3")
    ckpt.parent.mkdir(parents=True)
    shutil.copy(ctx_a.checkpoint_path("m1", "T1+T2+T3"), ckpt)  # A's teacher, under the other split's key
    with pytest.raises(CheckpointMismatchError) as e:
        require_checkpoint(ctx, "m1", "T1+T2+T3", "notebook 01")
    msg = str(e.value)
    assert "split hash" in msg and ctx_a.prepared.split_hash in msg and "f" * 16 in msg
    assert "python -m repro train --stage m1 --profile smoke --p 15 --seed 0" in msg


def test_teachers_of_another_profile_or_vocabulary_are_refused(ctx_a, tmp_path):
    import dataclasses

    ctx = dataclasses.replace(ctx_a, results_dir=tmp_path / "res", runs_dir=tmp_path / "runs")
    path = ctx.checkpoint_path("m1", "T1")
    foreign = SimpleNamespace(coarse_classes=ctx.prepared.coarse_classes, fine_classes=ctx.prepared.fine_classes,
                              vocab=Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "cataract"]),
                              split_hash=ctx.prepared.split_hash)
    extra = {**ctx.checkpoint_extra("m1", "T1"), "profile": {**ctx.profile.to_dict(), "name": "quick", "image_size": 256}}
    save_checkpoint(path, ctx.new_model(("coarse",)), foreign, extra=extra)
    with pytest.raises(CheckpointMismatchError) as e:
        require_checkpoint(ctx, "m1", "T1", "notebook 01")
    msg = str(e.value)
    assert str(path.name) in msg and "profile name 'quick' (this run: 'smoke')" in msg
    assert "profile image_size 256 (this run: 96)" in msg and "caption vocabulary" in msg


def test_ensemble_on_a_manifest_folder_after_m1_on_odir_fails_early(teachers_a, root_a, tmp_path, capsys):
    data = write_manifest_folder(tmp_path / "data")
    rc = main(["train", "--stage", "ensemble", "--profile", "smoke", "--data-root", str(data),
               "--results-root", str(root_a)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "ensemble needs 7 earlier model(s) that are missing" in err  # not a ValueError deep inside
    assert "label 0" not in err


def test_garbage_teacher_checkpoint_is_one_clear_error(ctx_a, teachers_a, tmp_path, capsys):
    import dataclasses

    ctx = dataclasses.replace(ctx_a, results_dir=tmp_path / "res", runs_dir=tmp_path / "runs")
    for s, n, _ in stage_inputs(ctx, "ensemble"):
        ctx.checkpoint_path(s, n).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ctx_a.checkpoint_path(s, n), ctx.checkpoint_path(s, n))
    bad = ctx.checkpoint_path("m1", "T2")
    bad.write_bytes(b"\x00garbage, not a torch file" * 10)
    with pytest.raises(CheckpointError) as e:
        check_stage_inputs(ctx, "ensemble")
    assert str(bad) in str(e.value) and "not a readable PyTorch file" in str(e.value)


def test_train_takes_the_sweep_lock(odir_root, tmp_path, capsys):
    res = tmp_path / "R" / "smoke"
    res.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (res / LOCK_FILE).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(),
                                                 "started": "now", "command": "sweep"}))
        rc = main(["train", "--stage", "m1", "--subsets", "T1", "--profile", "smoke", "--data-root", str(odir_root),
                   "--results-root", str(res.parent)])
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err
    assert rc == 2 and f"another sweep (pid {other.pid}" in err
    assert not list((tmp_path / "R").rglob("*.pt"))


def test_temp_names_are_unique_per_process_and_call(tmp_path):
    with atomic_path(tmp_path / "m2-ensemble.pt") as a, atomic_path(tmp_path / "m2-ensemble.pt") as b:
        assert a != b and f".{os.getpid()}@{socket.gethostname()}." in a.name and a.name.startswith(".m2-ensemble.")
        a.write_bytes(b"1")
        b.write_bytes(b"2")
    assert (tmp_path / "m2-ensemble.pt").read_bytes() in (b"1", b"2")
    assert [q.name for q in tmp_path.iterdir()] == ["m2-ensemble.pt"]


def test_two_sweeps_on_different_results_folders_at_once(tmp_path):
    """Two real sweeps at once, on two data folders both called ``data/``: both complete, each trains
    and reads only its own model, and each split file lands in its own results root."""
    procs, roots = [], []
    env = {k: v for k, v in os.environ.items() if k not in ("REPRO_RUNS", "REPRO_RESULTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for name, seed in (("A", 1), ("B", 2)):
        data = write_manifest_folder(tmp_path / name / "data", patients=24, seed=seed)
        root = tmp_path / f"results{name}"
        roots.append(root)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "repro", "sweep", "--profile", "smoke", "--notebooks-dir", str(FIX),
             "--notebooks", "01", "--p", "15", "--seeds", "0", "--results-root", str(root), "--data-root", str(data)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    recs = [json.loads((r / "smoke" / "p15" / "seed0" / "01_keyed.json").read_text()) for r in roots]
    for root, rec in zip(roots, recs):
        assert Path(rec["checkpoint"]).is_relative_to(root / "runs" / "smoke")
        assert Path(rec["split_file"]).parent == root / "splits"
        assert rec["t1_result_split_hash"] == rec["split_hash"]
    assert recs[0]["data_identity"] != recs[1]["data_identity"]
    assert recs[0]["data_identity"].startswith("data-n48-") and recs[1]["data_identity"].startswith("data-n48-")
    assert recs[0]["checkpoint"] != recs[1]["checkpoint"]
    for root, other in zip(roots, reversed(roots)):  # nothing of one sweep inside the other's root
        assert not any(str(other) in p.read_text(errors="ignore") for p in (root / "smoke").rglob("*.json"))


# --- finding 4: work lost on an unwritable output -------------------------------------------

def test_check_writable_refuses_a_path_below_a_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as e:
        check_writable(blocker / "sub", "results folder")
    assert f"{blocker} is a file, not a folder" in str(e.value) and "--results-root" in str(e.value)
    assert check_writable(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the probe is gone


def test_train_into_an_unwritable_results_folder_fails_before_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    import repro.data.prepare as prep

    monkeypatch.setattr(prep, "prepare_data", lambda *a, **k: pytest.fail("data prepared before the check"))
    rc = main(["train", "--stage", "m1", "--profile", "smoke", "--results-root", str(blocker)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is not writable" in err and "a_file is a file" in err


def test_evaluate_to_an_unwritable_out_fails_before_inference(tiny_odir, tmp_path, monkeypatch, capsys):
    from repro.models.mtlnet import MTLNet
    import repro.engine.evaluate as ev

    model = MTLNet("efficientnet_lite0", tasks=("coarse",), num_classes={"coarse": 5, "fine": 2}, vocab_size=5,
                   trainable=1, pretrained=False)
    prepared = SimpleNamespace(coarse_classes=("normal", "dr", "glaucoma", "amd", "other"), fine_classes=("x", "y"),
                               split_hash="h", vocab=Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "w"]))
    ckpt = save_checkpoint(tmp_path / "m.pt", model, prepared, extra={"profile": {"image_size": 32}})
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setattr(ev, "predict", lambda *a, **k: pytest.fail("inference ran before the output check"))
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--data-root", str(tiny_odir), "--out", str(blocker / "e.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "output folder of --out" in err and "is not writable" in err


def test_sweep_into_an_unwritable_root_fails_before_any_notebook(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = main(["sweep", "--profile", "smoke", "--notebooks-dir", str(STUDY_FIX), "--notebooks", "01", "--p", "15",
               "--seeds", "0", "--results-root", str(blocker / "root")])
    err = capsys.readouterr().err
    assert rc == 2 and "results folder" in err and "is not writable" in err
    monkeypatch.setenv("REPRO_RESULTS", str(blocker / "root"))  # `data` writes split files and caches there
    assert main(["data", "--profile", "smoke"]) == 2
    assert "split folder" in capsys.readouterr().err


# --- finding 5: --skip-bad-images a dead end -------------------------------------------------

def test_skip_bad_images_with_a_committed_split(odir_root, tmp_path, monkeypatch, capsys):
    """The reference images with one corrupt: the images kept get a split of their own in <root>/splits
    (it used to fail on the committed split, which lists the skipped image, advising to delete it), the
    committed file stays untouched, and the data report lists the skipped image."""
    gone = "0_left.jpg"
    data = link_reference(odir_root, tmp_path / "odir", corrupt=gone)
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "R"))
    committed = {q.name: q.read_bytes() for q in COMMITTED.glob("*.csv")}
    rc = main(["data", "--profile", "smoke", "--data-root", str(data), "--skip-bad-images", "--json",
               "--allow-outside-root"])  # the links lead out of the copy's folder
    out = capsys.readouterr().out
    assert rc == 0, out
    s = json.loads(out)
    assert s["bad_images"] == [gone] and s["images_kept"] < 5503
    split = (PROJECT_ROOT / s["split_file"]).resolve()
    assert split.parent == (tmp_path / "R" / "splits").resolve() and split.name.startswith("odir5k-n5502-")
    assert {q.name: q.read_bytes() for q in COMMITTED.glob("*.csv")} == committed
    print_summary(s)
    assert f"skipped        1 bad image(s): {gone}" in capsys.readouterr().out


def test_a_linked_copy_of_the_reference_data_is_the_reference(odir_root, tmp_path):
    ds = load_dataset(link_reference(odir_root, tmp_path / "copy"), allow_outside_root=True)
    _, path = S.load_or_make_split(ds, seed=0, max_patients=240)
    assert path == COMMITTED / "odir5k-n5503_seed0_n240.csv"  # identity by content, not by folder name


def test_train_sweep_and_notebooks_accept_the_data_flags():
    args = build_parser().parse_args(["train", "--skip-bad-images", "--strict-keywords"])
    assert args.skip_bad_images and args.strict_keywords
    for cmd in (["sweep"], ["run-notebook", "01"]):
        a = build_parser().parse_args(cmd + ["--skip-bad-images", "--strict-keywords"])
        assert sweep_extra_params(a) == {"skip_bad_images": True, "strict_keywords": True}
    assert sweep_extra_params(build_parser().parse_args(["sweep"])) == {}
    for nb in ("00_data", "01_m1_teachers", "02_m2_distill", "03_m3_unlabeled", "04_temperature", "05_gradcam"):
        params = notebook_parameters(NOTEBOOKS / f"{nb}.ipynb")
        assert params.get("skip_bad_images") == "False" and params.get("strict_keywords") == "False", nb
    run = plan_sweep(["01"], "smoke", [15], [0], results_root=Path("/nonexistent"),
                     extra_params={"skip_bad_images": True})[0]
    assert run.parameters["skip_bad_images"] is True


def test_make_context_threads_skip_bad_images(tiny_odir, tmp_path):
    bad = sorted((tiny_odir / "preprocessed_images").glob("*.jpg"))[0]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=bad.name):
        make_context("smoke", data_root=tiny_odir, results_dir=tmp_path / "R" / "smoke")
    ctx = make_context("smoke", data_root=tiny_odir, results_dir=tmp_path / "R" / "smoke", skip_bad_images=True)
    assert list(ctx.prepared.bad_images["image"]) == [bad.name]
    assert bad.name not in set(ctx.prepared.manifest["image"])
    assert ctx.prepared.split_file.parent == tmp_path / "R" / "splits"
    assert data_summary(ctx.prepared)["bad_images"] == [bad.name]


# --- finding 6: foreign data pollutes the repository ----------------------------------------

def test_split_files_of_other_data_go_to_the_results_root(tiny_odir, tmp_path, monkeypatch):
    before = sorted(q.name for q in COMMITTED.iterdir())
    prep = prepare_data(tiny_odir, profile="smoke", with_images=False, layout=layout(tmp_path / "R"))
    assert prep.split_file.parent == tmp_path / "R" / "splits"
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "env"))
    again = prepare_data(tiny_odir, profile="smoke", with_images=False)
    assert again.split_file.parent == tmp_path / "env" / "splits"
    assert again.split_file.name == prep.split_file.name == f"{prep.data_identity}_seed0_n240.csv"
    assert sorted(q.name for q in COMMITTED.iterdir()) == before


def test_two_folders_called_data_get_their_own_split_files(tmp_path):
    a = write_manifest_folder(tmp_path / "one" / "data", seed=1)
    b = write_manifest_folder(tmp_path / "two" / "data", seed=2)
    lay = layout(tmp_path / "R")
    pa = prepare_data(a, profile="smoke", with_images=False, layout=lay)
    pb = prepare_data(b, profile="smoke", with_images=False, layout=lay)  # used to fail on a's split file
    assert pa.split_file != pb.split_file and pa.split_file.parent == pb.split_file.parent == lay.splits
    assert pa.data_identity != pb.data_identity and pa.dataset_name == pb.dataset_name == "data"


def test_layout_derives_every_location_from_one_root(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_CACHE")  # the suite's private cache
    lay = layout_for_results(tmp_path / "R" / "quick")
    assert (lay.root, lay.runs, lay.cache, lay.splits) == (tmp_path / "R", tmp_path / "R" / "runs",
                                                           tmp_path / "R" / "cache", tmp_path / "R" / "splits")
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "elsewhere"))
    assert layout(tmp_path / "R").profile_runs("quick") == tmp_path / "elsewhere" / "quick"
    monkeypatch.delenv("REPRO_RUNS")
    assert layout().root == PROJECT_ROOT / "out"


# --- finding 8: interrupted caches leave a .tmp behind ------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temp_files_of_dead_processes_are_cleaned(tiny_odir, tmp_path):
    manifest = load_dataset(tiny_odir).manifest
    folder = tmp_path / "images"
    folder.mkdir()
    dead = _dead_pid()
    stale = folder / f".odir-32-abc.{process_tag(dead)}.0123abcd.tmp.npy"
    live = folder / f".odir-32-abc.{process_tag()}.89abcdef.tmp.npy"
    foreign = folder / f".odir-32-abc.{dead}@node7.cluster.example.4567abcd.tmp.npy"  # another host's: kept
    unowned = folder / f".odir-32-abc.{dead}.0123abcd.tmp.npy"  # no host in the name: kept
    other = folder / "notes.tmp.txt"
    kept = (live, foreign, unowned, other)
    for q in (stale, *kept):
        q.write_bytes(b"half a cache")
    images, bad = load_image_cache(manifest, 32, cache_root=folder)
    assert images.shape == (len(manifest), 32, 32, 3) and bad == []
    assert not stale.exists() and all(q.exists() for q in kept)
    assert not [q for q in folder.iterdir() if ".tmp" in q.name and q not in kept]


def test_stale_temps_in_feature_cache_and_runs_are_cleaned(ctx_a, tmp_path):
    from repro.models.mtlnet import MTLNet

    dead = _dead_pid()
    run_stale = ctx_a.run_artifacts / "teacher_cache" / f".abc-true-def-orig_hflip.{process_tag(dead)}.00ff00ff.tmp.npz"
    run_stale.parent.mkdir(parents=True, exist_ok=True)
    run_stale.write_bytes(b"x")
    make_context("smoke", p=15, seed=0, data_root=ctx_a.prepared.data_root, results_dir=ctx_a.results_dir)
    assert not run_stale.exists()

    model = MTLNet("efficientnet_lite0", tasks=("coarse",), num_classes={"coarse": 2, "fine": 2}, vocab_size=5,
                   trainable=0, pretrained=False)
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    trunk_feature_cache(model, images, views=("orig",), root=tmp_path, progress=False)
    folder = next((tmp_path / "features").iterdir())
    stale = folder / f".orig.{process_tag(dead)}.0a0b0c0d.tmp.npy"
    stale.write_bytes(b"x")
    trunk_feature_cache(model, images, views=("orig",), root=tmp_path, progress=False)
    assert not stale.exists() and (folder / "orig.npy").exists()
    assert clean_stale_temps(tmp_path / "missing") == []
