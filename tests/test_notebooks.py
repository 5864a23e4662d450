"""What the notebooks compute (recommenders-style notebook tests), and what their metadata names.

Every numbered notebook (00–07) runs once through papermill under the ``smoke`` profile into a
temporary results root (one shared run, module-scoped), in the order and with the parameters a sweep
gives them (:func:`repro.sweep.plan.plan_sweep` for p = 15, seed 0: 00, then 01, the τ study 04,
02, 03 and 07, then 05 and 06). Each test reads the result JSON a notebook wrote and asserts what it
must hold. ``pytest --nbval-lax notebooks`` separately checks that the notebooks run as committed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from repro.names import P_VALUES, PRIMARY, SUBSETS, TASKS, TAU_SELECTION_FILE, result_file, subset_tasks
from repro.paths import PROJECT_ROOT
from repro.profiles import get_profile

papermill = pytest.importorskip("papermill")

NOTEBOOKS = PROJECT_ROOT / "notebooks"
PROFILE = "smoke"
P, SEED = 15, 0


def smoke_plan(results_root: Path, figures: Path) -> list:
    """The sweep's runs of every numbered notebook for ``(smoke, p = 15, seed 0)``; Grad-CAM (05) shows that
    seed and p, and its figures go to ``figures``."""
    from repro.sweep.plan import plan_sweep

    return plan_sweep(None, PROFILE, [P], [SEED], results_root=results_root,
                      extra_params={"cam_seed": SEED, "ps": [P], "figures_dir": str(figures)})


def test_the_plan_runs_every_notebook_once_with_its_parameters(tmp_path):
    runs = smoke_plan(tmp_path / "results", tmp_path / "figures")
    stems = [r.stem for r in runs]
    assert sorted(stems) == sorted(q.stem for q in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert stems.index("04_temperature") < stems.index("02_m2_distill") and stems[-1] == "06_report"
    for r in runs:
        assert r.parameters["profile"] == PROFILE and r.parameters["results_dir"] == str(tmp_path / "results" / PROFILE)
        assert (r.p, r.seed) in ((P, SEED), (None, None))
    gradcam = next(r for r in runs if r.stem == "05_gradcam").parameters
    assert (gradcam["cam_seed"], gradcam["ps"], gradcam["figures_dir"]) == (SEED, [P], str(tmp_path / "figures"))


def test_notebooks_name_the_project_kernel():
    """Each notebook (and its jupytext script) names the kernel ``make venv`` installs, not ``python3``."""
    name, display = re.search(r'ipykernel install .*--name (\S+) --display-name "([^"]+)"',
                              (PROJECT_ROOT / "Makefile").read_text()).groups()
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        spec = json.loads(nb.read_text())["metadata"]["kernelspec"]
        assert (spec["name"], spec["display_name"]) == (name, display), nb.name
        header = nb.with_suffix(".py").read_text().split("# ---", 2)[1]
        assert f"#     name: {name}\n" in header and f"#     display_name: {display}\n" in header, nb.name


@pytest.fixture(scope="module")
def smoke(odir_root, module_tmp):
    """Run every notebook once as the sweep would (smoke profile, p = 15, seed 0) into a temp folder; return
    its paths."""
    from repro.sweep.kernel import DEFAULT_KERNEL, kernel_env

    tmp = module_tmp
    figures = tmp / "figures"
    runs = smoke_plan(tmp / "results", figures)
    env = {"REPRO_RUNS": str(tmp / "runs"), "REPRO_FIGURES": str(figures), "MPLBACKEND": "Agg",
           "REPRO_PROFILE": PROFILE}
    with pytest.MonkeyPatch.context() as mp, kernel_env():
        for k, v in env.items():
            mp.setenv(k, v)
        for run in runs:
            papermill.execute_notebook(str(run.notebook), str(tmp / f"{run.stem}.executed.ipynb"),
                                       parameters=run.parameters, kernel_name=DEFAULT_KERNEL, progress_bar=False,
                                       cwd=str(NOTEBOOKS))
    results = runs[0].results_dir
    return {"results": results, "run": results / f"p{P}" / f"seed{SEED}", "figures": figures}


def _read(path: Path) -> dict:
    assert path.exists(), f"{path.name} was not written"
    return json.loads(path.read_text())


def _in_unit(x) -> bool:
    return x is not None and not math.isnan(float(x)) and 0.0 <= float(x) <= 1.0


def test_00_data_summary(smoke):
    s = _read(smoke["results"] / "00_data.json")
    assert {"train", "val", "test"} <= set(s["splits"])
    assert {int(p) for p in s["per_p"]} == set(P_VALUES)
    counts = [s["per_p"][str(p)]["images"] for p in P_VALUES]
    assert counts == sorted(counts), "labeled fractions must be nested: L15 ⊂ L30 ⊂ … ⊂ L70"
    assert len(s["split_hash"]) >= 16


def test_01_every_m1_subset_with_metrics_in_unit_range(smoke):
    split_hash = _read(smoke["results"] / "00_data.json")["split_hash"]
    for subset in SUBSETS:
        res = _read(smoke["run"] / result_file("m1", subset))
        assert res["stage"] == "m1" and res["name"] == subset and res["profile"] == PROFILE
        assert tuple(res["tasks"]) == subset_tasks(subset)
        assert res["split_hash"] == split_hash
        for task in subset_tasks(subset):
            for split in ("val", "test"):
                for key in PRIMARY[task]:
                    assert _in_unit(res["metrics"][split][task][key]), (subset, split, task, key)
        # a teacher is trained with labels only: cross-entropy terms, no KD
        terms = {k for k in res["history"][0] if k.startswith("train/") and k != "train/total"}
        assert terms == {f"train/ce/{t}" for t in subset_tasks(subset)}
    assert _read(smoke["run"] / "01_m1_teachers.json")
    # captions carry a diversity count, and the baselines sit beside the teachers on the same split
    cap = _read(smoke["run"] / result_file("m1", "T1+T2+T3"))["metrics"]["test"]["caption"]
    assert 1 <= cap["distinct_captions"] <= cap["n"] and set(cap["exact_match_by_group"]) == set(cap["n_by_group"])
    majority = _read(smoke["run"] / result_file("baseline", "majority"))
    assert majority["split_hash"] == split_hash
    assert majority["metrics"]["test"]["caption"]["distinct_captions"] == 1
    probe = _read(smoke["run"] / result_file("baseline", "probe"))
    assert _in_unit(probe["metrics"]["test"]["coarse"]["balanced_accuracy"])


def test_04_tau_chosen_on_validation(smoke):
    sel = _read(smoke["run"] / TAU_SELECTION_FILE)
    taus = get_profile(PROFILE).taus
    assert set(sel["best"]) == set(TASKS)
    for task, code in zip(TASKS, ("T1", "T2", "T3")):
        assert float(sel["best"][task]) in taus
        runs = {tau: _read(smoke["run"] / result_file("tau", f"{code}-tau{tau:g}")) for tau in taus}
        # the chosen τ has the best validation score of the study (ties: the smaller τ)
        best = max(runs, key=lambda t: (runs[t]["best_val_score"], -t))
        assert float(sel["best"][task]) == best
        for res in runs.values():  # the τ study distils without labels
            assert all(not k.startswith("train/ce/") for k in res["history"][0])
    assert _read(smoke["run"] / "04_temperature.json")


def test_02_m2_records_tau_from_validation(smoke):
    best = _read(smoke["run"] / TAU_SELECTION_FILE)["best"]
    for name in ("single", "ensemble"):
        res = _read(smoke["run"] / result_file("m2", name))
        assert res["params"]["tau_source"] == "validation"
        assert res["params"]["taus"] == {t: float(v) for t, v in best.items()}
        assert res["params"]["ensemble"] == (name == "ensemble")
        terms = {k for k in res["history"][0] if k.startswith("train/")}
        assert {f"train/ce/{t}" for t in TASKS} | {f"train/kd/{t}" for t in TASKS} <= terms
        for task in TASKS:
            assert _in_unit(res["metrics"]["test"][task][PRIMARY[task][0]])
    ens = _read(smoke["run"] / result_file("ensemble", "m1"))
    assert ens["members"] == list(SUBSETS)
    for task in TASKS:
        assert _in_unit(ens["metrics"]["test"][task][PRIMARY[task][0]])


def test_03_m3_is_label_free(smoke):
    for name in ("single", "ensemble"):
        res = _read(smoke["run"] / result_file("m3", name))
        assert res["params"]["tau_source"] == "validation"
        assert res["params"]["alpha"] is None
        for row in res["history"]:
            terms = {k for k in row if k.startswith("train/")}
            assert terms == {f"train/kd/{t}" for t in TASKS} | {"train/total"}, terms
        for task in TASKS:
            assert _in_unit(res["metrics"]["test"][task][PRIMARY[task][0]])


def test_05_gradcam_figures(smoke):
    res = _read(smoke["results"] / "05_gradcam.json")
    assert res["ps_shown"] == [P]
    # the explained layer's map is recorded, at the profile's input size
    assert res["image_size"] == get_profile(PROFILE).image_size
    assert len(res["map_size"]) == 2 and min(res["map_size"]) >= 2
    for code in ("", "_T2", "_T3"):
        assert (smoke["figures"] / f"gradcam_{PROFILE}{code}.png").stat().st_size > 0


def test_07_ablations_record_every_item(smoke):
    from repro.experiments.ablations.hinton import HINTON_ALPHAS, HINTON_TAUS
    from repro.experiments.ablations.imbalance import IMBALANCE_POWERS
    from repro.report.ablation_registry import ABLATIONS

    rec = _read(smoke["run"] / "07_ablations.json")
    run = smoke["run"]
    assert set(ABLATIONS) <= set(rec)
    for key, entry in ABLATIONS.items():  # every registered ablation states its finding in words
        assert isinstance(rec[key]["finding"], str) and len(rec[key]["finding"]) > 20, key
        if entry.runs_at(P):   # and wrote the result files its registry entry lists
            assert rec[key]["files"] == list(entry.files) and all((run / f).exists() for f in entry.files), key
    # the full α × T grid, each a validation-selected T1 student with metrics in [0, 1]
    for a in HINTON_ALPHAS:
        for t in HINTON_TAUS:
            res = _read(run / result_file("ablation", f"hinton-a{a:g}-T{t:g}"))
            assert res["params"]["alpha"] == a and res["params"]["tau"] == t
            assert _in_unit(res["metrics"]["test"]["coarse"]["balanced_accuracy"])
    for power in IMBALANCE_POWERS:
        assert _read(run / result_file("ablation", f"imbalance-{'plain' if power == 0 else f'cb{power:g}'}"))
    # the compressed student is much smaller than its teacher, and was trained with and without KD
    cost = _read(run / "compression_cost.json")
    params = {k: m["params"]["trainable"] for k, m in cost["models"].items()}
    assert set(params) == {"teacher", "student_kd", "student_nokd"}
    assert 0 < params["student_kd"] == params["student_nokd"] < params["teacher"] / 5
    assert 0 < cost["models"]["student_kd"]["flops_features"] < cost["models"]["teacher"]["flops_features"]
    kd = _read(run / result_file("ablation", "compress-student-kd"))
    nokd = _read(run / result_file("ablation", "compress-student-nokd"))
    assert any(k.startswith("train/kd/") for k in kd["history"][0])
    assert not any(k.startswith("train/kd/") for k in nokd["history"][0])
    # the image-level split puts patients in both train and test, the patient-level split never does
    image = _read(run / result_file("ablation", "leakage-image"))
    patient = _read(run / result_file("ablation", "leakage-patient"))
    assert image["params"]["patients_in_train_and_test"] > 0
    assert patient["params"]["patients_in_train_and_test"] == 0
    assert image["split_hash"] != patient["split_hash"]
    for init in ("imagenet", "random"):
        for model in ("m1", "m3"):
            assert _read(run / result_file("ablation", f"transfer-{init}-{model}"))["params"]["init"] == init
    for toggle in ("kd_mean", "tau_authors", "last_epoch"):
        res = _read(run / result_file("ablation", f"authors-m2-{toggle}"))
        assert _in_unit(res["metrics"]["test"]["coarse"]["balanced_accuracy"])


def test_06_report_summary(smoke):
    s = _read(smoke["results"] / "06_report.json")
    assert s["profile"] == PROFILE
    # every stage that 01–04 ran at p = 15, seed 0 is counted in the report
    assert s["runs_per_stage"]["m1"] == len(SUBSETS)
    assert s["runs_per_stage"]["m2"] == 2 and s["runs_per_stage"]["m3"] == 2
    assert s["runs_per_stage"]["tau"] == 3 * len(get_profile(PROFILE).taus)
    assert s["p_values"] == [P] and s["seeds"] == [SEED]
    for task in ("T1", "T2", "T3"):
        assert s["best_models"][task]["p"] == P
    assert s["claims"], "the report states the paper's claims with verdicts"
    # the ablations of notebook 07 each have a finding in the report
    from repro.report.ablation_registry import ABLATIONS

    assert list(s["ablations"]) == list(ABLATIONS) and all(isinstance(f, str) and f for f in s["ablations"].values())
