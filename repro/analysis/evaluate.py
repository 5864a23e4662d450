"""``python -m repro evaluate``: any saved model on any data folder (ODIR layout or manifest CSV).

The folder's labels are mapped onto the checkpoint's classes and vocabulary:
an unknown T1 class or T2 class (after the training rule that folds rare
classes into ``other:<T1 class>``) is counted and left out of that task's
metrics; unknown caption words become UNK and are counted. Nothing crashes on
new labels, nothing is dropped silently.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.io import write_json
from repro.paths import check_writable, layout


def _map_labels(manifest: pd.DataFrame, payload: dict) -> tuple[pd.DataFrame, dict[str, Any]]:
    coarse_pos = {c: i for i, c in enumerate(payload["coarse_classes"])}
    fine_pos = {c: i for i, c in enumerate(payload["fine_classes"])}
    m = manifest.copy()
    m["coarse_idx"] = m["coarse"].map(coarse_pos).fillna(-1).astype(int)

    def fine_idx(row) -> int:
        if row["fine"] in fine_pos:
            return fine_pos[row["fine"]]
        return fine_pos.get(f"other:{row['coarse']}", -1)

    m["fine_idx"] = m.apply(fine_idx, axis=1).astype(int) if len(m) else []
    folded = int(sum(1 for f in m["fine"] if f not in fine_pos) - int((m["fine_idx"] < 0).sum()))
    counts = {
        "images": int(len(m)),
        "unknown_coarse": int((m["coarse_idx"] < 0).sum()),
        "unknown_coarse_values": sorted(set(m.loc[m["coarse_idx"] < 0, "coarse"].astype(str))),
        "fine_folded_to_other": folded,
        "unknown_fine": int((m["fine_idx"] < 0).sum()),
    }
    return m, counts


def evaluate_checkpoint(checkpoint: str | Path, data_root=None, split: str = "all", out: str | Path | None = None,
                        skip_bad_images: bool = False, device: str = "auto", batch_size: int = 128,
                        strict_keywords: bool = False, results_root=None) -> dict[str, Any]:
    """Metrics of all three tasks (those the model has) on the images of ``data_root``.

    Decoded images are cached in ``<results_root>/cache`` and split files of data other than the reference
    subset go to ``<results_root>/splits`` (:func:`repro.paths.layout`; default ``$REPRO_RESULTS`` or ``out/``).

    ``keywords`` in the result lists the keywords decided by rule rather than the table
    (:func:`repro.data.labels.keyword_report`); ``strict_keywords`` makes them an error.
    """
    from repro.data.captions import Vocab, tokenize
    from repro.data.imagecache import load_image_cache
    from repro.data.sources import load_dataset
    from repro.device import resolve_device
    from repro.engine.evaluate import predict
    from repro.engine.metrics import caption_metrics, coarse_metrics, fine_metrics
    from repro.models.checkpoints import load_checkpoint
    from repro.models.inputbank import InputBank

    t0 = time.perf_counter()
    lay = layout(results_root)
    dev = resolve_device(device)
    model, payload = load_checkpoint(checkpoint, map_location=dev)
    model = model.to(dev)
    prof = payload.get("extra", {}).get("profile", {})
    size = int(prof.get("image_size", 224))
    max_tokens = int(prof.get("max_caption_len", 14))
    ds = load_dataset(data_root, taxonomy=prof.get("taxonomy", "paper5"), skip_bad_images=skip_bad_images,
                      strict_keywords=strict_keywords)
    out = Path(out) if out else Path(checkpoint).with_name(f"{Path(checkpoint).stem}-eval-{ds.name}-{split}.json")
    check_writable(out.parent, "output folder of --out")  # before any inference
    manifest = ds.manifest
    if split != "all":
        from repro.data.splits import load_or_make_split

        split_seed = payload.get("extra", {}).get("split_seed", prof.get("split_seed", 0))  # older checkpoints: fixed
        sp, _ = load_or_make_split(ds, seed=int(split_seed), max_patients=prof.get("max_patients"),
                                   user_directory=lay.splits)
        keep = set(sp.loc[sp["split"] == split, "image"])
        manifest = manifest[manifest["image"].isin(keep)].reset_index(drop=True)
    m, counts = _map_labels(manifest, payload)
    images, bad = load_image_cache(m, size, skip_bad_images=skip_bad_images, cache_root=lay.cache / "images")
    if bad:
        drop = set(bad)
        counts["bad_images"] = sorted(drop)
        keep_rows = ~m["image"].isin(drop).to_numpy()
        m, images = m[keep_rows].reset_index(drop=True), np.asarray(images)[keep_rows]
    vocab = Vocab.from_dict(payload["vocab"])
    tokens = [tokenize(c) for c in m["caption"]]
    counts["caption_words"] = int(sum(len(t) for t in tokens))
    counts["caption_unknown_words"] = int(sum(1 for t in tokens for w in t if w not in vocab))
    bank = InputBank.from_images(images, model.encoder_spec, device=dev)
    idx = np.arange(len(m))
    preds = predict(model, bank, idx, batch_size=batch_size, max_len=max_tokens + 1)
    groups = m["coarse"].astype(str).to_numpy()
    metrics: dict[str, Any] = {}
    if "coarse" in preds:
        ok = m["coarse_idx"].to_numpy() >= 0
        if ok.any():
            metrics["coarse"] = coarse_metrics(m["coarse_idx"].to_numpy()[ok], preds["coarse"][ok].argmax(1),
                                               payload["coarse_classes"])
    if "fine" in preds:
        ok = m["fine_idx"].to_numpy() >= 0
        if ok.any():
            metrics["fine"] = fine_metrics(m["fine_idx"].to_numpy()[ok], preds["fine"][ok], groups=groups[ok])
    if "caption" in preds:
        refs = [[w if w in vocab else "<unk>" for w in t][:max_tokens] for t in tokens]
        hyps = [vocab.decode(list(h)) for h in preds["caption"]]
        metrics["caption"] = caption_metrics(refs, hyps, groups=groups)
    result = {
        "checkpoint": str(checkpoint), "data_root": str(ds.root), "layout": ds.layout, "dataset": ds.name,
        "split": split, "model_tasks": list(model.tasks), "counts": counts, "metrics": metrics,
        "excluded_images": int(len(ds.excluded)), "keywords": ds.info.get("keywords"),
        "wall_s": time.perf_counter() - t0,
    }
    write_json(out, result)
    result["out"] = str(out)
    return result
