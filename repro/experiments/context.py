"""One ``(profile, p, seed)`` experiment: data, inputs, and the run of a single model to its result JSON.

Stages (M1 here, M2/M3/τ in :mod:`repro.experiments.m2m3`) call :func:`train_and_record`;
a run whose result JSON and checkpoint already exist is loaded, not retrained, and only when the result
records this run's data identity (image bytes and labels, :mod:`repro.data.identity`): a result of other
data is an :class:`~repro.data.identity.IdentityMismatchError` naming both identities and ``--force``. Checkpoints live under
``<runs>/<profile>/<data identity>-<split hash>/p<p>/seed<s>/`` (:attr:`Context.run_artifacts`), and a
later stage loads an earlier one's model only through :func:`require_checkpoint`, which refuses a model
trained on other data, another split or other profile settings.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.device import numerics, resolve_device, seed_everything, set_threads
from repro.errors import ConfigError, MissingStageError
from repro.io import clean_stale_temps, read_json, write_json
from repro.names import (NOTEBOOK_OF, SUBSETS, TASKS, check_p, checkpoint_file, notebook_path, result_file,
                         subset_code)
from repro.paths import check_writable, layout, layout_for_results, project_relative
from repro.phases import DATA, EVALUATION, FEATURES, MODEL_SETUP, TRAINING, VALIDATION, WRITING, move, phase
from repro.profiles import Profile, get_profile, setting_differences
from repro.provenance import git_commit, peak_memory_mb, versions


def load_result(ctx: Context, stage: str, name: str) -> dict[str, Any] | None:
    path = ctx.result_path(stage, name)
    return read_json(path) if path.exists() else None


@lru_cache(maxsize=4)
def _prepared(data_root: str | None, profile: Profile, skip_bad_images: bool, strict_keywords: bool, lay,
              allow_outside_root, label_stamp, split_seed: int):
    """The prepared data of one data root and profile, once per process.

    Keyed by the whole (hashable) profile, never by its name: a modified profile (another image size,
    taxonomy, ``max_patients`` or split seed) gets data prepared with its own settings; and by the label
    table's :func:`label_stamp`, so a table edited in this process's lifetime is prepared again; ``split_seed``
    is the patient split of the run (:func:`split_seed_of`).
    """
    from repro.data.prepare import prepare_data

    return prepare_data(data_root=data_root, profile=profile, split_seed=split_seed, skip_bad_images=skip_bad_images,
                        strict_keywords=strict_keywords, layout=lay, allow_outside_root=allow_outside_root)


def label_stamp(data_root) -> tuple:
    """``(size, mtime_ns)`` of the data folder's label table: a table edited in this process's lifetime
    is prepared again rather than served from the in-process cache."""
    from repro.data.sources import MANIFEST_CSV, ODIR_CSV
    from repro.paths import resolve_data_root

    root = resolve_data_root(data_root)
    for table in ((root,) if root.is_file() else (root / ODIR_CSV, root / MANIFEST_CSV)):
        try:
            st = os.stat(table)
            return (str(table), st.st_size, st.st_mtime_ns)
        except OSError:
            continue
    return ()


SPLIT_MODES = ("per_seed", "fixed")


def split_seed_of(profile: Profile, seed: int) -> int:
    """The patient split a run of ``seed`` uses: its own (``profile.split == "per_seed"``, the default: the
    spread over seeds then includes split and test sampling) or ``profile.split_seed`` for every seed
    (``"fixed"``: the paper's one split)."""
    if profile.split not in SPLIT_MODES:
        raise ConfigError(f"profile setting split={profile.split!r} is not allowed; use one of {list(SPLIT_MODES)}")
    return int(seed) if profile.split == "per_seed" else int(profile.split_seed)


#: profile settings a stage's teachers must share with it (besides data, split, classes and vocabulary)
MATCHING_SETTINGS = ("name", "encoder", "image_size", "taps", "trainable", "pretrained")


def data_key(prepared) -> str:
    """``<data identity>-<first 8 hex of the split hash>``: the folder that keys a run's checkpoints."""
    ident = getattr(prepared, "data_identity", "") or str(prepared.dataset_name)
    return f"{ident}-{str(prepared.split_hash)[:8]}"


@dataclass
class Context:
    """Everything a stage needs for one ``(profile, p, seed)``."""

    profile: Profile
    p: int
    seed: int
    prepared: Any
    results_dir: Path
    runs_dir: Path
    device: torch.device
    _bank: Any = field(default=None, repr=False)
    cache_dir: Path | None = None   # feature cache root (None: repro.paths.cache_dir())
    prepare_args: tuple = field(default=(), repr=False)   # _prepared's arguments but the split seed

    @property
    def run_results(self) -> Path:
        return self.results_dir / f"p{self.p}" / f"seed{self.seed}"

    @property
    def run_artifacts(self) -> Path:
        """Checkpoints and teacher caches: ``<runs_dir>/<data key>/p<p>/seed<s>`` (:func:`data_key`)."""
        return self.runs_dir / data_key(self.prepared) / f"p{self.p}" / f"seed{self.seed}"

    def result_path(self, stage: str, name: str) -> Path:
        return self.run_results / result_file(stage, name)

    def checkpoint_path(self, stage: str, name: str) -> Path:
        return self.run_artifacts / checkpoint_file(stage, name)

    def indices(self, split: str | None = None, **kw) -> np.ndarray:
        return np.asarray(self.prepared.indices(split, **kw))

    def new_model(self, tasks):
        from repro.models.mtlnet import MTLNet

        prof = self.profile
        torch.manual_seed(self.seed)  # the heads' initialisation is part of the seeded run
        with phase(MODEL_SETUP):
            return MTLNet(
                encoder=prof.encoder, tasks=tuple(tasks),
                num_classes={"coarse": len(self.prepared.coarse_classes), "fine": len(self.prepared.fine_classes)},
                vocab_size=len(self.prepared.vocab), trainable=prof.trainable, pretrained=prof.pretrained,
                decoder=prof.decoder, teacher_forcing=prof.teacher_forcing, taps=prof.taps,
                hidden=prof.decoder_hidden, embed=prof.decoder_embed,
                neck_hidden=prof.neck_hidden, neck_dropout=prof.neck_dropout, input_dropout=prof.input_dropout,
                head_hidden=prof.head_hidden, subclasses=prof.t1_subclasses,
            ).to(self.device)

    def for_seed(self, seed: int) -> "Context":
        """The same experiment with another seed: same data and folders, sharing the model inputs. With
        per-seed splits (:func:`split_seed_of`) the other seed's split is prepared; the model inputs are
        shared only when both splits hold the same images (always, unless the profile subsamples patients)."""
        prepared = self.prepared
        want = split_seed_of(self.profile, seed)
        if self.prepare_args and getattr(prepared, "split_seed", want) != want:
            prepared = _prepared(*self.prepare_args, want)
        same = prepared is self.prepared or np.array_equal(prepared.manifest["image"].to_numpy(),
                                                           self.prepared.manifest["image"].to_numpy())
        return replace(self, seed=int(seed), prepared=prepared, _bank=self._bank if same else None)

    def bank(self, model=None):
        """Model inputs for every image and view (frozen-trunk outputs are computed once and cached)."""
        if self._bank is None:
            from repro.models.inputbank import InputBank

            model = model or self.new_model(("coarse",))
            with phase(FEATURES):
                self._bank = InputBank(self.prepared, model, views=self.profile.views, device=self.device,
                                       cache_root=self.cache_dir, precision=self.profile.feature_precision,
                                       fold_bn=self.profile.fold_batchnorm)
        return self._bank

    def checkpoint_extra(self, stage: str, name: str) -> dict[str, Any]:
        """What a checkpoint records about its run, checked by :func:`require_checkpoint` of a later stage."""
        return {"stage": stage, "name": name, "p": self.p, "seed": self.seed, "profile": self.profile.to_dict(),
                "data_identity": getattr(self.prepared, "data_identity", ""),
                "split_file": project_relative(self.prepared.split_file), **self.split_record()}

    def split_record(self) -> dict[str, Any]:
        """``{"split_seed", "split_mode"}``: which patient split this run used (recorded in every result)."""
        return {"split_seed": int(getattr(self.prepared, "split_seed", split_seed_of(self.profile, self.seed))),
                "split_mode": self.profile.split}


def make_context(profile: str | Profile = "quick", p: int = 15, seed: int = 0, data_root=None,
                 results_dir=None, runs_dir=None, skip_bad_images: bool = False, strict_keywords: bool = False,
                 allow_outside_root: bool | None = None, **overrides) -> Context:
    """Load (once per process and profile) the prepared data of ``profile`` and set up output folders.

    ``profile`` is a name or a :class:`Profile` (a modified one included: its own settings prepare the data);
    ``overrides`` change settings of it.

    ``results_dir`` is ``R/<profile>`` of a results root ``R`` (default ``$REPRO_RESULTS`` or ``out/``); the
    runs folder (``runs_dir``, default ``R/runs/<profile>`` or ``$REPRO_RUNS/<profile>``), the cache
    (``R/cache`` or ``$REPRO_CACHE``) and split files of non-reference data (``R/splits``) follow from it
    (:class:`repro.paths.Layout`). Every output folder is checked writable before any data is prepared.
    """
    from repro.sweep.plan import check_seed

    p = check_p(p)
    seed = check_seed(seed)
    prof = get_profile(profile, **overrides)
    set_threads(prof)
    name = prof.name
    lay = layout_for_results(results_dir) if results_dir else layout()
    res = Path(results_dir).expanduser() if results_dir else lay.results(name)
    runs = Path(runs_dir).expanduser() if runs_dir else lay.profile_runs(name)
    for folder, what in ((res, "results folder"), (runs, "runs folder"), (lay.cache, "cache folder")):
        check_writable(folder, what)
    args = (None if data_root is None else str(data_root), prof, bool(skip_bad_images), bool(strict_keywords), lay,
            allow_outside_root, label_stamp(data_root))
    with phase(DATA):
        prepared = _prepared(*args, split_seed_of(prof, seed))
    ctx = Context(profile=prof, p=int(p), seed=int(seed), prepared=prepared, results_dir=res, runs_dir=runs,
                  device=resolve_device(prof.device), cache_dir=lay.cache, prepare_args=args)
    clean_stale_temps(ctx.run_artifacts, recursive=True)
    return ctx


def train_and_record(ctx: Context, stage_name: str, name: str, model, stage, train_idx, params: dict,
                     force: bool = False, progress: bool = True, max_epochs: int | None = None,
                     restore_best: bool = True) -> dict[str, Any]:
    """Fit ``model`` with ``stage``, evaluate the best state once on test, write checkpoint and result JSON.

    ``restore_best=False`` tests the last epoch's weights instead (the authors' code; ``params.restore_best``,
    ``tested_epoch`` beside ``best_epoch``)."""
    from repro.engine.evaluate import PER_IMAGE_KEY, per_image_predictions, predict, score_predictions
    from repro.engine.fit import fit
    from repro.engine.tb_log import epoch_log
    from repro.models.checkpoints import save_checkpoint

    res_path, ckpt = ctx.result_path(stage_name, name), ctx.checkpoint_path(stage_name, name)
    if not force and res_path.exists():
        stored = read_json(res_path)
        check_result_identity(ctx, res_path, stored, stage_name)
        changed = settings_changed(ctx.profile, stored)
        if ckpt.exists() and not changed:
            return stored
        if changed:
            print(f"{project_relative(res_path)} was trained with other profile settings "
                  f"({', '.join(changed)}): training it again")
    data_warnings = list(ctx.prepared.info.get("warnings", []))
    for w in data_warnings:
        print(f"warning: {w}", file=sys.stderr)
    set_threads(ctx.profile)
    gen = seed_everything(ctx.seed)
    t0 = time.perf_counter()
    bank = ctx.bank(model)
    val_idx, test_idx = ctx.indices("val"), ctx.indices("test")
    prof = replace(ctx.profile, max_epochs=stage_epochs(ctx.profile, stage.tasks, max_epochs))
    with phase(TRAINING), epoch_log(ctx.profile, ctx.results_dir, ctx.p, ctx.seed, stage_name, name) as on_epoch:
        t_fit = time.perf_counter()
        fr = fit(model, bank, ctx.prepared, np.asarray(train_idx), val_idx, stage, prof, gen,
                 desc=f"{stage_name} {name} p={ctx.p} s={ctx.seed}", progress=progress, restore_best=restore_best,
                 on_epoch=on_epoch)
    move(TRAINING, VALIDATION, time.perf_counter() - t_fit - fr.train_seconds)  # fit's per-epoch validation
    max_len = ctx.profile.max_caption_len + 1
    with phase(EVALUATION):
        val_metrics = score_predictions(ctx.prepared, val_idx, predict(model, bank, val_idx, max_len=max_len),
                                        detail=False)
        test_preds = predict(model, bank, test_idx, max_len=max_len)
        test_metrics = score_predictions(ctx.prepared, test_idx, test_preds)
    with phase(WRITING):
        save_checkpoint(ckpt, model, ctx.prepared, extra=ctx.checkpoint_extra(stage_name, name))
    result = {
        "schema": 1,
        "stage": stage_name,
        "name": name,
        "tasks": list(stage.tasks),
        "profile": ctx.profile.name,
        "p": ctx.p,
        "seed": ctx.seed,
        "params": {**params, **stage.params, "restore_best": bool(restore_best)},
        "profile_settings": ctx.profile.to_dict(),
        "data": {"dataset": ctx.prepared.dataset_name, "data_identity": getattr(ctx.prepared, "data_identity", ""),
                 "split_file": project_relative(ctx.prepared.split_file),
                 "split_hash": ctx.prepared.split_hash, "n_train": int(len(train_idx)),
                 "n_val": int(len(val_idx)), "n_test": int(len(test_idx)), **ctx.split_record()},
        "split_hash": ctx.prepared.split_hash,
        "warnings": data_warnings,
        "metrics": {"val": val_metrics, "test": test_metrics},
        PER_IMAGE_KEY: per_image_predictions(ctx.prepared, test_idx, test_preds),
        "numerics": numerics(),
        "max_epochs": prof.max_epochs,
        "best_epoch": fr.best_epoch,
        "tested_epoch": fr.tested_epoch,
        "best_val_score": fr.best_val_score,
        "history": fr.history,
        "train_images_per_s": fr.train_images_per_s,
        "wall_s": time.perf_counter() - t0,
        "peak_mem_mb": peak_memory_mb(),
        "device": str(ctx.device),
        "checkpoint": project_relative(ckpt),
        "git_commit": git_commit(),
        "versions": versions(),
    }
    with phase(WRITING):
        write_json(res_path, result)
    return result


#: profile settings that do not change what a run computes (a stored result differing only in these is reused)
NOT_COMPUTING_SETTINGS = ("tensorboard",)


def settings_changed(profile: Profile, result: dict[str, Any]) -> list[str]:
    """``"key: stored -> now"`` for each profile setting in which ``result`` (its ``profile_settings``) was
    computed otherwise than ``profile`` would compute it now (:func:`~repro.profiles.setting_differences`,
    :data:`NOT_COMPUTING_SETTINGS` aside); ``[]`` when it still stands."""
    diff = setting_differences(result.get("profile_settings") or {}, profile)
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items() if k not in NOT_COMPUTING_SETTINGS]


def check_result_identity(ctx: Context, path: Path, result: dict[str, Any], stage: str) -> None:
    """:class:`~repro.data.identity.IdentityMismatchError` when result ``path`` records a data identity
    other than this run's (other image bytes or labels, or a result from before identities held them)."""
    from repro.data.identity import IdentityMismatchError, mismatch_message, recorded_identity

    ours = getattr(ctx.prepared, "data_identity", "")
    theirs = recorded_identity(result) or "unrecorded"
    if ours and theirs != ours:
        raise IdentityMismatchError(mismatch_message(f"result {project_relative(path)}", theirs, ours,
                                                     f"{_train_command(ctx, stage)[:-1]} --force`"))


def stage_epochs(profile: Profile, tasks, max_epochs: int | None = None) -> int:
    """Epoch cap of a stage: ``max_epochs`` (the stage's own cap, e.g. ``kd_max_epochs``) or the profile's,
    lowered to ``profile.caption_max_epochs`` when the stage trains the caption task."""
    cap = int(max_epochs or profile.max_epochs)
    if "caption" in tuple(tasks) and profile.caption_max_epochs:
        cap = min(cap, int(profile.caption_max_epochs))
    return cap


def _train_command(ctx: Context, stage: str) -> str:
    """The ``train`` command line that writes this run's ``stage``: ``--results-root`` when the results folder is
    ``<root>/<profile>``, else the deprecated ``--results-dir`` that names the folder itself."""
    folder = ctx.results_dir
    where = (f"--results-root {project_relative(folder.parent)}" if folder.name == ctx.profile.name
             else f"--results-dir {project_relative(folder)}")
    return f"`python -m repro train --stage {stage} --profile {ctx.profile.name} --p {ctx.p} --seed {ctx.seed} {where}`"


def checkpoint_mismatch(ctx: Context, payload: dict[str, Any]) -> list[str]:
    """How the run recorded in checkpoint ``payload`` differs from ``ctx`` (empty: it matches)."""
    extra = payload.get("extra") or {}
    prep = ctx.prepared
    out = []
    if payload.get("split_hash") != prep.split_hash:
        out.append(f"split hash {payload.get('split_hash')} (this run: {prep.split_hash}, "
                   f"{project_relative(prep.split_file)})")
    ident = getattr(prep, "data_identity", "")
    if ident and extra.get("data_identity") != ident:
        out.append(f"data set {extra.get('data_identity') or 'unrecorded'} (this run: {ident})")
    theirs, ours = extra.get("profile") or {}, ctx.profile.to_dict()
    for key in MATCHING_SETTINGS:
        a, b = theirs.get(key), ours.get(key)
        a, b = (list(a) if isinstance(a, (list, tuple)) else a), (list(b) if isinstance(b, (list, tuple)) else b)
        if a != b:
            out.append(f"profile {key} {a!r} (this run: {b!r})")
    for key, mine in (("coarse_classes", prep.coarse_classes), ("fine_classes", prep.fine_classes)):
        if list(payload.get(key) or []) != list(mine):
            out.append(f"{key} {len(payload.get(key) or [])} classes (this run: {len(mine)}, or another order)")
    if list((payload.get("vocab") or {}).get("itos") or []) != list(prep.vocab.itos):
        out.append("caption vocabulary (another data set, split or vocab_min_count)")
    return out


def check_checkpoint(ctx: Context, path: Path, payload: dict[str, Any], stage: str) -> None:
    """:class:`CheckpointMismatchError` when ``payload`` (read from ``path``) was not trained for this run."""
    from repro.models.checkpoints import CheckpointMismatchError

    diff = checkpoint_mismatch(ctx, payload)
    if diff:
        raise CheckpointMismatchError(
            f"checkpoint {project_relative(path)} was trained for another run: {'; '.join(diff)}. Its models "
            f"cannot teach or start this one; run {_train_command(ctx, stage)} for this data and profile, "
            "or point --results-root / results_dir at the results whose teachers you mean")


def require_checkpoint(ctx: Context, stage: str, name: str, how: str):
    """Load an earlier stage's model, or say which notebook/command produces it; a model trained on
    another split, data set, profile, class list or vocabulary is refused (:func:`check_checkpoint`)."""
    from repro.models.checkpoints import load_checkpoint

    ckpt = ctx.checkpoint_path(stage, name)
    if not ckpt.exists():
        raise MissingStageError(
            f"{stage} model {name!r} for profile={ctx.profile.name} p={ctx.p} seed={ctx.seed} is missing "
            f"({project_relative(ckpt)}); run {how} first"
        )
    with phase(MODEL_SETUP):
        model, payload = load_checkpoint(ckpt, map_location=ctx.device)
    check_checkpoint(ctx, ckpt, payload, stage)
    return model.to(ctx.device)


M1_HOW = notebook_path(NOTEBOOK_OF["m1"])
M2_HOW = notebook_path(NOTEBOOK_OF["m2"])


def stage_inputs(ctx: Context, stage: str) -> list[tuple[str, str, str]]:
    """``(stage, name, notebook)`` of every checkpoint ``stage`` reads (τ chosen on validation included)."""
    singles = [("m1", subset_code((t,)), M1_HOW) for t in TASKS]
    m1_all = [("m1", s, M1_HOW) for s in SUBSETS]
    needs = {"m1": [], "tau": singles, "ensemble": m1_all, "m2": m1_all,
             "m3": [("m2", "single", M2_HOW), ("m2", "ensemble", M2_HOW)] + m1_all}
    if stage not in needs:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {list(needs)}")
    return list(dict.fromkeys(needs[stage]))


def check_stage_inputs(ctx: Context, stage: str) -> None:
    """Before any training: every checkpoint ``stage`` reads exists, is readable and matches this run."""
    from repro.models.checkpoints import read_payload

    missing = [(s, n, h) for s, n, h in stage_inputs(ctx, stage) if not ctx.checkpoint_path(s, n).exists()]
    if missing:
        s, n, h = missing[0]
        names = ", ".join(f"{a}-{b}" for a, b, _ in missing)
        raise MissingStageError(
            f"{stage} needs {len(missing)} earlier model(s) that are missing for profile={ctx.profile.name} "
            f"p={ctx.p} seed={ctx.seed} ({names}; looked in {project_relative(ctx.run_artifacts)}); run {h} "
            f"(or {_train_command(ctx, s)}) first")
    for s, n, _ in stage_inputs(ctx, stage):
        path = ctx.checkpoint_path(s, n)
        check_checkpoint(ctx, path, read_payload(path), s)
