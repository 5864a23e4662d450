"""The data facade the rest of the project calls (docs/design.md §2): ``prepare_data`` and ``data_summary``.

``prepare_data`` turns a data folder and a profile into everything training needs:

1. load the data set (ODIR-5K Kaggle layout or a manifest CSV; :mod:`repro.data.sources`);
   keywords the table lacks are decided by rule and listed (``strict_keywords``: an error);
2. with ``skip_bad_images``: decode every image once and drop the unreadable ones
   *before* splitting (they are listed in ``bad_images``); without it a bad
   image is an error;
3. make or reuse the saved patient-level split (:mod:`repro.data.splits`), which
   also sub-samples patients for the ``smoke`` profile;
4. fold T2 classes with fewer than ``profile.t2_min_count`` images in the
   training pool into ``other:<T1 class>``;
5. build the caption vocabulary on the pool (``profile.vocab_min_count``) and
   encode every caption to ``max_caption_len + 1`` ids;
6. load (or build) the decode-once image cache at ``profile.image_size``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.data.captions import Vocab, tokenize
from repro.data.identity import data_identity
from repro.data.imagecache import cache_info, load_image_cache
from repro.data.labels import TAXONOMIES, describe_rule_decided
from repro.data.sources import BAD_COLUMNS, Dataset, load_dataset
from repro.data.splits import (SPLITS, labeled_images, load_or_make_split, split_hash, split_images,
                               unlabeled_images)
from repro.errors import ConfigError, DataError
from repro.names import P_VALUES
from repro.paths import Layout, project_relative
from repro.profiles import Profile, get_profile

OTHER_PREFIX = "other:"


@dataclass
class PreparedData:
    """Labels, split, vocabulary, captions and (optionally) images of one data set and profile.

    ``manifest`` has one row per kept image (positional index 0..N-1) with the
    :data:`repro.datasets.MANIFEST_COLUMNS` plus ``split``, ``p_min``,
    ``fine_class`` (T2 after folding), ``coarse_idx`` and ``fine_idx``.
    ``captions[i]`` and ``images[i]`` belong to ``manifest.iloc[i]``.
    """

    manifest: pd.DataFrame
    excluded: pd.DataFrame
    bad_images: pd.DataFrame
    coarse_classes: tuple[str, ...]
    fine_classes: tuple[str, ...]
    vocab: Vocab
    captions: np.ndarray
    images: np.ndarray | None
    split_file: Path
    split_hash: str
    dataset_name: str
    data_root: Path
    layout: str = "odir"
    taxonomy: str = "paper5"
    profile: str = "quick"
    split_seed: int = 0
    max_patients: int | None = None
    image_size: int = 224
    max_caption_len: int = 14
    t2_min_count: int = 10
    info: dict[str, Any] = field(default_factory=dict)
    data_identity: str = ""   # repro.data.identity.data_identity: image bytes and label rows, keys its runs

    def indices(self, split: str | None = None, p: int | None = None,
                unlabeled: tuple[str, int] | None = None) -> np.ndarray:
        """Positional indices (int64, ascending) into ``manifest``.

        ``indices()`` all images; ``indices("train")`` the training pool;
        ``indices("train", p=15)`` (or ``indices(p=15)``) the labeled set L_15;
        ``indices(unlabeled=("all", 15))`` the M3 unlabeled set (``"rest"``: pool minus L_15);
        ``indices("val")``, ``indices("test")``.
        """
        m = self.manifest
        if unlabeled is not None:
            if split not in (None, "train") or p is not None:
                raise ConfigError("indices(unlabeled=(mode, p)) takes neither a split other than 'train' nor p")
            try:
                mode, up = unlabeled
            except (TypeError, ValueError):
                raise ConfigError(f"unlabeled must be a pair (mode, p) such as ('all', 15), got {unlabeled!r}") from None
            sel = unlabeled_images(m, up, mode)
        elif p is not None:
            if split not in (None, "train"):
                raise ConfigError(f"p={p} selects a labeled fraction of the training pool; it does not apply "
                                  f"to split {split!r}")
            sel = labeled_images(m, p)
        elif split is not None:
            sel = split_images(m, split)
        else:
            sel = m
        return np.asarray(sel.index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.manifest)


def _drop_bad_images(ds: Dataset, size: int, cache_root=None) -> Dataset:
    """Decode all images once (the cache at ``size``) and drop unreadable ones before splitting."""
    _, bad = load_image_cache(ds.manifest, size, skip_bad_images=True, cache_root=cache_root)
    if not bad:
        return ds
    bad_set = set(bad)
    m = ds.manifest
    gone = m[m["image"].isin(bad_set)]
    rows = pd.DataFrame({"image": gone["image"].values, "path": gone["path"].values,
                         "reason": "unreadable or corrupt image"}, columns=list(BAD_COLUMNS))
    bad_df = pd.concat([ds.bad_images, rows], ignore_index=True) if len(ds.bad_images) else rows
    return Dataset(manifest=m[~m["image"].isin(bad_set)].reset_index(drop=True), excluded=ds.excluded,
                   bad_images=bad_df, root=ds.root, layout=ds.layout, name=ds.name, taxonomy=ds.taxonomy,
                   info=ds.info)


def fold_fine(manifest: pd.DataFrame, min_count: int) -> tuple[pd.Series, tuple[str, ...]]:
    """T2 classes with fewer than ``min_count`` pool images (split == train) -> ``other:<coarse>``.

    Returns the folded label per image and the sorted class list.
    """
    counts = manifest.loc[manifest["split"] == "train", "fine"].value_counts()
    keep = set(counts.index[counts >= int(min_count)])
    folded = [f if f in keep else f"{OTHER_PREFIX}{c}" for f, c in zip(manifest["fine"], manifest["coarse"])]
    out = pd.Series(folded, index=manifest.index, name="fine_class", dtype=object)
    return out, tuple(sorted(set(folded)))


def _coarse_classes(ds: Dataset, manifest: pd.DataFrame) -> tuple[str, ...]:
    if ds.layout == "odir":
        return TAXONOMIES[ds.taxonomy]
    present = set(manifest["coarse"])
    paper5 = TAXONOMIES["paper5"]
    return tuple(c for c in paper5 if c in present) if present <= set(paper5) else tuple(sorted(present))


def prepare_data(data_root: str | os.PathLike | None = None, profile: str | Profile = "quick",
                 split_seed: int | None = None, skip_bad_images: bool = False,
                 with_images: bool = True, split_directory: str | os.PathLike | None = None,
                 strict_keywords: bool = False, layout: Layout | None = None,
                 allow_outside_root: bool | None = None) -> PreparedData:
    """Everything the stages need for one data folder and profile (see the module docstring).

    ``split_seed`` defaults to ``profile.split_seed``; ``split_directory`` to ``results/splits``.
    Keywords the table lacks are decided by rule, listed in ``info["keywords"]`` and warned
    about; ``strict_keywords`` makes them an error (:func:`repro.data.sources.load_odir`).
    ``layout`` (:class:`repro.paths.Layout`, default ``$REPRO_RESULTS`` or ``out/``) places the split files of
    data other than the reference subset, the image cache and the per-file hashes of the data identity.
    ``allow_outside_root``: accept images outside the data folder (:func:`repro.data.sources.load_dataset`).
    """
    prof = get_profile(profile)
    seed = prof.split_seed if split_seed is None else int(split_seed)
    ds = load_dataset(data_root, taxonomy=prof.taxonomy, skip_bad_images=skip_bad_images,
                      strict_keywords=strict_keywords, allow_outside_root=allow_outside_root)
    image_cache = layout.cache / "images" if layout is not None else None
    if skip_bad_images:
        ds = _drop_bad_images(ds, prof.image_size, image_cache)
    identity = data_identity(ds.manifest, ds.name, layout.cache if layout is not None else None)

    split_df, split_file = load_or_make_split(ds, seed, prof.max_patients, directory=split_directory,
                                              user_directory=layout.splits if layout is not None else None,
                                              identity=identity)
    pos = pd.Series(np.arange(len(ds.manifest)), index=ds.manifest["image"].values)
    rows = np.sort(pos.reindex(split_df["image"].values).to_numpy())
    manifest = ds.manifest.iloc[rows].reset_index(drop=True)
    by_image = split_df.set_index("image")
    manifest["split"] = by_image.loc[manifest["image"], "split"].to_numpy()
    manifest["p_min"] = pd.array(by_image.loc[manifest["image"], "p_min"].to_numpy(), dtype="Int64")
    for s in SPLITS:
        split_images(manifest, s)  # an empty split is a DataError here, not an IndexError later

    manifest["fine_class"], fine_classes = fold_fine(manifest, prof.t2_min_count)
    coarse_classes = _coarse_classes(ds, manifest)
    manifest["coarse_idx"] = manifest["coarse"].map({c: i for i, c in enumerate(coarse_classes)}).astype(np.int64)
    manifest["fine_idx"] = manifest["fine_class"].map({c: i for i, c in enumerate(fine_classes)}).astype(np.int64)

    tokens = [tokenize(c) for c in manifest["caption"]]
    pool = (manifest["split"] == "train").to_numpy()
    vocab = Vocab.build([t for t, keep in zip(tokens, pool) if keep], prof.vocab_min_count)
    L = prof.max_caption_len
    captions = np.asarray([vocab.encode(t, L) for t in tokens], dtype=np.int64).reshape(len(tokens), L + 1)

    images = None
    if with_images:
        images, bad = load_image_cache(manifest, prof.image_size, skip_bad_images=skip_bad_images,
                                       cache_root=image_cache)
        if bad:  # only reachable when the files changed between the check above and now
            raise DataError(f"image(s) {bad[:3]} became unreadable while preparing the data; run again.")
        modes = (cache_info(manifest, prof.image_size, image_cache) or {}).get("modes", {})
    else:
        modes = {}

    return PreparedData(
        manifest=manifest, excluded=ds.excluded, bad_images=ds.bad_images,
        coarse_classes=tuple(coarse_classes), fine_classes=fine_classes, vocab=vocab, captions=captions,
        images=images, split_file=split_file, split_hash=split_hash(split_file), dataset_name=ds.name,
        data_root=ds.root, layout=ds.layout, taxonomy=ds.taxonomy, profile=prof.name, split_seed=seed,
        max_patients=prof.max_patients, image_size=prof.image_size, max_caption_len=L,
        t2_min_count=prof.t2_min_count, data_identity=identity,
        info={"tokens": tokens, "vocab_min_count": prof.vocab_min_count, **ds.info, "image_modes": modes,
              "warnings": keyword_warnings(ds.info.get("keywords")) + split_warnings(manifest, coarse_classes)
              + mode_warnings(modes)},
    )


def mode_warnings(modes: dict[str, int]) -> list[str]:
    """One warning naming the image modes other than 8-bit RGB the decoder converted, with their counts."""
    other = {m: n for m, n in sorted(modes.items()) if m != "RGB"}
    if not other:
        return []
    return ["images converted to 8-bit RGB: " + ", ".join(f"{n} in mode {m}" for m, n in other.items())
            + " (16-bit images are scaled by their bit depth, not clipped; see the data summary's image_modes)"]


def keyword_warnings(report: dict | None) -> list[str]:
    """One warning naming the keywords decided by rule rather than the table (none when there are none)."""
    if not report or not report.get("by_rule"):
        return []
    return [f"{report['distinct_by_rule']} diagnostic keyword(s) not in the keyword table were decided by rule "
            f"({report['occurrences_by_rule']} occurrence(s)): {describe_rule_decided(report, limit=5)}; "
            "`python -m repro data --summary` lists them all, --strict-keywords makes them an error"]


MIN_SPLIT_PATIENTS = 20   # below this many patients a split's metrics are too noisy to compare


def split_warnings(manifest: pd.DataFrame, coarse_classes, min_patients: int = MIN_SPLIT_PATIENTS) -> list[str]:
    """Plain-language warnings about a degenerate split: a split with fewer than ``min_patients``
    patients, or T1 classes with no test image (balanced accuracy then averages fewer classes)."""
    out = []
    for s in SPLITS:
        sel = manifest[manifest["split"] == s]
        n = int(sel["patient_id"].nunique())
        if n < min_patients:
            out.append(f"split {s!r} has only {n} patient(s) ({len(sel)} images, fewer than {min_patients}): "
                       "its metrics are too noisy to compare; use a larger data folder")
    in_test = set(manifest.loc[manifest["split"] == "test", "coarse"])
    absent = [c for c in coarse_classes if c not in in_test]
    if absent:
        out.append(f"T1 class(es) {absent} have no test image: per-class recall and balanced accuracy "
                   "leave them out")
    return out


def _counts(frame: pd.DataFrame, classes) -> dict[str, int]:
    vc = frame["coarse"].value_counts()
    return {c: int(vc.get(c, 0)) for c in classes}


def caption_lengths(prepared: PreparedData) -> pd.Series:
    """Caption length in tokens per image (before truncation to ``max_caption_len``), manifest order."""
    toks = prepared.info.get("tokens") or [tokenize(c) for c in prepared.manifest["caption"]]
    return pd.Series([len(t) for t in toks], index=prepared.manifest.index, name="tokens", dtype=np.int64)


def data_summary(prepared: PreparedData) -> dict[str, Any]:
    """JSON-ready summary of the prepared data (the data report of notebook 00 and ``repro data``)."""
    m = prepared.manifest
    classes = prepared.coarse_classes
    splits = {s: {"images": int((m["split"] == s).sum()),
                  "patients": int(m.loc[m["split"] == s, "patient_id"].nunique())} for s in SPLITS}
    per_p, counts_p = {}, {}
    for p in P_VALUES:
        sel = m.iloc[prepared.indices("train", p=p)]
        per_p[str(p)] = {"images": len(sel), "patients": int(sel["patient_id"].nunique())}
        counts_p[str(p)] = _counts(sel, classes)
    lengths = caption_lengths(prepared)
    pool = m["split"] == "train"
    tokens = prepared.info.get("tokens", [])
    excl = prepared.excluded
    return {
        "dataset": prepared.dataset_name,
        "data_identity": prepared.data_identity,
        "layout": prepared.layout,
        "data_root": project_relative(prepared.data_root, siblings=True),
        "profile": prepared.profile,
        "taxonomy": prepared.taxonomy,
        "image_size": prepared.image_size,
        "max_patients": prepared.max_patients,
        "split_seed": prepared.split_seed,
        "images_kept": len(m),
        "images_excluded": len(excl),
        "excluded_by_reason": {str(k): int(v) for k, v in excl["reason"].value_counts().sort_index().items()}
        if len(excl) else {},
        "bad_images": [str(x) for x in prepared.bad_images["image"]],
        "image_modes": dict(prepared.info.get("image_modes") or {}),
        "patients": int(m["patient_id"].nunique()),
        "split_file": project_relative(prepared.split_file, siblings=True),
        "split_hash": prepared.split_hash,
        "splits": splits,
        "per_p": per_p,
        "coarse_classes": list(classes),
        "coarse_counts": {s: _counts(m[m["split"] == s], classes) for s in SPLITS},
        "coarse_counts_per_p": counts_p,
        "fine_classes": len(prepared.fine_classes),
        "fine_classes_raw_in_pool": int(m.loc[pool, "fine"].nunique()),
        "fine_classes_folded": int(sum(c.startswith(OTHER_PREFIX) for c in prepared.fine_classes)),
        "t2_min_count": prepared.t2_min_count,
        "vocab_size": len(prepared.vocab),
        "vocab_min_count": prepared.vocab.min_count,
        "unknown_token_rate": {s: round(prepared.vocab.unknown_rate(
            [t for t, sp in zip(tokens, m["split"]) if sp == s]), 6) for s in ("val", "test")},
        "mean_caption_len": round(float(lengths.mean()), 4),
        "max_caption_len": prepared.max_caption_len,
        "captions_truncated": int((lengths > prepared.max_caption_len).sum()),
        "keywords": prepared.info.get("keywords"),
        "warnings": list(prepared.info.get("warnings", [])),
    }


def ngrams_by_class(prepared: PreparedData, n: int, top: int = 5, split: str | None = None) -> pd.DataFrame:
    """The ``top`` most frequent word n-grams of the captions per T1 class (paper Table 2).

    n-grams stay inside one keyword (they never span the ``,`` between two
    keywords); punctuation is not a word. Ties are broken alphabetically.
    Columns: ``coarse, rank, ngram, count, images`` (images: how many of the
    class's captions contain the n-gram).
    """
    if n < 1:
        raise ConfigError(f"n-gram order must be >= 1, got {n}")
    m = prepared.manifest
    toks = prepared.info.get("tokens") or [tokenize(c) for c in m["caption"]]
    rows = []
    for cls in prepared.coarse_classes:
        mask = (m["coarse"] == cls) & (True if split is None else m["split"] == split)
        count, images = Counter(), Counter()
        for i in np.flatnonzero(mask.to_numpy()):
            seen = set()
            segment: list[str] = []
            for t in toks[i] + [","]:
                if any(ch.isalnum() for ch in t):
                    segment.append(t)
                    continue
                for j in range(len(segment) - n + 1):
                    g = " ".join(segment[j:j + n])
                    count[g] += 1
                    seen.add(g)
                segment = []
            images.update(seen)
        best = sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        rows += [{"coarse": cls, "rank": r + 1, "ngram": g, "count": c, "images": images[g]}
                 for r, (g, c) in enumerate(best)]
    return pd.DataFrame(rows, columns=["coarse", "rank", "ngram", "count", "images"])
