"""Reproducing from a clone: `make study` writes to $(RESULTS) (default out/), `make compare` diffs it
against the committed reference, the sweep order (τ study before M2/M3), readable terminal paths."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from repro.cli import main, readable_path
from repro.io import write_json
from repro.paths import PROJECT_ROOT
from repro.report.compare import compare_results, format_comparison
from repro.sweep.plan import plan_sweep, run_rank
from repro.sweep.run import failed_dependency


def _result(root: Path, p: int, seed: int, stage: str, name: str, t1=0.5, acc=0.6, t2=0.4, bleu=0.3) -> None:
    test = {"coarse": {"balanced_accuracy": t1, "accuracy": acc}, "fine": {"top1": t2}}
    if bleu is not None:
        test["caption"] = {"bleu_paper": bleu}
    write_json(root / "smoke" / f"p{p}" / f"seed{seed}" / f"{stage}-{name}.json",
               {"stage": stage, "name": name, "p": p, "seed": seed, "metrics": {"test": test}})


@pytest.fixture()
def roots(tmp_path):
    ours, ref = tmp_path / "out", tmp_path / "reference"
    for root in (ours, ref):
        _result(root, 15, 0, "m1", "T1+T2+T3")
        _result(root, 15, 0, "baseline", "majority", bleu=None)
    _result(ref, 15, 0, "m2", "single")                   # only in the reference
    _result(ref, 30, 1, "m1", "T1+T2+T3")                 # a whole (p, seed) only in the reference
    _result(ours, 70, 2, "m3", "ensemble")                # only here
    return ours, ref


def test_compare_within_tolerance_lists_what_is_missing(roots, capsys):
    ours, ref = roots
    _result(ours, 15, 0, "m1", "T1+T2+T3", t1=0.5 + 0.004)  # within the default tolerance 0.01
    c = compare_results("smoke", ours, ref)
    assert (c.compared, c.metrics_compared, c.exit_code) == (2, 7, 0)
    assert c.max_abs_delta == pytest.approx(0.004)
    assert c.only_reference == [(15, 0, "m2", "single"), (30, 1, "m1", "T1+T2+T3")]
    assert c.only_ours == [(70, 2, "m3", "ensemble")]
    text = format_comparison(c)
    assert "  p15 seed0: m2-single" in text and "  p30 seed1: all 1 results" in text
    assert "  p70 seed2: all 1 results" in text
    assert text.endswith("2 runs compared (0 of them ablations; 7 metric values), largest |diff| 0.0040: "
                         "all within tolerance")
    assert main(["compare", "--profile", "smoke", "--results-root", str(ours), "--reference", str(ref)]) == 0
    assert "all within tolerance" in capsys.readouterr().out


def test_compare_covers_the_ablations_and_lists_every_other_file(roots):
    ours, ref = roots
    for root in (ours, ref):  # an ablation run of notebook 07 and a notebook's summary on both sides
        _result(root, 15, 0, "ablation", "hinton-a0.5-T4", t2=float("nan"), bleu=None)
        write_json(root / "smoke" / "p15" / "seed0" / "07_ablations.json", {"notebook": "07_ablations"})
    _result(ours, 15, 0, "ablation", "hinton-a0.5-T4", t1=0.5 + 0.05, t2=float("nan"), bleu=None)
    _result(ref, 15, 0, "ablation", "leakage-image")                      # an ablation only in the reference
    write_json(ref / "smoke" / "p15" / "seed0" / "tau_selection.json", {"T1": 1.0})  # a summary file too
    c = compare_results("smoke", ours, ref)
    assert (c.compared, c.ablations_compared, c.exit_code) == (3, 1, 1)
    assert [(d.key, d.metric) for d in c.differences] == [((15, 0, "ablation", "hinton-a0.5-T4"), "T1_bacc")]
    assert c.differences[0].delta == pytest.approx(0.05)
    assert c.not_compared == [(15, 0, "", "07_ablations")]
    assert (15, 0, "ablation", "leakage-image") in c.only_reference and (15, 0, "", "tau_selection") in c.only_reference
    text = format_comparison(c)
    assert "  p15 seed0: tau_selection, ablation-leakage-image, m2-single" in text
    assert "on both sides, not compared (1 files without a main test metric): 07_ablations" in text
    row = next(line.split() for line in text.splitlines() if line.startswith("p15 seed0 ablation-hinton"))
    assert row == ["p15", "seed0", "ablation-hinton-a0.5-T4", "T1", "bacc", "0.5500", "0.5000", "+0.0500"]
    assert "3 runs compared (1 of them ablations; 9 metric values)" in text


def test_compare_reports_each_difference_and_fails(roots, capsys):
    ours, ref = roots
    _result(ours, 15, 0, "m1", "T1+T2+T3", t2=0.43, bleu=None)  # T2 off by 0.03, T3 missing here
    rc = main(["compare", "--profile", "smoke", "--results-root", str(ours), "--reference", str(ref),
               "--tolerance", "0.02"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = [line.split() for line in out.splitlines() if line.startswith("p15 seed0 m1-T1+T2+T3")]
    assert rows == [["p15", "seed0", "m1-T1+T2+T3", "T2", "top-1", "0.4300", "0.4000", "+0.0300"],
                    ["p15", "seed0", "m1-T1+T2+T3", "T3", "BLEU", "missing", "0.3000"]]
    assert "2 metric value(s) beyond tolerance" in out
    assert main(["compare", "--profile", "smoke", "--results-root", str(ours), "--reference", str(ref),
                 "--tolerance", "0.05"]) == 1  # a missing metric is a difference at any tolerance


def test_compare_without_results_is_one_clear_error(tmp_path, capsys):
    _result(tmp_path / "reference", 15, 0, "m1", "T1")
    assert main(["compare", "--profile", "smoke", "--results-root", str(tmp_path / "out"),
                 "--reference", str(tmp_path / "reference")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no result JSON in" in err and "make study" in err
    assert main(["compare", "--profile", "smoke", "--results-root", str(tmp_path / "reference"),
                 "--reference", str(tmp_path / "reference")]) == 2
    assert "the same folder" in capsys.readouterr().err


def test_sweep_runs_the_tau_study_before_m2_and_m3(tmp_path):
    runs = plan_sweep(["02", "03", "04", "01"], "quick", [15], [0], results_root=tmp_path)
    assert [r.stem for r in runs] == ["01_m1_teachers", "04_temperature", "02_m2_distill", "03_m3_unlabeled"]
    assert run_rank(1) < run_rank(4) < run_rank(2) < run_rank(3)
    by_stem = {r.stem: r for r in runs}
    failed = {(15, 0): (by_stem["04_temperature"].rank, "04_temperature")}
    assert failed_dependency(by_stem["02_m2_distill"], failed) == "04_temperature"  # a failed τ study blocks M2
    assert failed_dependency(by_stem["03_m3_unlabeled"], failed) == "04_temperature"
    assert failed_dependency(by_stem["01_m1_teachers"], failed) is None


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_study_report_and_compare_use_the_results_variable():
    def dry(*args: str) -> str:
        res = subprocess.run(["make", "-n", "-o", ".venv/.installed", *args],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    study = dry("study")
    assert "repro sweep --profile quick" in study and "--results-root out" in study and "--force" not in study
    assert "--results-root elsewhere --force" in dry("study", "RESULTS=elsewhere", "FORCE=1")
    assert "repro report --profile quick --results-root out" in dry("report")
    assert "repro compare --profile quick --results-root out --reference results --tolerance 0.01" in dry("compare")
    ignored = subprocess.run(["git", "check-ignore", "-q", "out/quick/p15/seed0/m1-T1.json"], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0  # the default results root is git-ignored


def test_terminal_paths_are_readable(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert readable_path(str(tmp_path / "data" / "odir5k")) == "~/data/odir5k"
    shown = readable_path("../shared/data/odir5k")  # as data_summary records it
    assert shown == str((PROJECT_ROOT.parent / "shared" / "data" / "odir5k").resolve()) and ".." not in shown
    assert readable_path(None) == ""
    # inside the project a path stays project-relative (the committed split file)
    assert readable_path(str(PROJECT_ROOT / "results" / "splits" / "x.csv")) == "results/splits/x.csv"
