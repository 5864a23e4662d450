"""Ablation 6 · split leakage: the same M1 run on an image-level split (as the authors' code did) and on
the study's patient-level split.

The image-level split (:func:`repro.data.splits.image_level_split`) assigns every eye image on its own,
so a patient's two eyes can land in train and test; it holds the same images as the patient split and
is written beside the runs (``<runs>/<profile>/splits-image/``, git-ignored), never over the committed
split file. Each run is tested on its own split's test set, as each protocol would report it.
Result files: ``ablation-leakage-image.json`` and ``ablation-leakage-patient.json``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from repro.errors import DataError
from repro.experiments.ablations.variants import run_supervised, summary
from repro.experiments.context import Context
from repro.names import MAIN, subset_tasks

UNITS = ("patient", "image")
LEAKAGE_SUBSET = MAIN   # the paper's multi-task M1: cheap on the cached features
SPLIT_FOLDER = "splits-image"


def leakage_name(unit: str) -> str:
    """``leakage-image`` / ``leakage-patient``."""
    return f"leakage-{unit}"


def image_split_context(ctx: Context) -> Context:
    """``ctx`` on the image-level split of the same images (same model inputs, labels folded on its pool)."""
    from repro.data.prepare import prepare_data
    from repro.data.splits import image_level_split, read_split, split_to_csv
    from repro.io import atomic_write_text

    prep = ctx.prepared
    folder = ctx.runs_dir / SPLIT_FOLDER
    path = folder / prep.split_file.name   # the name prepare_data looks for; the folder sets it apart
    frame = image_level_split(read_split(prep.split_file), prep.split_seed)
    text = split_to_csv(frame)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)
    img = prepare_data(data_root=prep.data_root, profile=ctx.profile, split_seed=prep.split_seed,
                       split_directory=folder, with_images=False,
                       skip_bad_images=len(prep.bad_images) > 0)
    same_images = np.array_equal(img.manifest["image"].to_numpy(), prep.manifest["image"].to_numpy())
    split_used = (img.split_file.resolve() == path.resolve()
                  and (img.manifest["split"].to_numpy() == frame.set_index("image").loc[img.manifest["image"], "split"]
                       .to_numpy()).all())
    if not (same_images and split_used):
        raise DataError(f"the image-level split {path} was not used as written (prepared data read "
                        f"{img.split_file}, same images: {same_images}); delete {folder} and run again")
    return replace(ctx, prepared=img, _bank=ctx.bank())


def leakage_stats(prepared, p: int) -> dict[str, Any]:
    """How much a split leaks: patients with images in both L_p and test, and the share of test images
    whose patient has an image in L_p (0 for a patient-level split)."""
    m = prepared.manifest
    train = set(m.iloc[prepared.indices("train", p=p)]["patient_id"])
    test = m[m["split"] == "test"]
    return {"patients_in_train_and_test": int(len(train & set(test["patient_id"]))),
            "test_images_with_patient_in_train": float(test["patient_id"].isin(train).mean())}


def run_leakage(ctx: Context, subset: str = LEAKAGE_SUBSET, units=UNITS, progress: bool = True) -> dict[str, Any]:
    """M1{subset} on each split unit at ``ctx``'s p and seed; a plain dict with the image − patient test differences."""
    tasks = subset_tasks(subset)
    runs: dict[str, Any] = {}
    for unit in units:
        uctx = image_split_context(ctx) if unit == "image" else ctx
        stats = leakage_stats(uctx.prepared, ctx.p)
        res = run_supervised(uctx, leakage_name(unit), tasks, progress=progress,
                             params={"item": "leakage", "unit": unit, "subset": subset,
                                     "split_file_name": uctx.prepared.split_file.name, **stats})
        runs[unit] = {**summary(res), **stats, "split_hash": res["split_hash"]}
    diff = {}
    if set(UNITS) <= set(runs):
        a, b = runs["image"]["test"], runs["patient"]["test"]
        diff = {t: {k: a[t][k] - b[t][k] for k in a[t] if k in b.get(t, {})} for t in a if t in b}
    return {"p": ctx.p, "seed": ctx.seed, "subset": subset, "runs": runs, "image_minus_patient": diff}
