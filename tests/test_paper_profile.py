"""The GPU path is not dead code: the ``paper`` profile (ResNet-50, images in, every stage trained) runs
notebooks 01-03 end to end on the CPU at tiny size, through the code that runs on CUDA.

Overrides, through ``$REPRO_PROFILE_OVERRIDES`` (the notebooks take the profile by name): 64 px,
20 patients, 1 epoch, batch 16, M3 on the pool minus L_p, τ = 5 given (no τ study), and
``pretrained=False``: torchvision's ResNet-50 ImageNet weights need a download this offline test cannot
make (with ``pretrained=True`` and no cached file that is one
:class:`~repro.errors.WeightsUnavailableError`, ``tests/test_encoders.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from repro.names import MAIN, PRIMARY, SUBSETS, TASKS, TAU_SELECTION_FILE, result_file, subset_tasks
from repro.paths import PROJECT_ROOT
from repro.profiles import PROFILE_OVERRIDES_ENV, get_profile

papermill = pytest.importorskip("papermill")

P, SEED = 15, 0
TINY_PAPER = {"image_size": 64, "max_patients": 20, "max_epochs": 1, "kd_max_epochs": 1, "patience": 1,
              "batch_size": 16, "pretrained": False, "unlabeled": "rest", "t2_min_count": 3, "vocab_min_count": 1}
#: notebooks 02 and 03 distil at a given τ: the τ study (notebook 04's job, which 02 would otherwise run
#: first) is left out to keep the test small; tests/test_notebooks.py covers it under ``smoke``
TAU = 5.0


@pytest.fixture(scope="module")
def paper_run(odir_root, module_tmp):
    """Notebooks 01, 02, 03 under the tiny ``paper`` profile (p = 15, seed 0) into a temp folder."""
    from repro.sweep.kernel import DEFAULT_KERNEL, kernel_env

    tmp = module_tmp
    results = tmp / "results" / "paper"
    env = {"REPRO_RUNS": str(tmp / "runs"), "REPRO_FIGURES": str(tmp / "figures"), "MPLBACKEND": "Agg",
           PROFILE_OVERRIDES_ENV: json.dumps({"paper": TINY_PAPER})}
    with pytest.MonkeyPatch.context() as mp, kernel_env():
        for k, v in env.items():
            mp.setenv(k, v)
        for nb in ("01_m1_teachers", "02_m2_distill", "03_m3_unlabeled"):
            papermill.execute_notebook(
                str(PROJECT_ROOT / "notebooks" / f"{nb}.ipynb"), str(tmp / f"{nb}.executed.ipynb"),
                parameters={"profile": "paper", "p": P, "seed": SEED, "data_root": str(odir_root),
                            "results_dir": str(results), **({} if nb.startswith("01") else {"taus": TAU})},
                kernel_name=DEFAULT_KERNEL, progress_bar=False, cwd=str(PROJECT_ROOT / "notebooks"))
        from repro.experiments.context import make_context

        # the same settings given explicitly as well: make_context's per-process data cache is keyed by them
        ctx = make_context("paper", p=P, seed=SEED, data_root=odir_root, results_dir=results,
                           runs_dir=tmp / "runs" / "paper",
                           **{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_PAPER.items()})
        yield {"run": results / f"p{P}" / f"seed{SEED}", "ctx": ctx}


def _read(path: Path) -> dict:
    assert path.exists(), f"{path.name} was not written"
    return json.loads(path.read_text())


def _check_settings(res: dict) -> None:
    s = res["profile_settings"]
    assert res["profile"] == "paper" and s["encoder"] == "resnet50" and s["trainable"] == "all"
    assert s["image_size"] == 64 and s["pretrained"] is False and s["taps"] is None
    assert res["device"] in ("cpu", "cuda") and res["train_images_per_s"] > 0


def _unit(x) -> bool:
    return 0.0 <= float(x) <= 1.0


def test_paper_m1_teachers_train_every_encoder_stage(paper_run):
    ctx = paper_run["ctx"]
    n_train = len(ctx.indices("train", p=P))
    assert ctx.profile.image_size == 64 and get_profile("paper").image_size == 64  # the test's overrides
    for subset in SUBSETS:
        res = _read(paper_run["run"] / result_file("m1", subset))
        _check_settings(res)
        assert res["data"]["n_train"] == n_train and len(res["history"]) == 1
        for task in subset_tasks(subset):
            assert _unit(res["metrics"]["test"][task][PRIMARY[task][0]])
    assert not (paper_run["run"] / result_file("baseline", "probe")).exists()  # no frozen features to probe

    from repro.models.checkpoints import load_checkpoint

    trained, _ = load_checkpoint(ctx.checkpoint_path("m1", MAIN))
    assert len(trained.trunk) == 0 and list(trained.top.stages) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert trained.config["pretrained"] is False
    init = ctx.new_model(subset_tasks(MAIN)).state_dict()  # the same seeded initialisation
    enc = {k: v for k, v in trained.state_dict().items() if k.startswith("top.stages.") and v.is_floating_point()}
    assert enc and all(not torch.equal(v, init[k]) for k, v in enc.items() if not k.endswith("num_batches_tracked"))


def test_paper_m2_and_m3(paper_run):
    run = paper_run["run"]
    assert not (run / TAU_SELECTION_FILE).exists()
    for stage in ("m2", "m3"):
        for name in ("single", "ensemble"):
            res = _read(run / result_file(stage, name))
            _check_settings(res)
            assert res["params"]["tau_source"] == str(TAU) and res["params"]["ensemble"] == (name == "ensemble")
            assert res["params"]["taus"] == {t: TAU for t in TASKS}
            terms = {k for k in res["history"][0] if k.startswith("train/")}
            assert {f"train/kd/{t}" for t in TASKS} <= terms
            assert any(k.startswith("train/ce/") for k in terms) == (stage == "m2")
            for task in TASKS:
                assert _unit(res["metrics"]["test"][task][PRIMARY[task][0]])
    ens = _read(run / result_file("ensemble", "m1"))
    assert ens["members"] == list(SUBSETS)
    for nb in ("01_m1_teachers", "02_m2_distill", "03_m3_unlabeled"):
        assert _read(run / f"{nb}.json")["profile"] == "paper"
