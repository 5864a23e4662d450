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

from .runio import write_json


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
                        skip_bad_images: bool = False, device: str = "auto", batch_size: int = 128) -> dict[str, Any]:
    """Metrics of all three tasks (those the model has) on the images of ``data_root``."""
    from .datasets import load_dataset
    from .imagecache import load_image_cache
    from .inputs import InputBank
    from .metrics import caption_metrics, coarse_metrics, fine_metrics
    from .runtime import resolve_device
    from .text import Vocab, tokenize
    from .train import load_checkpoint, predict

    t0 = time.perf_counter()
    dev = resolve_device(device)
    model, payload = load_checkpoint(checkpoint, map_location=dev)
    model = model.to(dev)
    prof = payload.get("extra", {}).get("profile", {})
    size = int(prof.get("image_size", 224))
    max_tokens = int(prof.get("max_caption_len", 14))
    ds = load_dataset(data_root, taxonomy=prof.get("taxonomy", "paper5"), skip_bad_images=skip_bad_images)
    manifest = ds.manifest
    if split != "all":
        from .splits import load_or_make_split

        sp = load_or_make_split(ds, seed=int(prof.get("split_seed", 0)), max_patients=prof.get("max_patients"))
        keep = set(sp.loc[sp["split"] == split, "image"])
        manifest = manifest[manifest["image"].isin(keep)].reset_index(drop=True)
    m, counts = _map_labels(manifest, payload)
    images, bad = load_image_cache(m, size, skip_bad_images=skip_bad_images)
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
        "excluded_images": int(len(ds.excluded)), "wall_s": time.perf_counter() - t0,
    }
    out = Path(out) if out else Path(checkpoint).with_name(f"{Path(checkpoint).stem}-eval-{ds.name}-{split}.json")
    write_json(out, result)
    result["out"] = str(out)
    return result


def cmd_evaluate(args) -> int:
    r = evaluate_checkpoint(args.checkpoint, args.data_root, split=args.split, out=args.out,
                            skip_bad_images=args.skip_bad_images, device=args.device)
    c = r["counts"]
    print(f"{r['dataset']} ({r['layout']}), split {r['split']}: {c['images']} images; "
          f"unknown T1 {c['unknown_coarse']}, T2 folded {c['fine_folded_to_other']}, unknown T2 {c['unknown_fine']}, "
          f"unknown words {c['caption_unknown_words']}/{c['caption_words']}")
    mt = r["metrics"]
    if "coarse" in mt:
        print(f"T1  accuracy {mt['coarse']['accuracy']:.3f}  balanced {mt['coarse']['balanced_accuracy']:.3f}  "
              f"macro-F1 {mt['coarse']['macro_f1']:.3f}")
    if "fine" in mt:
        print(f"T2  top-1 {mt['fine']['top1']:.3f}  top-5 {mt['fine']['top5']:.3f}")
    if "caption" in mt:
        print(f"T3  bleu_paper {mt['caption']['bleu_paper']:.3f}  bleu4 {mt['caption']['bleu4']:.3f}  "
              f"exact {mt['caption']['exact_match']:.3f}")
    print(f"written to {r['out']}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a saved checkpoint on a data folder (ODIR layout or manifest.csv)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                   help="all images of the folder (default) or one split of the study's split file")
    p.add_argument("--out", default=None, help="result JSON (default: beside the checkpoint)")
    p.add_argument("--skip-bad-images", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)
