"""One ``(profile, p, seed)`` experiment: data, inputs, and the run of a single model to its result JSON.

Stages (M1 here, M2/M3/τ in :mod:`repro.experiments.m2m3`) call :func:`train_and_record`;
a run whose result JSON and checkpoint already exist is loaded, not retrained.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.device import resolve_device, seed_everything
from repro.errors import ConfigError, MissingStageError
from repro.io import read_json, write_json
from repro.names import P_VALUES
from repro.paths import project_relative, results_dir as default_results_dir, runs_dir as default_runs_dir
from repro.profiles import Profile, get_profile
from repro.provenance import git_commit, peak_memory_mb, versions


def load_result(ctx: Context, stage: str, name: str) -> dict[str, Any] | None:
    path = ctx.result_path(stage, name)
    return read_json(path) if path.exists() else None


@lru_cache(maxsize=4)
def _prepared(data_root, profile_name, overrides):
    from repro.data.prepare import prepare_data

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
        from repro.models.mtlnet import MTLNet

        prof = self.profile
        torch.manual_seed(self.seed)  # the heads' initialisation is part of the seeded run
        return MTLNet(
            encoder=prof.encoder, tasks=tuple(tasks),
            num_classes={"coarse": len(self.prepared.coarse_classes), "fine": len(self.prepared.fine_classes)},
            vocab_size=len(self.prepared.vocab), trainable=prof.trainable, pretrained=prof.pretrained,
            decoder=prof.decoder, teacher_forcing=prof.teacher_forcing, taps=prof.taps,
            hidden=prof.decoder_hidden, embed=prof.decoder_embed,
            neck_hidden=prof.neck_hidden, neck_dropout=prof.neck_dropout, input_dropout=prof.input_dropout,
        ).to(self.device)

    def for_seed(self, seed: int) -> "Context":
        """The same experiment with another seed: same data and folders, sharing the model inputs."""
        return replace(self, seed=int(seed), _bank=self._bank)

    def bank(self, model=None):
        """Model inputs for every image and view (frozen-trunk outputs are computed once and cached)."""
        if self._bank is None:
            from repro.models.inputbank import InputBank

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


def train_and_record(ctx: Context, stage_name: str, name: str, model, stage, train_idx, params: dict,
                     force: bool = False, progress: bool = True, max_epochs: int | None = None) -> dict[str, Any]:
    """Fit ``model`` with ``stage``, evaluate the best state once on test, write checkpoint and result JSON."""
    from repro.engine.evaluate import predict, score_predictions
    from repro.engine.fit import fit
    from repro.models.checkpoints import save_checkpoint

    res_path, ckpt = ctx.result_path(stage_name, name), ctx.checkpoint_path(stage_name, name)
    if not force and res_path.exists() and ckpt.exists():
        return read_json(res_path)
    data_warnings = list(ctx.prepared.info.get("warnings", []))
    for w in data_warnings:
        print(f"warning: {w}", file=sys.stderr)
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
        "data": {"dataset": ctx.prepared.dataset_name, "split_file": project_relative(ctx.prepared.split_file),
                 "split_hash": ctx.prepared.split_hash, "n_train": int(len(train_idx)),
                 "n_val": int(len(val_idx)), "n_test": int(len(test_idx))},
        "split_hash": ctx.prepared.split_hash,
        "warnings": data_warnings,
        "metrics": {"val": val_metrics, "test": test_metrics},
        "max_epochs": prof.max_epochs,
        "best_epoch": fr.best_epoch,
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
    write_json(res_path, result)
    return result


def require_checkpoint(ctx: Context, stage: str, name: str, how: str):
    """Load an earlier stage's model, or say which notebook/command produces it."""
    from repro.models.checkpoints import load_checkpoint

    ckpt = ctx.checkpoint_path(stage, name)
    if not ckpt.exists():
        raise MissingStageError(
            f"{stage} model {name!r} for profile={ctx.profile.name} p={ctx.p} seed={ctx.seed} is missing "
            f"({project_relative(ckpt)}); run {how} first"
        )
    model, _ = load_checkpoint(ckpt, map_location=ctx.device)
    return model.to(ctx.device)
