"""The ablation registry: one entry is all notebook 07's loop and the report's section need.

A toy ablation (two constant T1 predictors on seeded random labels, scored on accuracy) is registered
in the test; notebook 07's loop (:func:`repro.report.ablations.run_ablations`) runs it, writes its
result files and record, and the report's section (:func:`repro.report.ablations.show_ablations`) shows
its numbered title and the paired effect computed from those files.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from repro.errors import ConfigError
from repro.io import read_json, write_json
from repro.names import ABLATION_STAGE, P_ENDS, P_VALUES, result_file
from repro.report import ablations as section
from repro.report.ablation_registry import ABLATIONS, NOTEBOOK, Ablation, numbered, register
from repro.report.ablation_tables import ABLATION_RE, AblationView, fmt_effect, load_ablation_results, paired_effect

N_LABELS, N_CLASSES = 60, 5
TOY_NAMES = ("toy-majority", "toy-zero")
TOY_FILES = tuple(result_file(ABLATION_STAGE, n) for n in TOY_NAMES)


def toy_labels(p: int, seed: int) -> np.ndarray:
    return np.random.default_rng([p, seed]).integers(0, N_CLASSES, N_LABELS)


def toy_accuracies(p: int, seed: int) -> dict[str, float]:
    """Accuracy of always predicting the most frequent class, and of always predicting class 0."""
    y = toy_labels(p, seed)
    return {"toy-majority": float(np.mean(y == np.bincount(y).argmax())), "toy-zero": float(np.mean(y == 0))}


def run_toy(ctx) -> dict:
    """The toy runner: predicts the labels of this (p, seed) and writes one result JSON per predictor."""
    y = toy_labels(ctx.p, ctx.seed)
    preds = {"toy-majority": np.full_like(y, np.bincount(y).argmax()), "toy-zero": np.zeros_like(y)}
    out = {}
    for name, pred in preds.items():
        acc = float(np.mean(pred == y))
        write_json(ctx.run_results / result_file(ABLATION_STAGE, name),
                   {"stage": ABLATION_STAGE, "name": name, "p": ctx.p, "seed": ctx.seed,
                    "metrics": {"test": {"coarse": {"accuracy": acc, "n": int(y.size)}}}})
        out[name] = acc
    return {"accuracy": out}


def toy_view(results_dir) -> AblationView:
    """Majority minus class 0 on T1 accuracy, paired by (p, seed), from the result files."""
    df = load_ablation_results(results_dir)
    df = df[df["name"].isin(TOY_NAMES)] if not df.empty else pd.DataFrame(columns=["name", "p", "seed", "T1_acc"])
    scores = {n: df[df["name"] == n].set_index(["p", "seed"])["T1_acc"].astype(float) for n in TOY_NAMES}
    effect = paired_effect(scores["toy-majority"], scores["toy-zero"])
    table = df[["name", "p", "seed", "T1_acc"]].reset_index(drop=True)
    return AblationView(table, f"Majority class minus class 0, T1 accuracy: {fmt_effect(effect)}.", None, effect)


TOY = Ablation("toy", "Toy: the majority class vs class 0", "Two constant predictors on seeded random labels.",
               toy_view, run_toy, ps=(15,), files=TOY_FILES)


def toy_ctx(results_dir, p: int, seed: int):
    """What the loop uses of a :class:`repro.experiments.context.Context`."""
    return SimpleNamespace(p=p, seed=seed, profile=SimpleNamespace(name="toy"), results_dir=results_dir,
                           run_results=results_dir / f"p{p}" / f"seed{seed}")


@pytest.fixture()
def shown(monkeypatch):
    """Everything the section functions display, in order."""
    out: list = []
    monkeypatch.setattr(section, "display", out.append)
    return out


@pytest.fixture()
def only_toy():
    """The registry holding only the toy ablation (restored afterwards)."""
    saved = dict(ABLATIONS)
    ABLATIONS.clear()
    try:
        yield register(TOY)
    finally:
        ABLATIONS.clear()
        ABLATIONS.update(saved)


@pytest.fixture()
def with_toy():
    """The built-in registry with the toy ablation appended (removed afterwards)."""
    try:
        yield register(TOY)
    finally:
        ABLATIONS.pop("toy", None)


def _texts(shown) -> list[str]:
    return [getattr(x, "data", "") or "" for x in shown]


def test_builtin_registry_entries():
    assert list(ABLATIONS) == ["compression", "hinton", "subclass", "transfer", "imbalance", "leakage",
                               "label_savings", "authors"]
    assert numbered("hinton") == "2 · The conventional KD sweep (Hinton): α × T on T1"
    for key, entry in ABLATIONS.items():
        assert set(entry.ps) <= set(P_VALUES), key
        if entry.run is None:   # computed from other results: no files of its own
            assert entry.files == () and not entry.runs_at(15), key
            continue
        assert entry.files, key
        # the report's reader finds every result file the registry says a run writes
        results = [f for f in entry.files if f.startswith(f"{ABLATION_STAGE}-")]
        assert results and all(ABLATION_RE.match(f) for f in results), key
    assert {k for k, e in ABLATIONS.items() if e.ps == P_ENDS} == {"hinton", "transfer", "authors"}
    files = [f for e in ABLATIONS.values() for f in e.files]
    assert len(files) == len(set(files)) == 3 + 12 + 4 + 4 + 3 + 2 + 8


def test_register_rejects_a_taken_key_and_a_p_outside_the_study():
    with pytest.raises(ConfigError, match="'hinton' is already registered"):
        register(Ablation("hinton", "again", "", toy_view))
    with pytest.raises(ConfigError, match=r"p = \[20\]"):
        register(Ablation("toy20", "t", "", toy_view, run_toy, ps=(20,)))
    assert "toy20" not in ABLATIONS
    with pytest.raises(ConfigError, match="unknown ablation 'nope'"):
        numbered("nope")


def test_notebook_loop_runs_a_toy_ablation_from_its_registry_entry(only_toy, shown, tmp_path):
    folder = tmp_path / "toy"
    for seed in (0, 1):
        rec = section.run_ablations(toy_ctx(folder, 15, seed))
        run = folder / "p15" / f"seed{seed}"
        written = read_json(run / f"{NOTEBOOK}.json")   # the record, as written (NaN as null)
        assert set(written) == set(rec) == {"notebook", "profile", "p", "seed", "toy"}
        toy = rec["toy"]
        assert written["toy"]["finding"] == toy["finding"] and written["toy"]["files"] == toy["files"]
        assert toy["files"] == list(TOY_FILES)
        want = toy_accuracies(15, seed)
        for name, file in zip(TOY_NAMES, TOY_FILES):   # the registered result files, with what the run computed
            res = read_json(run / file)
            assert res["name"] == name and res["metrics"]["test"]["coarse"]["accuracy"] == pytest.approx(want[name])
        assert toy["accuracy"] == pytest.approx(want)
    # after two seeds the finding pools both pairs
    diffs = [toy_accuracies(15, s)["toy-majority"] - toy_accuracies(15, s)["toy-zero"] for s in (0, 1)]
    assert toy["effect"]["n_pairs"] == 2 and toy["effect"]["effect"] == pytest.approx(np.mean(diffs))
    assert f"{np.mean(diffs):+.3f}" in toy["finding"]
    texts = _texts(shown)
    assert "## 1 · Toy: the majority class vs class 0\n\nTwo constant predictors on seeded random labels." in texts
    assert toy["finding"] in texts
    # at a p the entry does not run at: skipped, nothing written, the pooled view still shown
    rec = section.run_ablations(toy_ctx(folder, 30, 0))
    assert rec["toy"]["skipped"] == "runs at p in [15] only" and rec["toy"]["finding"] == toy["finding"]
    assert not any((folder / "p30" / "seed0" / f).exists() for f in TOY_FILES)


def test_notebook_loop_fails_when_a_runner_misses_a_registered_file(shown, tmp_path):
    entry = Ablation("toy_missing", "t", "", toy_view, run_toy, ps=(15,),
                     files=TOY_FILES + (result_file(ABLATION_STAGE, "toy-forgotten"),))
    register(entry)
    try:
        with pytest.raises(ConfigError, match=r"did not write \['ablation-toy-forgotten.json'\]"):
            section.run_ablation(toy_ctx(tmp_path / "toy", 15, 0), "toy_missing")
    finally:
        ABLATIONS.pop("toy_missing")


def test_report_section_shows_the_toy_after_the_builtin_ablations(with_toy, shown, tmp_path):
    folder = tmp_path / "toy"
    for seed in (0, 1, 2):
        run_toy(toy_ctx(folder, 15, seed))
    views = section.show_ablations(folder)
    assert list(views) == ["compression", "hinton", "subclass", "transfer", "imbalance", "leakage",
                           "label_savings", "authors", "toy"]
    diffs = [toy_accuracies(15, s)["toy-majority"] - toy_accuracies(15, s)["toy-zero"] for s in (0, 1, 2)]
    assert views["toy"].effect["effect"] == pytest.approx(np.mean(diffs)) and views["toy"].effect["n_pairs"] == 3
    texts = _texts(shown)
    assert f"### 9 · Toy: the majority class vs class 0\n\n{views['toy'].finding}" in texts
    # the toy's table is shown right after its heading; the built-in ones say they have no runs yet
    i = texts.index(f"### 9 · Toy: the majority class vs class 0\n\n{views['toy'].finding}")
    table_shown = shown[i + 1].data   # the tidy HTML table of repro.report.display.show_table
    assert len(views["toy"].table) == 6 and table_shown.count("<tbody>") == 1
    assert table_shown.split("<tbody>")[1].count("<tr") == 6
    assert "no paired runs yet" in views["imbalance"].finding
    assert section.ablation_findings(views)["toy"] == views["toy"].finding
