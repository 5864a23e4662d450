"""The report layer on a synthetic results folder (2 p values x 2 seeds, every stage)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repro import report
from repro.io import write_json

PS = (15, 70)
SEEDS = (0, 1)
CLASSES = ["normal", "dr", "amd", "glaucoma", "other"]
# test score per model: (T1 accuracy, T2 top-1, T3 bleu_paper) at p = 15, seed mean;
# p = 70 adds 0.05, seed 0 subtracts 0.01, seed 1 adds 0.01
BASE = {
    ("m1", "T1"): (0.60, None, None),
    ("m1", "T2"): (None, 0.30, None),
    ("m1", "T3"): (None, None, 0.20),
    ("m1", "T1+T2"): (0.62, 0.31, None),
    ("m1", "T1+T3"): (0.61, None, 0.22),
    ("m1", "T2+T3"): (None, 0.32, 0.23),
    ("m1", "T1+T2+T3"): (0.64, 0.33, 0.25),
    ("m2", "single"): (0.66, 0.35, 0.27),
    ("m2", "ensemble"): (0.67, 0.36, 0.28),
    ("m3", "single"): (0.68, 0.37, 0.29),
    ("m3", "ensemble"): (0.70, 0.38, 0.30),
    ("ensemble", "m1"): (0.65, 0.34, 0.26),
}
TAU_BONUS = {0.5: 0.0, 1.0: 0.01, 5.0: 0.03, 10.0: 0.02}
TASK_OF = {"T1": "coarse", "T2": "fine", "T3": "caption"}


def score(base: float, p: int, seed: int) -> float:
    return base + (0.05 if p == 70 else 0.0) + (-0.01 if seed == 0 else 0.01)


def confusion(seed: int) -> list[list[int]]:
    m = np.full((5, 5), 2) + np.diag([12, 10, 11, 9, 8])
    m[0, 0] += seed  # seeds differ, so the sum over seeds is checkable
    return m.tolist()


def metrics(vals: tuple, seed: int, detail: bool = True) -> dict:
    t1, t2, t3 = vals
    out: dict = {}
    if t1 is not None:
        out["coarse"] = {"n": 100, "accuracy": t1, "balanced_accuracy": t1 - 0.05, "macro_f1": t1 - 0.1}
        if detail:
            out["coarse"].update({
                "classes": CLASSES, "confusion": confusion(seed),
                "per_class": {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 20} for c in CLASSES}})
    if t2 is not None:
        out["fine"] = {"top1": t2, "top5": t2 + 0.3, "n": 100}
        if detail:
            out["fine"]["topk_by_group"] = {c: {str(k): min(1.0, t2 + 0.1 * (k - 1) + 0.01 * i) for k in range(1, 6)}
                                            for i, c in enumerate(CLASSES)}
            out["fine"]["n_by_group"] = {c: 20 for c in CLASSES}
    if t3 is not None:
        out["caption"] = {"bleu_paper": t3, "bleu4": t3 / 2, "exact_match": t3 / 3, "n": 100}
        if detail:
            out["caption"]["bleu_paper_by_group"] = {c: t3 + 0.02 * i for i, c in enumerate(CLASSES)}
            out["caption"]["n_by_group"] = {c: 20 for c in CLASSES}
            out["caption"]["examples"] = [{"image": "1_left.jpg", "reference": "normal fundus", "generated": "normal fundus"}]
    if detail and None not in vals:
        out["error_analysis"] = {"test_samples": 100, "coarse_correct_bleu_lt_0.2": 10 + seed,
                                 "coarse_wrong_bleu_gt_0.5": 4, "fine_correct_coarse_wrong": 6,
                                 "coarse_correct_fine_wrong": 20 + 2 * seed}
    return out


def result(stage: str, name: str, p: int, seed: int, vals: tuple, params: dict | None = None) -> dict:
    test_vals = tuple(None if v is None else score(v, p, seed) for v in vals)
    val_vals = tuple(None if v is None else v - 0.01 for v in test_vals)
    res = {"stage": stage, "name": name, "profile": "synthetic", "p": p, "seed": seed,
           "tasks": [TASK_OF[t] for t, v in zip(("T1", "T2", "T3"), vals) if v is not None],
           "split_hash": "abc", "params": params or {}, "wall_s": 1.0,
           "metrics": {"test": metrics(test_vals, seed)}}
    if stage != "ensemble":
        res["metrics"]["val"] = metrics(val_vals, seed, detail=False)
        res["best_val_score"] = float(np.mean([v for v in val_vals if v is not None]))
        res["history"] = [{"epoch": 1, "val/score": res["best_val_score"]}]
    return res


def make_results(folder, stages=("m1", "tau", "m2", "m3", "ensemble")) -> None:
    for p in PS:
        for seed in SEEDS:
            run = folder / f"p{p}" / f"seed{seed}"
            for (stage, name), vals in BASE.items():
                if stage in stages:
                    write_json(run / f"{stage}-{name}.json", result(stage, name, p, seed, vals))
            if "tau" in stages:
                for i, t in enumerate(("T1", "T2", "T3")):
                    for tau, bonus in TAU_BONUS.items():
                        base = BASE[("m1", t)]
                        vals = tuple(None if v is None else v + bonus for v in base)
                        write_json(run / f"tau-{t}-tau{tau:g}.json",
                                   result("tau", f"{t}-tau{tau:g}", p, seed, vals, {"task": t, "tau": tau}))
            # files the loader must ignore
            write_json(run / "01_m1_teachers.json", {"notebook": "01_m1_teachers"})
            write_json(run / "tau_selection.json", {"best": {"coarse": 5.0}})
    write_json(folder / "00_data.json", {"notebook": "00_data"})
    write_json(folder / "sweep.json", {"segments": []})


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results") / "synthetic"
    make_results(folder)
    return folder


@pytest.fixture(scope="module")
def df(results_folder):
    return report.load_results("synthetic", results_root=results_folder.parent)


SD = math.sqrt(2) * 0.01  # sample std (ddof=1) of x - 0.01 and x + 0.01


def test_load_results(df):
    n_models = len(BASE) + 3 * len(TAU_BONUS)
    assert len(df) == n_models * len(PS) * len(SEEDS)
    assert set(df["stage"]) == {"m1", "tau", "m2", "m3", "ensemble"}
    row = df[(df.stage == "m3") & (df.name == "ensemble") & (df.p == 70) & (df.seed == 1)].iloc[0]
    assert row["model"] == "M3+ensemble"
    assert row["T1_acc"] == pytest.approx(0.76)
    assert row["T2_top5"] == pytest.approx(0.44 + 0.3)
    assert row["T3_bleu4"] == pytest.approx(0.36 / 2)
    assert row["val_T1"] == pytest.approx(0.75)
    assert isinstance(row["result"], dict)
    tau = df[(df.stage == "tau") & (df.name == "T2-tau5")].iloc[0]
    assert (tau["tau_task"], tau["tau"]) == ("T2", 5.0)
    assert math.isnan(df[(df.stage == "m1") & (df.name == "T1")]["T2_top1"].iloc[0])


def test_load_results_missing_folder(tmp_path):
    df = report.load_results("nothing", results_root=tmp_path)
    assert df.empty and "T1_acc" in df.columns


def test_table3_means_stds_and_paper(df):
    t3 = report.table3(df)
    assert list(t3.index.get_level_values("p").unique()) == [15, 70]
    cell = t3.loc[("T1+T2+T3", 15)]
    assert cell[("T1", "mean")] == pytest.approx(0.64)
    assert cell[("T1", "std")] == pytest.approx(SD)
    assert cell[("T1", "n")] == 2
    assert cell[("T1", "paper")] == pytest.approx(0.693)
    assert cell[("T3", "paper")] == pytest.approx(0.258)
    assert t3.loc[("T1", 70), ("T1", "mean")] == pytest.approx(0.65)
    assert t3.loc[("T1", 70), ("T1", "paper")] == pytest.approx(0.744)
    # a task the model did not learn: empty, not an error
    assert math.isnan(t3.loc[("T1", 15), ("T2", "mean")]) and t3.loc[("T1", 15), ("T2", "n")] == 0
    assert math.isnan(t3.loc[("T1", 15), ("T2", "paper")])


def test_table5_means_and_paper(df):
    t5 = report.table5(df)
    assert t5.loc[("M3+ensemble", 70), ("T2", "mean")] == pytest.approx(0.43)
    assert t5.loc[("M3+ensemble", 70), ("T2", "std")] == pytest.approx(SD)
    assert t5.loc[("M3+ensemble", 70), ("T1", "paper")] == pytest.approx(0.825)
    assert t5.loc[("M2", 15), ("T3", "mean")] == pytest.approx(0.27)
    assert t5.loc[("M2", 15), ("T3", "paper")] == pytest.approx(0.261)
    assert t5.loc[("M1 (T1+T2+T3)", 15), ("T1", "paper")] == pytest.approx(0.693)
    ens = t5.loc[("Ensemble (M1 teachers)", 15)]
    assert ens[("T1", "mean")] == pytest.approx(0.65) and math.isnan(ens[("T1", "paper")])


def test_missing_stages_give_nan(df):
    only_m1 = df[df.stage == "m1"]
    t5 = report.table5(only_m1)
    assert math.isnan(t5.loc[("M2", 15), ("T1", "mean")])
    assert t5.loc[("M2", 15), ("T1", "n")] == 0
    assert t5.loc[("M2", 15), ("T1", "paper")] == pytest.approx(0.746)
    assert report.table4(only_m1)[("T1", "n")].sum() == 0
    assert any("m2" in note for note in report.missing(only_m1))
    empty = df.iloc[0:0]
    for fn in (report.table3, report.table4, report.table5, report.table6, report.topk_by_class,
               report.bleu_by_class, report.error_analysis, report.inventory):
        fn(empty)
    assert len(report.table3(empty)) == 7 * 5  # paper columns stay visible
    assert report.missing(empty)
    assert "M3+ensemble" in report.headline_markdown("synthetic", df=empty)


def test_table4_and_tau_choice(df):
    t4 = report.table4(df)
    assert t4.loc[(5.0, 15), ("T1", "mean")] == pytest.approx(0.63)
    assert t4.loc[(5.0, 15), ("T1", "paper")] == pytest.approx(0.769)
    assert t4.loc[(5.0, 15), ("T1", "chosen")] == 2
    assert t4.loc[(0.5, 15), ("T1", "chosen")] == 0


def test_best_model_tables(df):
    t6 = report.table6(df)
    assert t6.attrs["model"] == "M3+ensemble" and t6.attrs["p"] == 70
    ours = t6["ours"].drop(columns="recall")
    # rows follow the paper's order, other (= melanoma) first; summed over the two seeds
    assert list(ours.columns) == ["other", "glaucoma", "amd", "dr", "normal"]
    assert ours.loc["normal", "normal"] == 2 * 14 + 1
    assert ours.loc["other (paper: melanoma)", "other"] == 2 * 10
    assert t6[("paper", "melanoma")].iloc[0] == 195
    tk = report.topk_by_class(df)
    assert tk.attrs["model"] == "M3+ensemble"
    assert tk.loc["normal", ("top1", "mean")] == pytest.approx(0.43)
    assert tk.loc["other (paper: melanoma)", ("top5", "paper")] == pytest.approx(0.96)
    assert tk.loc["all", ("top1", "mean")] == pytest.approx(0.43 + 0.02)
    bl = report.bleu_by_class(df)
    assert bl.loc["dr", ("bleu_paper", "mean")] == pytest.approx(0.35 + 0.02)
    assert bl.loc["dr", ("bleu_paper", "paper")] == pytest.approx(0.3986)
    ea = report.error_analysis(df)
    assert ea.attrs["model"] == "M3+ensemble"
    assert ea.loc["T1 correct, BLEU < 0.2", ("count", "mean")] == pytest.approx(10.5)
    assert ea.loc["T1 correct, BLEU < 0.2", ("rate", "mean")] == pytest.approx(0.105)
    assert ea.loc["T1 correct, BLEU < 0.2", ("count", "paper")] == 42
    assert ea.loc["test samples", ("rate", "paper")] == pytest.approx(1.0)


def test_format_and_headline(df):
    shown = report.fmt(report.table5(df))
    assert shown.loc[("M2", 15), ("T1", "ours")] == "0.660 ± 0.014 (2)"
    assert shown.loc[("M2", 15), ("T1", "paper")] == "0.746"
    md = report.headline_markdown("synthetic", df=df)
    assert "| M3+ensemble |" in md and "supported" in md
    assert report.inventory(df).loc["M2", 15] == 2


def test_plots_do_not_crash_on_partial_results(df):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for part in (df, df[df.stage == "m1"], df.iloc[0:0]):
        for fig in report.report_figures(part).values():
            plt.close(fig)


def test_export_report(results_folder, tmp_path, claims_table_calls):
    from repro.report import claim_set
    from repro.report.claims_view import METHOD_NOTE

    calls = claims_table_calls
    out, figs = tmp_path / "report", tmp_path / "figures"
    written = report.export_report("synthetic", results_root=results_folder.parent, out_dir=out, figures_dir=figs)
    # the claims are computed once, in this process; notebook 06's kernel reads them from the build's file
    assert len(calls) == 1 and calls[0]["per_p"] is True
    assert written["claims"] == out / claim_set.CLAIMS_FILE
    html = out / "report.html"
    assert html.exists() and 10_000 < html.stat().st_size < 2_000_000
    text = html.read_text(encoding="utf-8")
    assert "Table 5" in text and "M3+ensemble" in text and "Traceback" not in text
    assert list((out / "tables").glob("*.tex"))
    assert "\\toprule" in (out / "tables" / "table5.tex").read_text(encoding="utf-8")
    assert {p.name for p in figs.glob("*.png")} >= {"synthetic_metric_vs_p.png", "synthetic_confusion.png"}
    assert written["html"] == html
    summary = pd.read_json(results_folder / "06_report.json", typ="series")
    assert summary["runs_per_stage"]["m1"] == 7 * len(PS) * len(SEEDS)
    assert summary["claims_origin"] == claim_set.READ.format(name=claim_set.CLAIMS_FILE)
    assert len(summary["claims"]) == len(report.load_claims(written["claims"], report.load_results(
        "synthetic", results_root=results_folder.parent)).pooled) >= 18
    # the method and the verdicts in words, in the HTML, the headline and the README's table
    assert METHOD_NOTE.split(". ")[0] in text and "inconclusive: smaller than" in text and "Holm" in text
    headline = (out / "headline.md").read_text(encoding="utf-8")
    assert METHOD_NOTE in headline and "Where T1's two metrics disagree" in headline
    assert (out / "claims.md").read_text(encoding="utf-8").startswith("| claim | A − B | T1 balanced accuracy |")
    assert {"claims.tex", "claims_per_p.tex", "claims.csv", "claims_per_p.csv"} <= {p.name for p in (out / "tables").iterdir()}


def test_table4_has_balanced_accuracy(df):
    """Table 4 shows T1's main metric (balanced accuracy, no paper value) before T1 accuracy."""
    t4 = report.table4(df)
    assert list(dict.fromkeys(t4.columns.get_level_values(0))) == ["T1 bacc", "T1", "T2", "T3"]
    assert t4.loc[(5.0, 15), ("T1 bacc", "mean")] == pytest.approx(0.63 - 0.05)
    assert ("T1 bacc", "paper") not in t4.columns and ("T1 bacc", "chosen") not in t4.columns
    shown = report.fmt(t4)
    assert shown.loc[(5.0, 15), ("T1 bacc", "ours")] == "0.580 ± 0.014 (2)"
    assert shown.loc[(5.0, 15), ("T1", "paper")] == "0.769"


def test_missing_expects_the_tau_study_of_tau_seed_only(df):
    """``quick`` runs the τ study for seed 0 only (tau_seed = 0): seed 1 without it is by design, not missing."""
    sub = df[~((df.stage == "tau") & (df.seed == 1))]
    quick = report.missing(sub, profile="quick")
    assert not any("tau-" in n for n in quick)
    assert quick[0].startswith("8 of 80 expected result files are missing")  # only the two baselines
    assert report.by_design(sub, "quick") == [
        "The τ study (Table 4) runs for seed 0 only (profile `quick`, setting `tau_seed = 0`): M2 and M3 of "
        "seed 1 use the τ that seed 0's study chose at each p."]
    # a profile that runs the study per seed (smoke: tau_seed None) expects it for every seed
    smoke = report.missing(sub, profile="smoke")
    assert smoke[0].startswith("32 of 104")
    assert ("tau-T1-tau0.5, tau-T1-tau1, tau-T1-tau5, tau-T1-tau10 and 8 more (12 models; seed 1, every p): "
            "run notebooks/04_temperature.ipynb") in smoke
    assert report.by_design(sub, "smoke") == []
    # seed 0's own τ study missing is a real gap under quick
    no_tau0 = df[~((df.stage == "tau") & (df.seed == 0) & (df.p == 70))]
    assert any("tau-T1-tau0.5" in n and "p = 70" in n for n in report.missing(no_tau0, profile="quick"))


def test_missing_is_a_short_summary(df):
    """Scattered gaps: a count first, then at most ``max_lines`` compact lines, never a wall of text."""
    rng = np.random.default_rng(0)
    keep = rng.random(len(df)) > 0.3
    sub = df[keep]
    notes = report.missing(sub, profile="smoke", max_lines=5)
    n_gone = int((~keep).sum())
    assert notes[0].startswith(f"{n_gone + 8} of 104 expected result files are missing")  # + the baselines
    assert len(notes) <= 1 + 5 + 1 + 1  # count, lines, "… and k more", absent p values
    assert any(n.startswith("… and ") for n in notes)
    assert all(len(n) < 200 for n in notes)


def test_counts_print_as_integers(df):
    """Counts print as whole numbers ("100 ± 0", "20"), a non-whole mean or std with one decimal."""
    ea = report.fmt(report.error_analysis(df), {"count": 1, "rate": 3})
    assert ea.loc["test samples", ("count", "ours")] == "100 ± 0 (2)"
    assert ea.loc["test samples", ("count", "paper")] == "1082"
    assert ea.loc["T1 correct, BLEU < 0.2", ("count", "ours")] == "10.5 ± 0.7 (2)"
    assert ea.loc["T1 correct, T2 wrong", ("count", "ours")] == "21 ± 1.4 (2)"
    bl = report.fmt(report.bleu_by_class(df))
    assert list(bl[("test images", "mean")]) == ["20"] * 5 + ["100"]


def test_full_tables_are_not_truncated(df):
    """With :func:`report.setup_display`, pandas shows every row of the per-p claims (no "...")."""
    claims = report.claims_display(report.claims_for(df).table, pooled_only=False).set_index(["claim", "task",
                                                                                             "comparison"])
    assert len(claims) > 60
    with pd.option_context("display.max_rows", 60, "display.max_columns", 20, "display.max_colwidth", 50,
                           "display.width", 80):
        assert "rows ×" in claims._repr_html_()
        report.setup_display()
        html = claims._repr_html_()
    assert "rows ×" not in html and "<td>...</td>" not in html and html.count("<tr>") > len(claims)


@pytest.mark.parametrize("channel", ["curve", "ipc"])
def test_report_kernel_starts_without_the_tcp_warning(channel, tmp_path, capfd, monkeypatch):
    """The report's kernel runs on an encrypted (CurveZMQ) channel, or on ipc where pyzmq lacks CurveZMQ:
    ipykernel prints no "running over TCP without encryption" warning."""
    import glob
    import os
    import tempfile

    import nbformat
    import papermill
    import zmq

    from repro.sweep.kernel import DEFAULT_KERNEL, kernel_transport

    if channel == "ipc":
        real_has = zmq.has
        monkeypatch.setattr(zmq, "has", lambda feature: feature != "curve" and real_has(feature))
    opts = kernel_transport()
    km = opts["config"].KernelManager
    assert (km.get("transport_encryption"), km.get("transport", "tcp")) == (
        ("auto", "tcp") if channel == "curve" else (None, "ipc"))

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, str(tmp_path / "t.ipynb"))
    out = papermill.execute_notebook(str(tmp_path / "t.ipynb"), str(tmp_path / "o.ipynb"), kernel_name=DEFAULT_KERNEL,
                                     progress_bar=False, **opts)
    assert out.cells[0].outputs[0]["text"].strip() == "42"
    err = capfd.readouterr().err
    assert "without encryption" not in err
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"repro-kernel-{os.getpid()}-*"))  # ipc sockets removed


def test_missing_names_unreadable_files_without_absolute_paths(results_folder, tmp_path):
    import shutil

    folder = tmp_path / "synthetic"
    shutil.copytree(results_folder, folder)
    (folder / "p15" / "seed0" / "m2-single.json").write_text("{not json", encoding="utf-8")
    with pytest.warns(UserWarning, match="skipping unreadable result"):
        df = report.load_results("synthetic", results_dir=folder)
    import os

    from repro.paths import PROJECT_ROOT

    note = report.missing(df)[0]
    bad = folder / "p15" / "seed0" / "m2-single.json"
    assert note == f"1 unreadable result file(s) skipped: {os.path.relpath(bad.resolve(), PROJECT_ROOT)}"
    assert not note.split(": ", 1)[1].startswith("/")
