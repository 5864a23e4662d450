"""Patient-level, stratified, nested splits saved to a file every run reuses (docs/design.md §2).

Algorithm (``make_split``), all driven by one ``numpy`` generator seeded with ``seed``:

1. Each patient gets one stratum: the highest-priority ``paper5`` class over
   its images (dr > amd > glaucoma > other > normal, ``repro.labels.PRIORITY``),
   so the split file does not depend on the taxonomy used for training.
2. *Stratified order*: within each stratum the patients are shuffled and the
   k-th of n gets the key ``(k + u) / n`` (one uniform offset ``u`` per
   stratum); sorting all patients by key interleaves the strata, so every
   prefix of the order holds each stratum in proportion.
3. Optional ``max_patients``: keep the first ``max_patients`` of such an order.
4. Test = the first ``round(0.15 n)`` patients of a new stratified order, val =
   the next ``round(0.15 n)``, the training pool = the rest (~70 %).
5. Labeled fractions: a stratified order of the pool; L_p = its first
   ``round(p/100 * n)`` patients (p in % of ALL n patients), L70 = the whole
   pool. Prefixes of one order, so L15 ⊂ L30 ⊂ L45 ⊂ L60 ⊂ L70.

The file holds one row per image: ``image, patient_id, split, p_min, coarse``
(``p_min``: smallest p whose L_p holds the image, empty for val/test;
``coarse``: the paper5 stratum label of the image).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from repro.data import labels as L
from repro.data.identity import data_identity
from repro.errors import ConfigError, DataError
from repro.io import atomic_write_text
from repro.names import P_VALUES, check_p
from repro.paths import layout, split_dir

TEST_FRACTION = 0.15


VAL_FRACTION = 0.15


SPLITS = ("train", "val", "test")


SPLIT_COLUMNS = ("image", "patient_id", "split", "p_min", "coarse")


UNLABELED_MODES = ("all", "rest")


#: content hash (:func:`repro.data.identity.content_hash`: image bytes and label rows) of the reference
#: ODIR-5K subset -> the name of its committed split files
REFERENCE_DATA = {"ab893fd36dde": "odir5k-n5503"}


_PAPER5_RANK = {L.CATEGORY_NAMES["paper5"][c]: i for i, c in reversed(list(enumerate(L.PRIORITY)))}


def stratum_labels(manifest: pd.DataFrame) -> pd.Series:
    """Per image: the paper5 class (from ``categories`` for ODIR data, else the manifest's ``coarse``)."""
    if "categories" in manifest.columns:
        cats = manifest["categories"].fillna("").astype(str)
        has = cats != ""
        out = manifest["coarse"].astype(str).copy()
        out[has] = [L.coarse_label(c, "paper5") for c in cats[has]]
        return out
    return manifest["coarse"].astype(str)


def _patient_rank(label: str) -> tuple[int, str]:
    return (_PAPER5_RANK.get(label, len(_PAPER5_RANK) - 1), label)


def patient_strata(manifest: pd.DataFrame) -> pd.Series:
    """Per patient (index: patient_id, sorted): the highest-priority stratum label of its images.

    Labels outside paper5 (user data) rank with "other", alphabetically, before "normal".
    """
    lab = stratum_labels(manifest)
    frame = pd.DataFrame({"patient_id": manifest["patient_id"].astype(str).values, "label": lab.values})
    best = frame.groupby("patient_id", sort=True)["label"].agg(lambda s: min(s, key=_patient_rank))
    return best


def _stratified_order(strata: pd.Series, rng: np.random.Generator) -> list[str]:
    """Patients (the index of ``strata``) in an order whose every prefix is stratified."""
    keys: list[tuple[float, float, str]] = []
    for label in sorted(strata.unique()):
        members = np.array(sorted(strata.index[strata == label]))
        rng.shuffle(members)
        n = len(members)
        u = rng.random()
        ties = rng.random(n)
        keys.extend(((k + u) / n, ties[k], pid) for k, pid in enumerate(members))
    keys.sort()
    return [pid for _, _, pid in keys]


def _test_val_train(order: list, units: str) -> tuple[dict, list]:
    """The first TEST_FRACTION of ``order`` is test, the next VAL_FRACTION val, the rest the training
    pool: ``({unit: split}, pool in order)``; too few ``units`` (patients or images) is a DataError."""
    n = len(order)
    n_test, n_val = round(TEST_FRACTION * n), round(VAL_FRACTION * n)
    if n - n_test - n_val < 1 or n_test < 1 or n_val < 1:
        raise DataError(f"{n} {units} are too few for a test/val/train split; use more {units}.")
    pool = list(order[n_test + n_val:])
    split_of = {u: "test" for u in order[:n_test]}
    split_of.update({u: "val" for u in order[n_test:n_test + n_val]})
    split_of.update({u: "train" for u in pool})
    return split_of, pool


def _nested_fractions(pool_order: list, n: int) -> dict:
    """``{unit: p_min}``: the first p % of ``n`` units of the ordered pool enter L_p (L15 ⊂ … ⊂ L70;
    the largest p takes the whole pool)."""
    p_of: dict = {}
    start = 0
    for p in P_VALUES:
        end = len(pool_order) if p == max(P_VALUES) else min(round(p / 100 * n), len(pool_order))
        p_of.update({u: p for u in pool_order[start:end]})
        start = max(start, end)
    return p_of


def make_split(manifest: pd.DataFrame, seed: int, max_patients: int | None = None) -> pd.DataFrame:
    """Patient-level stratified split of ``manifest`` (see the module docstring).

    Returns one row per image of the (sub-sampled) manifest, in manifest order:
    ``image, patient_id, split, p_min, coarse``.
    """
    if manifest.empty:
        raise DataError("cannot split an empty manifest (no usable images).")
    strata = patient_strata(manifest)
    rng = np.random.default_rng(int(seed))
    if max_patients is not None:
        if int(max_patients) < 3:
            raise ConfigError(f"max_patients must be at least 3 (test, val, train), got {max_patients}")
        strata = strata.loc[sorted(_stratified_order(strata, rng)[: int(max_patients)])]
    order = _stratified_order(strata, rng)
    split_of, pool = _test_val_train(order, "patients")
    p_of = _nested_fractions(_stratified_order(strata.loc[sorted(pool)], rng), len(order))
    pids = manifest["patient_id"].astype(str)
    keep = pids.isin(split_of).values
    out = pd.DataFrame({
        "image": manifest["image"].astype(str).values[keep],
        "patient_id": pids.values[keep],
        "split": [split_of[p] for p in pids.values[keep]],
        "p_min": pd.array([p_of.get(p) for p in pids.values[keep]], dtype="Int64"),
        "coarse": stratum_labels(manifest).values[keep],
    })
    return out.reset_index(drop=True)


def split_to_csv(split_df: pd.DataFrame) -> str:
    """The split as CSV text (stable bytes: fixed columns, ``\\n`` line ends, empty p_min for val/test)."""
    buf = io.StringIO()
    split_df.loc[:, list(SPLIT_COLUMNS)].to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """Read a split file (DataError for a missing file or column, or a bad ``split``/``p_min`` value)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} does not exist; run prepare_data (python -m repro prepare) to create it.")
    df = pd.read_csv(path, dtype={"image": str, "patient_id": str, "split": str, "coarse": str},
                     keep_default_na=False)
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"split file {path} lacks column(s) {missing}; delete it to have it made again.")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"split file {path} line {i + 2}: split {df['split'].iloc[i]!r} is not one of {SPLITS}; "
                        "delete the file to have it made again.")
    p = pd.to_numeric(df["p_min"].replace("", np.nan), errors="coerce")
    bad = ~(p.isna() | p.isin(P_VALUES)) | (p.isna() & (df["split"] == "train"))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"split file {path} line {i + 2}: p_min {df['p_min'].iloc[i]!r} is not one of {P_VALUES} "
                        "(train rows need one, val/test rows none); delete the file to have it made again.")
    df["p_min"] = p.astype("Int64")
    return df.loc[:, list(SPLIT_COLUMNS)]


def reference_name(identity: str) -> str | None:
    """The committed split-file name of ``identity`` when it is the reference subset, else ``None``."""
    return REFERENCE_DATA.get(identity.rsplit("-", 1)[-1])


def split_path(identity: str, seed: int, max_patients: int | None = None,
               directory: str | os.PathLike | None = None) -> Path:
    """Where the split of data set ``identity`` (:func:`data_identity`) for ``seed`` lives.

    The reference subset: the committed ``results/splits/odir5k-n5503_seed<seed>[_n<max_patients>].csv``.
    Any other data (a full download, a manifest folder, a subset left by skipped images):
    ``<results root>/splits/<identity>_seed<seed>[_n<max_patients>].csv``. ``directory`` overrides the folder.
    """
    ref = reference_name(identity)
    stem = f"{ref or identity}_seed{int(seed)}" + (f"_n{int(max_patients)}" if max_patients is not None else "")
    folder = directory or (split_dir() if ref else layout().splits)
    return Path(folder) / f"{stem}.csv"


def split_hash(path: str | os.PathLike) -> str:
    """First 16 hex digits of the split file's sha256 (recorded in every result)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def check_split_matches(split_df: pd.DataFrame, manifest: pd.DataFrame, path: Path,
                        max_patients: int | None = None) -> None:
    """DataError when a saved split no longer fits the manifest (other images or patients)."""
    if Path(path).resolve().parent == split_dir().resolve():
        how = (f"{path} is a committed reference split: restore it from git rather than deleting it; a data "
               "folder with other images gets a split file of its own.")
    else:
        how = (f"Delete {path} to have it made again (results of earlier runs then no longer share its hash), "
               "or pass another split seed.")
    man = pd.Series(manifest["patient_id"].astype(str).values, index=manifest["image"].astype(str).values)
    saved = pd.Series(split_df["patient_id"].astype(str).values, index=split_df["image"].astype(str).values)
    if saved.index.duplicated().any():
        dup = saved.index[saved.index.duplicated()][0]
        raise DataError(f"split file {path} lists image {dup!r} twice. {how}")
    unknown = saved.index.difference(man.index)
    if len(unknown):
        raise DataError(f"split file {path} lists {len(unknown)} image(s) not in the data set, e.g. "
                        f"{unknown[0]!r}. {how}")
    if max_patients is None:
        expected = man.index
    else:
        expected = man.index[man.isin(set(saved.values)).values]
        n_pat = saved.nunique()
        if n_pat != min(int(max_patients), man.nunique()):
            raise DataError(f"split file {path} holds {n_pat} patients, expected {max_patients}. {how}")
    absent = expected.difference(saved.index)
    if len(absent):
        raise DataError(f"the data set has {len(absent)} image(s) that split file {path} lacks, e.g. "
                        f"{absent[0]!r}. {how}")
    moved = saved != man.reindex(saved.index)
    if moved.any():
        img = saved.index[moved.values][0]
        raise DataError(f"split file {path} gives image {img!r} patient {saved[img]!r}, the data set "
                        f"{man[img]!r}. {how}")


def load_or_make_split(dataset, seed: int, max_patients: int | None = None,
                       directory: str | os.PathLike | None = None,
                       user_directory: str | os.PathLike | None = None,
                       identity: str | None = None) -> tuple[pd.DataFrame, Path]:
    """The saved split of ``dataset`` (a :class:`repro.datasets.Dataset`) for ``seed``; made and
    written atomically on first use, checked against the manifest on every later use.

    The file is named by the data set's content (:func:`split_path`); ``directory`` overrides its folder
    for every data set, ``user_directory`` only for data other than the reference subset; ``identity``
    (:func:`repro.data.identity.data_identity` of ``dataset``) saves hashing it again.
    Returns ``(split_df in manifest order, path)``.
    """
    identity = identity or data_identity(dataset.manifest, dataset.name)
    if directory is None and user_directory is not None and not reference_name(identity):
        directory = user_directory
    path = split_path(identity, seed, max_patients, directory)
    manifest = dataset.manifest
    if path.exists():
        split_df = read_split(path)
        check_split_matches(split_df, manifest, path, max_patients)
    else:
        split_df = make_split(manifest, seed, max_patients)
        atomic_write_text(path, split_to_csv(split_df))
        split_df = read_split(path)
    order = pd.Series(np.arange(len(manifest)), index=manifest["image"].astype(str).values)
    split_df = split_df.iloc[np.argsort(order.reindex(split_df["image"]).values, kind="stable")]
    return split_df.reset_index(drop=True), path


def _nonempty(sel: pd.DataFrame, what: str) -> pd.DataFrame:
    if sel.empty:
        raise DataError(f"{what} is empty; the split has too few patients. Use more patients "
                        "(a larger max_patients / another profile) or check the split file.")
    return sel


def split_images(split_df: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split (``train``/``val``/``test``); DataError when empty."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {SPLITS}")
    return _nonempty(split_df[split_df["split"] == split], f"the {split} split")


def labeled_images(split_df: pd.DataFrame, p: int) -> pd.DataFrame:
    """L_p: the pool images whose ``p_min <= p`` (nested in p)."""
    p = check_p(p)
    sel = split_df[(split_df["split"] == "train") & (split_df["p_min"].fillna(10**6) <= p)]
    return _nonempty(sel, f"the labeled set L_{p}")


def unlabeled_images(split_df: pd.DataFrame, p: int, mode: str = "all") -> pd.DataFrame:
    """The unlabeled set for M3: ``"all"`` = the whole pool (labels hidden), ``"rest"`` = pool minus L_p.

    ``"rest"`` at p = 70 is empty, which is a DataError (use ``"all"`` there).
    """
    p = check_p(p)
    if mode not in UNLABELED_MODES:
        raise ConfigError(f"unknown unlabeled mode {mode!r}; choose one of {UNLABELED_MODES}")
    pool = split_df[split_df["split"] == "train"]
    sel = pool if mode == "all" else pool[pool["p_min"].fillna(10**6) > p]
    return _nonempty(sel, f"the unlabeled set (mode {mode!r}, p={p})")


def image_level_split(split_df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same images split per image, as the authors' code did (an ablation: it leaks patients).

    Steps 4-5 of :func:`make_split` applied to images instead of patients (stratified by each
    image's ``coarse``), so a patient's two eyes can land in train and test. ``split_df`` is a
    patient-level split (its rows and order are kept); only ``split`` and ``p_min`` change.
    """
    strata = pd.Series(split_df["coarse"].astype(str).values, index=split_df["image"].astype(str).values)
    if strata.index.duplicated().any():
        raise DataError(f"split lists image {strata.index[strata.index.duplicated()][0]!r} twice")
    rng = np.random.default_rng([int(seed), 1])
    order = _stratified_order(strata, rng)
    split_of, pool = _test_val_train(order, "images")
    p_of = _nested_fractions(_stratified_order(strata.loc[sorted(pool)], rng), len(order))
    out = split_df.loc[:, list(SPLIT_COLUMNS)].copy()
    out["split"] = [split_of[i] for i in strata.index]
    out["p_min"] = pd.array([p_of.get(i) for i in strata.index], dtype="Int64")
    return out.reset_index(drop=True)
