"""Prediction and scoring: a model's outputs on a set of images, and their metrics per task (docs/design.md §5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from repro.device import autocast
from repro.engine.metrics import caption_metrics, coarse_metrics, fine_metrics


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
    """Metrics of each task (docs/design.md §5) on images ``idx`` of the manifest."""
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
    from repro.engine.metrics import bleu_paper_scores

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


#: the result-JSON key of :func:`per_image_predictions` (test images; the claims' bootstrap reads it)
PER_IMAGE_KEY = "test_predictions"


def per_image_predictions(prepared, idx: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Compact per-image outcomes on images ``idx``, for a bootstrap over test patients
    (:mod:`repro.analysis.stats`): image and patient ids; per task the true and predicted class index
    (T1, T2 top-1) or the per-image ``bleu_paper`` (T3, 4 decimals). Lists are in ``idx`` order."""
    from repro.engine.metrics import bleu_paper_scores

    m = prepared.manifest.iloc[idx]
    out: dict[str, Any] = {"image": m["image"].astype(str).tolist(), "patient_id": m["patient_id"].astype(str).tolist()}
    for task, col in (("coarse", "coarse_idx"), ("fine", "fine_idx")):
        if task in preds:
            out[task] = {"true": [int(v) for v in m[col].to_numpy()],
                         "pred": [int(v) for v in np.asarray(preds[task]).argmax(1)]}
    if "caption" in preds:
        vocab = prepared.vocab
        refs = [vocab.decode(list(r)) for r in np.asarray(prepared.captions)[idx]]
        hyps = [vocab.decode(list(h)) for h in preds["caption"]]
        out["caption"] = {"bleu_paper": [round(float(s), 4) for s in bleu_paper_scores(refs, hyps)]}
    return out
