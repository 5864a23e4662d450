"""Distillation stages: M2 (labeled, CE + KD), M3 (unlabeled, KD only), the teacher ensemble,
and the temperature study (paper §3.3, Tables 4–5; DESIGN.md §4).

Teacher outputs come from :mod:`repro.teachercache`: computed once per
(teacher, image, view) before the student trains, never inside its loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import TASKS
from .errors import ConfigError, MissingStageError
from .experiment import SUBSETS, Context, m1_checkpoint, require_checkpoint, subset_code, subset_tasks, train_and_record
from .losses import caption_mask, ensemble_probs, m2_loss, m3_loss
from .runio import read_json, write_json
from .teachercache import cached_greedy_prefix, cached_outputs
from .train import Stage, label_tensors, score_predictions

# per-task temperatures (T1, T2, T3) of the authors' code, by training fraction p
AUTHORS_TAUS = {70: (5, 5, 5), 60: (5, 10, 5), 45: (1, 5, 5), 30: (5, 10, 10), 15: (10, 10, 10)}
MAIN = "T1+T2+T3"


@dataclass
class TeacherSet:
    """Cached outputs of one or more teachers on images ``idx`` (rows aligned with ``idx``)."""

    idx: np.ndarray
    outputs: dict[str, dict[str, np.ndarray]]  # teacher name -> task -> [n_views, n, ...] float16
    prefix: np.ndarray | None                   # [n_views, n, T] caption the teachers were forced with
    n_images: int

    def __post_init__(self):
        self.pos = np.full(self.n_images, -1, dtype=np.int64)
        self.pos[self.idx] = np.arange(len(self.idx))

    def rows(self, idx: torch.Tensor) -> np.ndarray:
        r = self.pos[idx.numpy()]
        if (r < 0).any():
            raise ValueError("an image outside the teacher cache was requested")
        return r

    def for_task(self, task: str) -> list[str]:
        return [name for name, out in self.outputs.items() if task in out]

    def batch(self, tasks, idx: torch.Tensor, view_ids: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        r, v = self.rows(idx), view_ids.numpy()
        return {t: [torch.from_numpy(self.outputs[n][t][v, r]) for n in self.for_task(t)] for t in tasks}


def build_teachers(ctx: Context, members: dict[str, Any], idx: np.ndarray, prefix: np.ndarray | None,
                   prefix_tag: str) -> TeacherSet:
    """``members``: name -> (model, checkpoint path). Outputs are loaded from / written to the cache."""
    bank = ctx.bank()
    cache = ctx.run_artifacts / "teacher_cache"
    outs = {name: cached_outputs(cache, ckpt, model, bank, idx, prefix, prefix_tag) for name, (model, ckpt) in members.items()}
    return TeacherSet(np.asarray(idx), outs, prefix, len(ctx.prepared.manifest))


def kd_stage(ctx: Context, name: str, tasks, teachers: TeacherSet, taus: dict[str, float], labeled: bool) -> Stage:
    """M2 (``labeled``: Eq. 2 with α) or M3 (Eq. 3, KD only: never reads a label)."""
    prof = ctx.profile
    labels = label_tensors(ctx.prepared) if labeled else None

    def make_batch(idx, view_ids):
        b: dict[str, Any] = {"teacher": teachers.batch(tasks, idx, view_ids)}
        if labeled:
            b.update({t: labels[t][idx] for t in tasks})
        if "caption" in tasks:
            prefix = torch.from_numpy(teachers.prefix[view_ids.numpy(), teachers.rows(idx)])
            b["prefix"], b["mask"] = prefix, caption_mask(prefix)
        return b

    def loss(outputs, batch):
        if labeled:
            return m2_loss(outputs, batch, batch["teacher"], tasks, taus, alpha=prof.alpha,
                           reduction=prof.kd_reduction, aggregation=prof.ensemble, caption_mask=batch.get("mask"))
        return m3_loss(outputs, batch["teacher"], tasks, taus, reduction=prof.kd_reduction,
                       aggregation=prof.ensemble, caption_mask=batch.get("mask"))

    params = {"taus": dict(taus), "alpha": prof.alpha if labeled else None, "kd_reduction": prof.kd_reduction,
              "aggregation": prof.ensemble, "teachers": {t: teachers.for_task(t) for t in tasks}}
    # KD per decoding step needs the student forced with the same prefix as the teacher
    return Stage(name, tuple(tasks), make_batch, loss, teacher_forcing=1.0, params=params)


def _true_prefix(ctx: Context, idx: np.ndarray) -> np.ndarray:
    caps = np.asarray(ctx.prepared.captions)[idx]
    return np.broadcast_to(caps, (len(ctx.profile.views),) + caps.shape).copy()


def _greedy_prefix(ctx: Context, model, ckpt, idx: np.ndarray) -> tuple[np.ndarray, str]:
    """The main teacher's greedy captions of ``idx`` (cached beside the teacher outputs)."""
    return cached_greedy_prefix(ctx.run_artifacts / "teacher_cache", ckpt, model, ctx.bank(), idx,
                                max_len=ctx.profile.max_caption_len + 1)


def m1_members(ctx: Context, subsets=SUBSETS) -> dict[str, tuple]:
    return {s: (m1_checkpoint(ctx, s), ctx.checkpoint_path("m1", s)) for s in subsets}


# ---------------------------------------------------------------- temperatures

def resolve_taus(ctx: Context, taus: Any = "validation", tasks=TASKS) -> dict[str, float]:
    """Per-task τ: ``"validation"`` (best of the τ study on validation, paper Table 5), ``"authors"``
    (the per-p values of the authors' code), a number, or a dict task -> τ."""
    if isinstance(taus, dict):
        return {t: float(taus[t]) for t in tasks}
    if isinstance(taus, (int, float)):
        return {t: float(taus) for t in tasks}
    if taus == "authors":
        return dict(zip(TASKS, map(float, AUTHORS_TAUS[ctx.p])))
    if taus == "validation":
        return temperature_study(ctx)["best"]
    raise ConfigError(f"taus={taus!r}: use 'validation', 'authors', a number or a dict task -> τ")


def temperature_study(ctx: Context, taus=None, progress: bool = True) -> dict[str, Any]:
    """Paper Table 4: for each task t and τ, the single-task teacher M1{t} is distilled into a copy of
    itself on the unlabeled set (an M3 stage, KD only). The best τ per task is chosen on validation.

    The paper picks τ per (task, p). With ``profile.tau_seed = k`` the study runs only for seed k and its
    choice serves every seed of that p (other seeds load it); with ``None`` every seed runs its own.
    """
    tau_seed = ctx.profile.tau_seed
    if tau_seed is not None and ctx.seed != tau_seed:
        return _load_study(dataclasses.replace(ctx, seed=int(tau_seed), _bank=ctx._bank))
    taus = tuple(taus or ctx.profile.taus)
    runs: dict[str, dict] = {}
    best: dict[str, float] = {}
    for task in TASKS:
        code = subset_code((task,))
        teacher = m1_checkpoint(ctx, code)
        ckpt = ctx.checkpoint_path("m1", code)
        idx = ctx.indices(unlabeled=(ctx.profile.unlabeled, ctx.p))
        prefix, tag = _greedy_prefix(ctx, teacher, ckpt, idx) if task == "caption" else (None, "none")
        ts = build_teachers(ctx, {code: (teacher, ckpt)}, idx, prefix, tag)
        scores = {}
        for tau in taus:
            name = f"{code}-tau{tau:g}"
            student = m1_checkpoint(ctx, code)
            stage = kd_stage(ctx, "tau", (task,), ts, {task: float(tau)}, labeled=False)
            res = train_and_record(ctx, "tau", name, student, stage, idx,
                                   params={"task": code, "tau": float(tau), "init": f"m1-{code}"}, progress=progress,
                                   max_epochs=ctx.profile.kd_max_epochs)
            runs[name] = res
            scores[float(tau)] = res["best_val_score"]
        best[task] = max(scores, key=lambda k: (scores[k], -k))
    write_json(ctx.run_results / "tau_selection.json",
               {"best": best, "seed": ctx.seed, "runs": {k: f"tau-{k}.json" for k in runs}})
    return {"best": best, "runs": runs, "seed": ctx.seed}


def _load_study(ctx: Context) -> dict[str, Any]:
    """The τ study of ``ctx.seed`` from its files (it must have run: notebook 04 for that seed)."""
    sel = ctx.run_results / "tau_selection.json"
    if not sel.exists():
        raise MissingStageError(
            f"the temperature study of profile={ctx.profile.name} p={ctx.p} seed={ctx.seed} (which serves every "
            f"seed: profile setting tau_seed) is missing ({sel}); run notebooks/04_temperature.ipynb with seed={ctx.seed} first")
    summary = read_json(sel)
    runs = {name: read_json(ctx.run_results / fname) for name, fname in summary["runs"].items()}
    return {"best": {t: float(v) for t, v in summary["best"].items()}, "runs": runs, "seed": ctx.seed}


# ---------------------------------------------------------------- M2 and M3

def run_m2(ctx: Context, ensemble: bool = False, taus: Any = "validation", progress: bool = True) -> dict[str, Any]:
    """M2: start from the best M1{T1,T2,T3}; on L_p minimise Σ_t[(1−α)CE_t + α τ_t² KL] (Eq. 2)."""
    tasks = subset_tasks(MAIN)
    tau = resolve_taus(ctx, taus)
    idx = ctx.indices("train", p=ctx.p)
    members = m1_members(ctx) if ensemble else m1_members(ctx, (MAIN,))
    ts = build_teachers(ctx, members, idx, _true_prefix(ctx, idx), "true")
    stage = kd_stage(ctx, "m2", tasks, ts, tau, labeled=True)
    name = "ensemble" if ensemble else "single"
    return train_and_record(ctx, "m2", name, m1_checkpoint(ctx, MAIN), stage, idx,
                            params={"ensemble": ensemble, "init": f"m1-{MAIN}", "tau_source": str(taus)}, progress=progress,
                            max_epochs=ctx.profile.kd_max_epochs)


def run_m3(ctx: Context, ensemble: bool = False, taus: Any = "validation", progress: bool = True) -> dict[str, Any]:
    """M3: start from the best M2; on the unlabeled set minimise Σ_t τ_t² KL (Eq. 3).
    The teacher is that M2 alone, or the ensemble with M2 in place of M1{T1,T2,T3}."""
    tasks = subset_tasks(MAIN)
    tau = resolve_taus(ctx, taus)
    name = "ensemble" if ensemble else "single"
    how = "notebooks/02_m2_distill.ipynb"
    m2 = require_checkpoint(ctx, "m2", name, how)
    m2_ckpt = ctx.checkpoint_path("m2", name)
    idx = ctx.indices(unlabeled=(ctx.profile.unlabeled, ctx.p))
    prefix, tag = _greedy_prefix(ctx, m2, m2_ckpt, idx)
    members = {f"m2-{name}": (m2, m2_ckpt)}
    if ensemble:
        members.update(m1_members(ctx, tuple(s for s in SUBSETS if s != MAIN)))
    ts = build_teachers(ctx, members, idx, prefix, tag)
    stage = kd_stage(ctx, "m3", tasks, ts, tau, labeled=False)
    return train_and_record(ctx, "m3", name, require_checkpoint(ctx, "m2", name, how), stage, idx,
                            params={"ensemble": ensemble, "init": f"m2-{name}", "tau_source": str(taus),
                                    "unlabeled": ctx.profile.unlabeled}, progress=progress,
                            max_epochs=ctx.profile.kd_max_epochs)


# ---------------------------------------------------------------- the ensemble as a predictor

@torch.inference_mode()
def evaluate_ensemble(ctx: Context, members: dict[str, tuple] | None = None, split: str = "test",
                      name: str = "m1") -> dict[str, Any]:
    """Teacher ensemble as a predictor of its own: mean probabilities (τ = 1) of the teachers that
    learned each task; captions by greedy decoding on the mean per-step probabilities."""
    members = members or m1_members(ctx)
    bank = ctx.bank()
    idx = ctx.indices(split)
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    preds: dict[str, list] = {t: [] for t in TASKS}
    models = {n: m.eval() for n, (m, _) in members.items()}
    max_len = ctx.profile.max_caption_len + 1
    for start in range(0, len(idx_t), 256):
        b = idx_t[start:start + 256]
        x = bank.batch(b)
        outs = {n: m(x, from_trunk=bank.from_trunk) for n, m in models.items()}
        for t in ("coarse", "fine"):
            logits = [o[t].float() for o in outs.values() if t in o]
            preds[t].append(ensemble_probs(logits, 1.0).cpu())
        cap_models = [m for m in models.values() if "caption" in m.tasks]
        preds["caption"].append(ensemble_greedy(cap_models, x, bank.from_trunk, max_len).cpu())
    merged = {t: torch.cat(v).numpy() for t, v in preds.items() if v}
    metrics = score_predictions(ctx.prepared, idx, merged)
    result = {"stage": "ensemble", "name": name, "members": list(members), "split": split,
              "profile": ctx.profile.name, "p": ctx.p, "seed": ctx.seed, "split_hash": ctx.prepared.split_hash,
              "metrics": {split: metrics}}
    write_json(ctx.result_path("ensemble", name), result)
    return result


def ensemble_greedy(models, x, from_trunk: bool, max_len: int) -> torch.Tensor:
    """Greedy decoding where each next token maximises the mean of the decoders' step probabilities."""
    B = x.shape[0]
    states = [m.caption_init(x, from_trunk=from_trunk) for m in models]
    tok = torch.full((B,), 1, dtype=torch.long, device=x.device)  # SOS
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    out = torch.zeros((B, max_len), dtype=torch.long, device=x.device)
    for i in range(max_len):
        probs = 0
        for j, m in enumerate(models):
            logits, states[j] = m.decoder.step(tok, states[j])
            probs = probs + torch.softmax(logits.float(), -1)
        tok = probs.argmax(-1)
        out[:, i] = torch.where(done, torch.zeros_like(tok), tok)
        done |= tok == 2
        if bool(done.all()):
            break
    return out


def load_result(ctx: Context, stage: str, name: str) -> dict[str, Any] | None:
    path = ctx.result_path(stage, name)
    return read_json(path) if path.exists() else None
