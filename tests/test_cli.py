"""The command line: ``python -m repro data --summary --json`` on the real data, and clear one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from repro.cli import main
from repro.paths import PROJECT_ROOT


def test_data_summary_json(odir_root):
    out = subprocess.run([sys.executable, "-m", "repro", "data", "--summary", "--json", "--no-images",
                          "--data-root", str(odir_root)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["images_kept"] == 5503 and s["images_excluded"] == 0 and s["patients"] == 2878
    assert s["split_file"].endswith("odir5k-n5503_seed0.csv")
    assert {k: v["patients"] for k, v in s["splits"].items()} == {"train": 2014, "val": 432, "test": 432}
    assert sum(s["coarse_counts"]["train"].values()) == s["splits"]["train"]["images"]
    assert set(s["coarse_counts"]["train"]) == {"normal", "dr", "amd", "glaucoma", "other"}


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "--data-root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "Kaggle" in err[0]
    assert main(["train", "--profile", "smoke", "--p", "20"]) == 2
    assert "p=20" in capsys.readouterr().err
    assert main(["train", "--profile", "nope"]) == 2
    assert "unknown profile" in capsys.readouterr().err
