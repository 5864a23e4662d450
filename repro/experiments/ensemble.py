"""The M1 teacher ensemble as a predictor of its own (paper Table 5; docs/design.md §4)."""

from __future__ import annotations

from typing import Any

import torch

from repro.distill.ensemble import ensemble_greedy
from repro.distill.losses import ensemble_probs
from repro.engine.evaluate import PER_IMAGE_KEY, per_image_predictions, score_predictions
from repro.experiments.context import Context
from repro.experiments.kd_stage import m1_members
from repro.io import write_json
from repro.names import TASKS


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
              **ctx.split_record(), "metrics": {split: metrics}}
    if split == "test":
        result[PER_IMAGE_KEY] = per_image_predictions(ctx.prepared, idx, merged)
    write_json(ctx.result_path("ensemble", name), result)
    return result
