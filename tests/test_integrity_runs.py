"""Issue 16: a result, cache or checkpoint of other data is never reported as this data's.

The two silent-training cases of the audit, on a synthetic ODIR folder (``smoke`` profile, 30 patients):
(a) a copy whose images are all replaced by one gray image (names kept), trained in a results root
that cached the real images; (b) a relabelled ``full_df.csv`` in a root with old results. Plus the
sweep's "skipped: result exists" on results of another data folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from repro.cli import main
from repro.io import read_json, write_json
from synthetic_odir import make_kaggle_odir

TRAIN = ["train", "--stage", "m1", "--subsets", "T1", "--profile", "smoke", "--p", "15", "--seed", "0"]


def _one_error_line(capsys) -> str:
    """The one ``error:`` line on stderr (progress bars and warnings aside), with no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _train(data: Path, results: Path, *extra: str) -> int:
    return main(TRAIN + ["--data-root", str(data), "--results-dir", str(results / "smoke"), *extra])


@pytest.fixture(scope="module")
def real_run(module_tmp):
    """A synthetic data folder and a results root (its caches in ``<root>/cache``) in which M1{T1} was
    trained on it."""
    base = module_tmp
    data = make_kaggle_odir(base / "data", n_patients=30)
    root = base / "R"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("REPRO_CACHE")  # the caches of the results root, as for a user
        assert _train(data, root) == 0
        yield data, root, read_json(root / "smoke" / "p15" / "seed0" / "m1-T1.json")


def _gray_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    gray = Image.fromarray(np.full((24, 24, 3), 128, np.uint8))
    for f in (dest / "preprocessed_images").iterdir():
        gray.save(f, format="JPEG")
    return dest


def test_gray_copy_in_a_root_with_the_real_cache_is_not_the_real_data(real_run, tmp_path, capsys):
    data, root, real = real_run
    gray = _gray_copy(data, tmp_path / "data")  # same folder name, same file names, other bytes
    capsys.readouterr()
    assert _train(gray, root) == 2
    err = _one_error_line(capsys)
    assert real["data"]["data_identity"] in err and "--force" in err
    assert "odir5k-n60-" in err.split("data now is ")[1]
    assert read_json(root / "smoke" / "p15" / "seed0" / "m1-T1.json") == real  # nothing overwritten

    assert _train(gray, root, "--force") == 0
    res = read_json(root / "smoke" / "p15" / "seed0" / "m1-T1.json")
    assert res["data"]["data_identity"] != real["data"]["data_identity"]
    # the real images' features were not reused: the gray run trained on features of its own ...
    folders = sorted((root / "cache" / "features").iterdir())
    assert len(folders) == 2
    gray_feats = [np.load(f / "orig.npy") for f in folders if np.ptp(np.load(f / "orig.npy"), axis=0).max() == 0]
    assert len(gray_feats) == 1  # ... identical for every (identical) image
    # ... so its losses are not the real run's
    assert [h["train/total"] for h in res["history"]] != [h["train/total"] for h in real["history"]]


def test_relabelled_table_in_a_root_with_old_results_is_not_reported(real_run, tmp_path, capsys):
    data, _, _ = real_run
    root = tmp_path / "R"
    copy = shutil.copytree(data, tmp_path / "data")
    assert _train(copy, root) == 0
    old = read_json(root / "smoke" / "p15" / "seed0" / "m1-T1.json")
    df = pd.read_csv(copy / "full_df.csv", dtype=str, keep_default_na=False)
    for col in ("Left-Diagnostic Keywords", "Right-Diagnostic Keywords"):
        df[col] = df[col].str.replace("glaucoma", "normal fundus")
    df.to_csv(copy / "full_df.csv", index=False)
    capsys.readouterr()

    assert _train(copy, root) == 2
    out = capsys.readouterr()
    errors = [ln for ln in out.err.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "T1 acc" not in out.out  # no metrics printed as current
    err = errors[0]
    assert old["data"]["data_identity"] in err and "--force" in err and "labels" in err

    assert _train(copy, root, "--force") == 0
    new = read_json(root / "smoke" / "p15" / "seed0" / "m1-T1.json")
    assert new["data"]["data_identity"] != old["data"]["data_identity"]
    assert new["data"]["split_hash"] != old["data"]["split_hash"]  # the relabelled data has a split of its own


def test_sweep_into_a_root_filled_from_other_data_stops(real_run, tmp_path, capsys):
    from repro.sweep.plan import plan_sweep

    data, _, real = real_run
    other = make_kaggle_odir(tmp_path / "other", n_patients=30)
    for f in (other / "preprocessed_images").glob("1_*.jpg"):
        Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(f, format="JPEG")
    root = tmp_path / "R"
    run_dir = root / "smoke" / "p15" / "seed0"
    write_json(run_dir / "m1-T1.json", real)  # computed from `data`
    write_json(run_dir / "01_m1_teachers.json", {"notebook": "01_m1_teachers"})
    capsys.readouterr()
    rc = main(["sweep", "--notebooks", "01", "--profile", "smoke", "--p", "15", "--seeds", "0",
               "--data-root", str(other), "--results-root", str(root)])
    err = _one_error_line(capsys)
    assert rc == 2 and real["data"]["data_identity"] in err and "--force" in err
    assert "m1-T1.json" in err and "skipped" not in err
    # --force reaches the notebook (its `force` parameter), which retrains instead of reading the old result
    assert plan_sweep(["01"], "smoke", [15], [0], root, None, force=True)[0].parameters["force"] is True
    rc = main(["sweep", "--notebooks", "01", "--profile", "smoke", "--p", "15", "--seeds", "0",
               "--data-root", str(other), "--results-root", str(root), "--force"])
    new = read_json(run_dir / "m1-T1.json")
    assert rc == 0 and new["data"]["data_identity"] not in ("", real["data"]["data_identity"])


def test_sweep_skip_rule_keeps_results_of_the_same_data(real_run, tmp_path):
    from repro.sweep.plan import plan_sweep, stale_results

    real = real_run[2]
    runs = plan_sweep(["01"], "smoke", [15], [0], tmp_path, None)
    write_json(runs[0].result, {"notebook": "01_m1_teachers"})
    write_json(runs[0].result.with_name("m1-T1.json"), real)
    assert stale_results(runs, real["data"]["data_identity"]) == []
    stale = stale_results(runs, "odir5k-n60-000000000000")
    assert [p.name for p, _ in stale] == ["m1-T1.json"] and stale[0][1] == real["data"]["data_identity"]


def test_a_result_of_other_profile_settings_is_trained_again(tmp_path, monkeypatch, capsys):
    """A stored model whose profile settings differ from the run's (a profile edited, an override) is not
    reused: it is trained again, saying which settings changed; with the same settings it is reused."""
    from repro.experiments.context import settings_changed
    from repro.profiles import get_profile

    data = make_kaggle_odir(tmp_path / "data", n_patients=30)   # its own: other tests of this module edit theirs
    copy = tmp_path / "R"
    monkeypatch.delenv("REPRO_CACHE", raising=False)
    assert _train(data, copy) == 0
    res = copy / "smoke" / "p15" / "seed0" / "m1-T1.json"
    stamp = res.stat().st_mtime_ns
    assert _train(data, copy) == 0 and res.stat().st_mtime_ns == stamp   # same settings: reused
    assert settings_changed(get_profile("smoke"), read_json(res)) == []
    monkeypatch.setenv("REPRO_PROFILE_OVERRIDES", '{"smoke": {"max_epochs": 1}}')
    capsys.readouterr()
    assert _train(data, copy) == 0
    out = capsys.readouterr().out
    assert "was trained with other profile settings (max_epochs: 2 -> 1): training it again" in out, out
    again = read_json(res)
    assert again["profile_settings"]["max_epochs"] == 1 and len(again["history"]) == 1
    older = {k: v for k, v in get_profile("smoke").to_dict().items() if k != "fold_batchnorm"}
    assert settings_changed(get_profile("smoke"), {"profile_settings": older}) == []   # added since: its default
    assert settings_changed(get_profile("quick"), {"profile_settings": older})       # quick folds: it differs


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_train_with_a_seed_numpy_refuses(seed, tmp_path, capsys):
    rc = main(["train", "--profile", "smoke", "--seed", seed, "--results-dir", str(tmp_path / "smoke")])
    err = _one_error_line(capsys)
    assert rc == 2 and f"seed {int(seed)}" in err and "0 to 4294967295" in err
    assert not (tmp_path / "smoke").exists()


@pytest.mark.parametrize("argv", [["report", "--no-notebook"], ["compare"], ["bench", "--steps", "1"],
                                  ["data", "--no-images"]])
def test_unknown_profile_is_an_error_in_every_command(argv, tmp_path, capsys):
    rc = main(argv + ["--profile", "nonexistent", "--results-root", str(tmp_path)])
    err = _one_error_line(capsys)
    assert rc == 2 and "unknown profile 'nonexistent'" in err
    assert not list(tmp_path.rglob("*.*"))  # nothing written, not even an empty report


def test_bench_writes_into_the_results_root(real_run, tmp_path, capsys):
    from repro.paths import PROJECT_ROOT

    data, _, _ = real_run
    committed = PROJECT_ROOT / "results" / "bench" / "cpu.json"
    before = committed.read_bytes() if committed.exists() else None
    rc = main(["bench", "--profile", "smoke", "--data-root", str(data), "--steps", "2", "--epochs", "1",
               "--results-root", str(tmp_path)])
    assert rc == 0
    written = json.loads((tmp_path / "bench" / "cpu.json").read_text())
    assert written["profile"] == "smoke" and written["m1_img_s"] > 0
    assert (committed.read_bytes() if committed.exists() else None) == before
    assert "bench/cpu.json" in capsys.readouterr().out
