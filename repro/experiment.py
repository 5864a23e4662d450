"""One ``(profile, p, seed)`` experiment: data, inputs, and the run of a single model to its result JSON.

Stages (M1 here, M2/M3/τ in :mod:`repro.distill`) call :func:`train_and_record`;
a run whose result JSON and checkpoint already exist is loaded, not retrained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import P_VALUES, TASK_CODES, TASKS
from .errors import ConfigError, MissingStageError
from .paths import PROJECT_ROOT, results_dir as default_results_dir, runs_dir as default_runs_dir
from .profiles import Profile, get_profile
from .runio import git_commit, peak_memory_mb, read_json, versions, write_json
from .runtime import resolve_device, seed_everything

SUBSETS = ("T1", "T2", "T3", "T1+T2", "T1+T3", "T2+T3", "T1+T2+T3")


def subset_tasks(code: str) -> tuple[str, ...]:
    """``"T1+T3"`` → ``("coarse", "caption")``."""
    try:
        return tuple(TASK_CODES[c] for c in code.split("+"))
    except KeyError:
        raise ConfigError(f"unknown task subset {code!r}; use one of {list(SUBSETS)}") from None


def subset_code(tasks) -> str:
    inv = {v: k for k, v in TASK_CODES.items()}
    return "+".join(inv[t] for t in TASKS if t in tasks)


@lru_cache(maxsize=4)
def _prepared(data_root, profile_name, overrides):
    from .data import prepare_data

    return prepare_data(data_root=data_root, profile=get_profile(profile_name, **dict(overrides)))


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

    @property
    def run_results(self) -> Path:
        return self.results_dir / f"p{self.p}" / f"seed{self.seed}"

    @property
    def run_artifacts(self) -> Path:
        return self.runs_dir / f"p{self.p}" / f"seed{self.seed}"

    def result_path(self, stage: str, name: str) -> Path:
        return self.run_results / f"{stage}-{name}.json"

    def checkpoint_path(self, stage: str, name: str) -> Path:
        return self.run_artifacts / f"{stage}-{name}.pt"

    def indices(self, split: str | None = None, **kw) -> np.ndarray:
        return np.asarray(self.prepared.indices(split, **kw))

    def new_model(self, tasks):
        from .models import MTLNet

        prof = self.profile
        torch.manual_seed(self.seed)  # the heads' initialisation is part of the seeded run
        return MTLNet(
            encoder=prof.encoder, tasks=tuple(tasks),
            num_classes={"coarse": len(self.prepared.coarse_classes), "fine": len(self.prepared.fine_classes)},
            vocab_size=len(self.prepared.vocab), trainable=prof.trainable, pretrained=prof.pretrained,
            decoder=prof.decoder, teacher_forcing=prof.teacher_forcing,
        ).to(self.device)

    def bank(self, model=None):
        """Model inputs for every image and view (frozen-trunk outputs are computed once and cached)."""
        if self._bank is None:
            from .inputs import InputBank

            model = model or self.new_model(("coarse",))
            self._bank = InputBank(self.prepared, model, views=self.profile.views, device=self.device)
        return self._bank


def make_context(profile: str | Profile = "quick", p: int = 15, seed: int = 0, data_root=None,
                 results_dir=None, runs_dir=None, **overrides) -> Context:
    """Load (once per process) the prepared data of ``profile`` and set up output folders."""
    if int(p) not in P_VALUES:
        raise ConfigError(f"p={p!r} is not an allowed labeled fraction; use one of {list(P_VALUES)}")
    prof = get_profile(profile, **overrides)
    if prof.num_threads:
        torch.set_num_threads(prof.num_threads)
    name = prof.name
    prepared = _prepared(None if data_root is None else str(data_root), name, tuple(sorted(overrides.items())))
    return Context(
        profile=prof, p=int(p), seed=int(seed), prepared=prepared,
        results_dir=Path(results_dir) if results_dir else default_results_dir(name),
        runs_dir=Path(runs_dir) if runs_dir else default_runs_dir(name),
        device=resolve_device(prof.device),
    )


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def train_and_record(ctx: Context, stage_name: str, name: str, model, stage, train_idx, params: dict,
                     force: bool = False, progress: bool = True, max_epochs: int | None = None) -> dict[str, Any]:
    """Fit ``model`` with ``stage``, evaluate the best state once on test, write checkpoint and result JSON."""
    from .train import fit, predict, save_checkpoint, score_predictions

    res_path, ckpt = ctx.result_path(stage_name, name), ctx.checkpoint_path(stage_name, name)
    if not force and res_path.exists() and ckpt.exists():
        return read_json(res_path)
    gen = seed_everything(ctx.seed)
    t0 = time.perf_counter()
    bank = ctx.bank(model)
    val_idx, test_idx = ctx.indices("val"), ctx.indices("test")
    prof = replace(ctx.profile, max_epochs=max_epochs) if max_epochs else ctx.profile
    fr = fit(model, bank, ctx.prepared, np.asarray(train_idx), val_idx, stage, prof, gen,
             desc=f"{stage_name} {name} p={ctx.p} s={ctx.seed}", progress=progress)
    max_len = ctx.profile.max_caption_len + 1
    val_metrics = score_predictions(ctx.prepared, val_idx, predict(model, bank, val_idx, max_len=max_len), detail=False)
    test_metrics = score_predictions(ctx.prepared, test_idx, predict(model, bank, test_idx, max_len=max_len))
    save_checkpoint(ckpt, model, ctx.prepared, extra={"stage": stage_name, "name": name, "p": ctx.p, "seed": ctx.seed,
                                                            "profile": ctx.profile.to_dict()})
    result = {
        "schema": 1,
        "stage": stage_name,
        "name": name,
        "tasks": list(stage.tasks),
        "profile": ctx.profile.name,
        "p": ctx.p,
        "seed": ctx.seed,
        "params": {**params, **stage.params},
        "profile_settings": ctx.profile.to_dict(),
        "data": {"dataset": ctx.prepared.dataset_name, "split_file": _rel(ctx.prepared.split_file),
                 "split_hash": ctx.prepared.split_hash, "n_train": int(len(train_idx)),
                 "n_val": int(len(val_idx)), "n_test": int(len(test_idx))},
        "split_hash": ctx.prepared.split_hash,
        "metrics": {"val": val_metrics, "test": test_metrics},
        "max_epochs": prof.max_epochs,
        "best_epoch": fr.best_epoch,
        "best_val_score": fr.best_val_score,
        "history": fr.history,
        "train_images_per_s": fr.train_images_per_s,
        "wall_s": time.perf_counter() - t0,
        "peak_mem_mb": peak_memory_mb(),
        "device": str(ctx.device),
        "checkpoint": _rel(ckpt),
        "git_commit": git_commit(),
        "versions": versions(),
    }
    write_json(res_path, result)
    return result


def require_checkpoint(ctx: Context, stage: str, name: str, how: str):
    """Load an earlier stage's model, or say which notebook/command produces it."""
    from .train import load_checkpoint

    ckpt = ctx.checkpoint_path(stage, name)
    if not ckpt.exists():
        raise MissingStageError(
            f"{stage} model {name!r} for profile={ctx.profile.name} p={ctx.p} seed={ctx.seed} is missing "
            f"({_rel(ckpt)}); run {how} first"
        )
    model, _ = load_checkpoint(ckpt, map_location=ctx.device)
    return model.to(ctx.device)


# ---------------------------------------------------------------- M1

def run_m1(ctx: Context, subset: str, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """One M1 teacher (paper Eq. 1) on the labeled set L_p for a task subset such as ``"T1+T3"``."""
    from .train import supervised_stage

    tasks = subset_tasks(subset)
    model = ctx.new_model(tasks)
    stage = supervised_stage(ctx.prepared, tasks)
    return train_and_record(ctx, "m1", subset, model, stage, ctx.indices("train", p=ctx.p),
                            params={"subset": subset}, force=force, progress=progress)


def run_m1_all(ctx: Context, subsets=SUBSETS, force: bool = False, progress: bool = True) -> dict[str, dict]:
    """All seven task-subset teachers, keyed by subset code."""
    return {s: run_m1(ctx, s, force=force, progress=progress) for s in subsets}


def m1_checkpoint(ctx: Context, subset: str):
    return require_checkpoint(ctx, "m1", subset, "notebooks/01_m1_teachers.ipynb (or `python -m repro train --stage m1`)")
