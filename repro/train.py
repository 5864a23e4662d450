"""Training engine: SGD-Nesterov, early stopping on validation, best checkpoint restored,
one test evaluation, one atomic result JSON per run (paper §4.1; DESIGN.md §4, §6).

A *stage* (M1, M2, M3, τ-study) is described by which tasks it trains, how a
batch is assembled (labels, teacher outputs, caption prefix) and its loss,
a function returning a dict of named terms whose ``"total"`` is minimised
(mdistiller style). The engine is the same for every stage.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import TASKS
from .errors import MissingStageError
from .losses import m1_loss
from .metrics import caption_metrics, coarse_metrics, fine_metrics
from .runtime import autocast

PRIMARY = {"coarse": ("accuracy",), "fine": ("top1",), "caption": ("bleu_paper",)}


# ---------------------------------------------------------------- batches and stages

def label_tensors(prepared) -> dict[str, torch.Tensor]:
    """Targets of every image in manifest order, keyed by task."""
    m = prepared.manifest
    return {
        "coarse": torch.tensor(m["coarse_idx"].to_numpy(), dtype=torch.long),
        "fine": torch.tensor(m["fine_idx"].to_numpy(), dtype=torch.long),
        "caption": torch.tensor(np.asarray(prepared.captions), dtype=torch.long),
    }


@dataclass
class Stage:
    """What one training stage reads and minimises.

    ``make_batch(idx, view_ids) -> dict`` returns everything the loss needs
    except the model outputs (targets, teacher logits, the caption prefix under
    ``"prefix"``); ``loss(outputs, batch) -> dict`` returns named terms.
    """

    name: str
    tasks: tuple[str, ...]
    make_batch: Callable[[torch.Tensor, torch.Tensor], dict[str, Any]]
    loss: Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]]
    teacher_forcing: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


def supervised_stage(prepared, tasks: tuple[str, ...], lambdas: dict | None = None) -> Stage:
    """M1 (paper Eq. 1): Σ_t λ_t CE_t on labeled images."""
    labels = label_tensors(prepared)

    def make_batch(idx, view_ids):
        b = {t: labels[t][idx] for t in tasks}
        if "caption" in tasks:
            b["prefix"] = labels["caption"][idx]
        return b

    def loss(outputs, batch):
        return m1_loss(outputs, batch, tasks, lambdas)

    return Stage("m1", tuple(tasks), make_batch, loss)


# ---------------------------------------------------------------- evaluation

@torch.inference_mode()
def predict(model, bank, idx: np.ndarray, batch_size: int = 256, max_len: int = 15) -> dict[str, np.ndarray]:
    """Eval-mode predictions on the ``orig`` view: logits for T1/T2, greedy caption ids for T3."""
    model.eval()
    out: dict[str, list] = {t: [] for t in model.tasks}
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    for start in range(0, len(idx_t), batch_size):
        b = idx_t[start:start + batch_size]
        x = bank.batch(b)
        with autocast(bank.device):
            o = model(x, from_trunk=bank.from_trunk)
            for t in ("coarse", "fine"):
                if t in model.tasks:
                    out[t].append(o[t].float().cpu())
            if "caption" in model.tasks:
                ids = model.generate(x, from_trunk=bank.from_trunk, max_len=max_len)
                ids = ids[0] if isinstance(ids, tuple) else ids
                out["caption"].append(ids.cpu())
    return {t: torch.cat(v).numpy() for t, v in out.items() if v}


def score_predictions(prepared, idx: np.ndarray, preds: dict[str, np.ndarray], detail: bool = True) -> dict[str, Any]:
    """Metrics of each task (DESIGN.md §5) on images ``idx`` of the manifest."""
    m = prepared.manifest.iloc[idx]
    groups = m["coarse"].astype(str).to_numpy()
    res: dict[str, Any] = {}
    if "coarse" in preds:
        res["coarse"] = coarse_metrics(m["coarse_idx"].to_numpy(), preds["coarse"].argmax(1), list(prepared.coarse_classes))
    if "fine" in preds:
        res["fine"] = fine_metrics(m["fine_idx"].to_numpy(), preds["fine"], groups=groups if detail else None)
    if "caption" in preds:
        vocab = prepared.vocab
        refs = [vocab.decode(list(r)) for r in np.asarray(prepared.captions)[idx]]
        hyps = [vocab.decode(list(h)) for h in preds["caption"]]
        res["caption"] = caption_metrics(refs, hyps, groups=groups if detail else None)
        if detail:
            res["caption"]["examples"] = [
                {"image": str(m["image"].iloc[i]), "reference": " ".join(refs[i]), "generated": " ".join(hyps[i])}
                for i in range(min(8, len(refs)))
            ]
    if detail and {"coarse", "fine", "caption"} <= set(preds):
        res["error_analysis"] = error_analysis(m, preds, refs, hyps)
    return res


def error_analysis(m, preds, refs, hyps) -> dict[str, int]:
    """The supplement's §3 counts: agreement and disagreement between the three tasks' outcomes.

    ``m`` holds the manifest rows of the images scored; ``refs``/``hyps`` their decoded captions.
    """
    from .metrics import bleu_paper_scores

    coarse_ok = preds["coarse"].argmax(1) == m["coarse_idx"].to_numpy()
    fine_ok = preds["fine"].argmax(1) == m["fine_idx"].to_numpy()
    bleu = np.array(bleu_paper_scores(refs, hyps))
    return {
        "test_samples": int(len(m)),
        "coarse_correct_bleu_lt_0.2": int(np.sum(coarse_ok & (bleu < 0.2))),
        "coarse_wrong_bleu_gt_0.5": int(np.sum(~coarse_ok & (bleu > 0.5))),
        "fine_correct_coarse_wrong": int(np.sum(fine_ok & ~coarse_ok)),
        "coarse_correct_fine_wrong": int(np.sum(coarse_ok & ~fine_ok)),
    }


def validation_score(metrics: dict[str, Any], tasks) -> float:
    """Model selection score: mean over trained tasks of the primary metric (T1 acc, T2 top-1, T3 BLEU)."""
    vals = [metrics[t][PRIMARY[t][0]] for t in tasks if t in metrics]
    return float(np.mean(vals)) if vals else float("nan")


# ---------------------------------------------------------------- the loop

@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_score: float
    train_images_per_s: float
    train_seconds: float


def fit(model, bank, prepared, train_idx: np.ndarray, val_idx: np.ndarray, stage: Stage, profile,
        generator: torch.Generator, desc: str = "", progress: bool = True) -> FitResult:
    """Train ``model`` on ``train_idx`` with early stopping on ``val_idx``; the best state is restored."""
    if len(train_idx) == 0:
        from .errors import DataError

        raise DataError(f"stage {stage.name}: the training set is empty; check the split and p")
    device = bank.device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=profile.lr, momentum=profile.momentum, nesterov=True,
                          weight_decay=profile.weight_decay)
    tf_saved = getattr(model, "teacher_forcing", None)
    if stage.teacher_forcing is not None and tf_saved is not None:
        model.teacher_forcing = stage.teacher_forcing
    n_views = len(bank.views)
    train_t = torch.as_tensor(train_idx, dtype=torch.long)
    history: list[dict[str, Any]] = []
    best_state, best_score, best_epoch = None, -float("inf"), -1
    seen, busy = 0, 0.0
    bs = profile.batch_size
    bar = tqdm(range(profile.max_epochs), desc=desc or stage.name, leave=False, disable=not progress)
    try:
        for epoch in bar:
            model.train()
            perm = train_t[torch.randperm(len(train_t), generator=generator)]
            views = torch.randint(n_views, (len(perm),), generator=generator)
            sums: dict[str, float] = {}
            n_batches = 0
            t0 = time.perf_counter()
            for start in range(0, len(perm), bs):
                b, v = perm[start:start + bs], views[start:start + bs]
                if len(b) < 2:
                    continue
                batch = trim_captions(stage.make_batch(b, v))
                x = bank.batch(b, v)
                prefix = batch.get("prefix")
                with autocast(device):
                    out = model(x, captions=None if prefix is None else prefix.to(device), from_trunk=bank.from_trunk)
                    terms = stage.loss(out, _to(batch, device))
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                for k, val in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(val.detach())
                n_batches += 1
                seen += len(b)
            busy += time.perf_counter() - t0
            val_preds = predict(model, bank, val_idx, max_len=profile.max_caption_len + 1)
            val_metrics = score_predictions(prepared, val_idx, val_preds, detail=False)
            score = validation_score(val_metrics, stage.tasks)
            row = {"epoch": epoch + 1, **{f"train/{k}": v / max(n_batches, 1) for k, v in sums.items()},
                   "val/score": score, **_flat_val(val_metrics)}
            history.append(row)
            bar.set_postfix(loss=f"{row.get('train/total', float('nan')):.3f}", val=f"{score:.3f}")
            if score > best_score:
                best_score, best_epoch = score, epoch + 1
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            elif epoch + 1 - best_epoch >= profile.patience and epoch + 1 >= profile.min_epochs:
                break
    finally:
        if tf_saved is not None:
            model.teacher_forcing = tf_saved
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best_epoch, best_score, seen / busy if busy else float("nan"), busy)


def trim_captions(batch: dict[str, Any]) -> dict[str, Any]:
    """Cut the caption tensors of a batch to its longest caption (PAD = 0 after EOS).

    Exact, not an approximation: the steps cut hold only PAD targets, which the
    caption CE ignores, and KD masks steps after EOS. ODIR captions are short
    (2.6 tokens on average), so the decoder runs ~5 steps instead of 15.
    """
    prefix = batch.get("prefix")
    if prefix is None:
        return batch
    n = max(int((prefix != 0).sum(1).max()), 1)
    if n >= prefix.shape[1]:
        return batch
    out = dict(batch)
    for key in ("prefix", "caption", "mask"):
        if key in out:
            out[key] = out[key][:, :n]
    if "caption" in out.get("teacher", {}):
        out["teacher"] = {**out["teacher"], "caption": [t[:, :n] for t in out["teacher"]["caption"]]}
    return out


def _to(batch: dict[str, Any], device) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, list):
            out[k] = [t.to(device, non_blocking=True).float() if isinstance(t, torch.Tensor) else t for t in v]
        elif isinstance(v, dict):
            out[k] = _to(v, device)
        else:
            out[k] = v
    return out


def _flat_val(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"val/{t}/{k}": float(v) for t, m in metrics.items() for k, v in m.items()
            if t in TASKS and isinstance(v, (int, float))}


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, model, prepared, extra: dict[str, Any] | None = None) -> Path:
    """Model config + weights + everything needed to decode its outputs (classes, vocabulary)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model_config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "coarse_classes": list(prepared.coarse_classes),
        "fine_classes": list(prepared.fine_classes),
        "vocab": prepared.vocab.to_dict(),
        "split_hash": prepared.split_hash,
        "extra": extra or {},
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu"):
    """``(model, payload)`` from a checkpoint written by :func:`save_checkpoint`."""
    from .models import MTLNet

    path = Path(path)
    if not path.exists():
        raise MissingStageError(f"checkpoint {path} does not exist; run the stage that writes it first")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    model = MTLNet.from_config(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
