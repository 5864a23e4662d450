"""Data set adapters: one manifest format for every layout (docs/design.md §2).

A manifest is a ``pandas.DataFrame`` with one row per image and the columns
``MANIFEST_COLUMNS``:

============  ==============================================================
image         file name, the image's unique id (``0_left.jpg``)
path          absolute path of the image file
patient_id    patient id (str); both eyes of a patient share it
eye           ``left`` / ``right`` (``""`` when unknown)
keywords      the eye's raw keyword text (``""`` for manifest data)
categories    the eye's ODIR categories, ``"D,O"`` (``""`` for manifest data)
coarse        T1 class of the chosen taxonomy
fine          T2 class, not yet folded (folding depends on the split: repro.data)
caption       T3 caption text
============  ==============================================================

Layouts: ODIR-5K as on Kaggle (``full_df.csv`` + ``preprocessed_images/``) and
a generic ``manifest.csv`` (``image, patient_id, coarse, fine, caption``, image
paths relative to the CSV's folder) for users' own fundus data.

Every image must lie inside the data folder once symlinks are resolved: a row naming an absolute path,
a ``../`` path or a link to a file elsewhere is refused before the file is opened
(:func:`check_inside_root`), unless ``allow_outside_root`` (``--allow-outside-root``, or
``$REPRO_ALLOW_OUTSIDE_ROOT=1`` for the notebooks of a sweep) says otherwise.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from repro.data import labels as L
from repro.errors import DataError
from repro.names import ALLOW_OUTSIDE_ENV
from repro.paths import resolve_data_root

MANIFEST_COLUMNS = ("image", "path", "patient_id", "eye", "keywords", "categories", "coarse", "fine", "caption")


ODIR_CSV = "full_df.csv"


ODIR_IMAGES = "preprocessed_images"


ODIR_REQUIRED = ("ID", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords",
                 "Right-Diagnostic Keywords", "filename")


ODIR_FLAGS = L.CATEGORIES


MANIFEST_CSV = "manifest.csv"


MANIFEST_REQUIRED = ("image", "patient_id", "coarse", "fine", "caption")


BAD_COLUMNS = ("image", "path", "reason")


@dataclass
class Dataset:
    """A loaded data set: the kept images, the excluded ones (with ``reason``), the bad ones."""

    manifest: pd.DataFrame
    excluded: pd.DataFrame
    bad_images: pd.DataFrame
    root: Path
    layout: str                      # "odir" or "manifest"
    name: str                        # used in split file names: "odir5k-n<images>" (a different image set, e.g. a
                                     # full Kaggle download, gets its own split file), or the manifest folder's name
    taxonomy: str = "paper5"
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.manifest)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"CSV file {path} does not exist.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read CSV file {path}: {e}. Check that it is a comma-separated text file.") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"CSV file {path} lacks the required column(s) {missing} (it has {list(df.columns)}); "
            f"a file of this layout needs {list(required)}."
        )
    return df


def _line(i: int) -> int:
    """1-based line number in the CSV file of data row ``i`` (the header is line 1)."""
    return i + 2


def _image_files(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in columns})


def _frame(rows: list[dict], columns) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)) if rows else _empty(columns)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "data"


def outside_root_allowed(allow: bool | None) -> bool:
    """``allow`` when given, else whether ``$REPRO_ALLOW_OUTSIDE_ROOT`` is set to 1."""
    return bool(allow) if allow is not None else os.environ.get(ALLOW_OUTSIDE_ENV, "") == "1"


def check_inside_root(rows: list[tuple[str, str, str]], root: Path, allow: bool) -> None:
    """One DataError for the rows ``(image, path, where)`` whose path, symlinks resolved, leaves ``root``.

    Only path names and links are read here (``realpath``), never the files themselves.
    """
    if allow:
        return
    base = Path(os.path.realpath(root))
    folders: dict[str, str] = {}

    def real(path: str) -> Path:  # realpath of the folder once, of the file only when it is a link
        folder, name = os.path.split(os.path.abspath(path))
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        joined = os.path.join(folders[folder], name)
        return Path(os.path.realpath(joined) if os.path.islink(joined) else joined)

    outside = [(img, p, w, r) for img, p, w in rows if not (r := real(p)).is_relative_to(base)]
    if outside:
        img, p, where, real = outside[0]
        more = f" ({len(outside) - 1} more row(s) like it)" if len(outside) > 1 else ""
        raise DataError(f"{where}: image {img!r} is {real}, outside the data folder {base}{more}; images are "
                        "read only from inside the data folder. Copy the file into it, or pass "
                        "--allow-outside-root (allow_outside_root=True) if the data is meant to live elsewhere.")


def odir_eye_rows(root: str | os.PathLike) -> pd.DataFrame:
    """One row per image of ``full_df.csv``: image, patient_id, eye, keywords, line (CSV line number).

    In the Kaggle table each row is one image, named in ``filename``; the row
    carries both eyes' keyword columns, and the image is the left eye when
    ``filename == Left-Fundus`` and the right eye when ``filename == Right-Fundus``.
    """
    root = Path(root)
    csv = root / ODIR_CSV
    df = _read_csv(csv, ODIR_REQUIRED)
    rows = []
    seen: dict[str, int] = {}
    for i, r in enumerate(df.itertuples(index=False)):
        row = dict(zip(df.columns, r))
        fname = row["filename"].strip()
        where = f"{csv}:line {_line(i)}"
        if not fname:
            raise DataError(f"{where}: empty 'filename'. Every row must name its image file.")
        if fname == row["Left-Fundus"].strip():
            eye, kw = "left", row["Left-Diagnostic Keywords"]
        elif fname == row["Right-Fundus"].strip():
            eye, kw = "right", row["Right-Diagnostic Keywords"]
        else:
            raise DataError(
                f"{where}: filename {fname!r} is neither Left-Fundus ({row['Left-Fundus']!r}) nor "
                f"Right-Fundus ({row['Right-Fundus']!r}); fix the row so that the eye is known."
            )
        if fname in seen:
            raise DataError(f"{where}: image {fname!r} appears a second time (first at line {seen[fname]}); "
                            "remove the duplicate row.")
        seen[fname] = _line(i)
        if not str(kw).strip():
            raise DataError(f"{where}: image {fname!r} has no diagnostic keywords; fill in the {eye} eye's keywords "
                            "or remove the row.")
        rows.append({"image": fname, "patient_id": row["ID"].strip(), "eye": eye, "keywords": kw,
                     "line": _line(i)})
    if not rows:
        raise DataError(f"{csv} has no data rows.")
    return pd.DataFrame(rows)


def load_odir(root: str | os.PathLike, taxonomy: str = "paper5", skip_bad_images: bool = False,
              strict_keywords: bool = False, allow_outside_root: bool | None = None) -> Dataset:
    """ODIR-5K in the Kaggle layout: ``full_df.csv`` + ``preprocessed_images/{ID}_{left|right}.jpg``.

    Each image of the table appears once. Images whose keywords include an
    exclusion keyword ("anterior segment image", "no fundus image"), or that
    carry only quality keywords, go to ``excluded`` with a ``reason``. A
    missing image file is a :class:`DataError` (file and CSV line) unless
    ``skip_bad_images``, in which case it is listed in ``bad_images``.
    Keywords the table lacks are decided by the rules of :data:`repro.data.labels.RULES`
    and listed in ``info["keywords"]`` (:func:`repro.data.labels.keyword_report`);
    with ``strict_keywords`` they are one :class:`DataError` listing them all.
    An image outside ``root`` is refused (:func:`check_inside_root`) unless ``allow_outside_root``.
    """
    L.check_taxonomy(taxonomy)
    root = Path(root).resolve()
    csv = root / ODIR_CSV
    img_dir = root / ODIR_IMAGES
    eyes = odir_eye_rows(root)
    check_inside_root([(r.image, str(img_dir / r.image), f"{csv}:line {r.line}") for r in eyes.itertuples(index=False)],
                      root, outside_root_allowed(allow_outside_root))
    keywords = L.keyword_report(eyes["keywords"], eyes["line"])
    if strict_keywords:
        L.check_strict_keywords(keywords, str(csv))
    present = _image_files(img_dir)
    if not present:
        raise DataError(f"image folder {img_dir} is missing or empty; the ODIR layout needs "
                        f"{ODIR_CSV} and {ODIR_IMAGES}/ side by side in {root}.")
    kept, excluded, bad = [], [], []
    for r in eyes.itertuples(index=False):
        where = f"{csv}:line {r.line}"
        kws = L.split_keywords(r.keywords)
        path = str(img_dir / r.image)
        cats = L.eye_categories(kws, where)
        rec = {"image": r.image, "path": path, "patient_id": r.patient_id, "eye": r.eye,
               "keywords": r.keywords, "categories": ",".join(cats)}
        excl = [k for k in kws if L.is_excluding(k)]
        if excl:
            excluded.append({**rec, "coarse": "", "fine": "", "caption": L.caption_text(r.keywords),
                             "reason": L.canonical_keyword(excl[0])})
            continue
        if not cats:
            excluded.append({**rec, "coarse": "", "fine": "", "caption": L.caption_text(r.keywords),
                             "reason": "quality keywords only"})
            continue
        if r.image not in present:
            if not skip_bad_images:
                raise DataError(
                    f"image file {path} is missing (listed in {where}). Restore the file, remove the row, "
                    "or pass skip_bad_images=True / --skip-bad-images to skip it (it is then listed in the data report)."
                )
            bad.append({"image": r.image, "path": path, "reason": "missing file"})
            continue
        kept.append({**rec, "coarse": L.coarse_label(cats, taxonomy), "fine": L.fine_label(kws),
                     "caption": L.caption_text(r.keywords)})
    manifest = _frame(kept, MANIFEST_COLUMNS)
    if manifest.empty:
        raise DataError(f"no usable image in {csv} (all excluded or missing).")
    return Dataset(manifest=manifest, excluded=_frame(excluded, MANIFEST_COLUMNS + ("reason",)),
                   bad_images=_frame(bad, BAD_COLUMNS), root=root, layout="odir",
                   name=f"odir5k-n{len(manifest)}", taxonomy=taxonomy,
                   info={"csv": str(csv), "csv_rows": len(eyes), "keywords": keywords})


def patient_flag_table(root: str | os.PathLike) -> pd.DataFrame:
    """Per patient: the N..O flags of ``full_df.csv`` beside those rebuilt from the per-eye keywords.

    The comparison, faithful to how ODIR defines the flags:

    - both eyes count, from the row's two keyword columns (a patient's flags
      describe both eyes even where one image is not in the folder);
    - D G C A H M O: set when any eye has a keyword of that category;
    - N: set when the patient's decisive categories are exactly {N} (every
      decisive keyword is "normal fundus"). Quality and exclusion keywords
      decide nothing, so "low image quality" + "normal fundus" is N, as in the data.

    Columns: ``patient_id``, ``true`` and ``pred`` (8-letter strings such as
    ``"01000001"``), ``agree`` (bool).
    """
    root = Path(root)
    csv = root / ODIR_CSV
    df = _read_csv(csv, ("ID", "Left-Diagnostic Keywords", "Right-Diagnostic Keywords") + ODIR_FLAGS)
    first = df.drop_duplicates("ID")
    out = []
    for i, row in zip(first.index, first.itertuples(index=False)):
        row = dict(zip(df.columns, row))
        where = f"{csv}:line {_line(int(i))}"
        cats: set[str] = set()
        for col in ("Left-Diagnostic Keywords", "Right-Diagnostic Keywords"):
            cats |= set(L.eye_categories(L.split_keywords(row[col]), where))
        pred = {c: int(c in cats) for c in ODIR_FLAGS if c != "N"}
        pred["N"] = int(cats == {"N"})
        try:
            true = {c: int(row[c]) for c in ODIR_FLAGS}
        except ValueError:
            raise DataError(f"{where}: the flags {list(ODIR_FLAGS)} must be 0 or 1, got "
                            f"{[row[c] for c in ODIR_FLAGS]}.") from None
        t = "".join(str(true[c]) for c in ODIR_FLAGS)
        p = "".join(str(pred[c]) for c in ODIR_FLAGS)
        out.append({"patient_id": row["ID"], "true": t, "pred": p, "agree": t == p})
    return pd.DataFrame(out)


def patient_flag_agreement(root: str | os.PathLike | None = None) -> float:
    """Fraction of ODIR patients whose flags N..O equal those rebuilt from the keyword table
    (:func:`patient_flag_table` defines the comparison). Measured on the shared subset: 1.0
    (2,878 / 2,878); with the stricter "N only if both eyes are exactly 'normal fundus'" rule 0.9997."""
    table = patient_flag_table(resolve_data_root(root))
    return float(table["agree"].mean())


def load_manifest_csv(csv_path: str | os.PathLike, skip_bad_images: bool = False,
                      allow_outside_root: bool | None = None) -> Dataset:
    """A user's own data: a CSV with ``image, patient_id, coarse, fine, caption`` (``eye`` optional).

    Image paths are relative to the CSV's folder; one outside it (absolute, ``../`` or a symlink) is
    refused unless ``allow_outside_root`` (:func:`check_inside_root`).
    """
    csv = Path(csv_path).resolve()
    df = _read_csv(csv, MANIFEST_REQUIRED)
    names = [str(v).strip() for v in df["image"]]
    check_inside_root([(n, str(Path(n) if Path(n).is_absolute() else csv.parent / n), f"{csv}:line {_line(i)}")
                       for i, n in enumerate(names) if n], csv.parent, outside_root_allowed(allow_outside_root))
    kept, bad = [], []
    seen: dict[str, int] = {}
    for i, r in enumerate(df.itertuples(index=False)):
        row = {k: str(v).strip() for k, v in zip(df.columns, r)}
        where = f"{csv}:line {_line(i)}"
        empty = [c for c in MANIFEST_REQUIRED if c != "fine" and not row[c]]
        if empty:
            raise DataError(f"{where}: empty value(s) in column(s) {empty}; fill them in or remove the row.")
        image = row["image"]
        if image in seen:
            raise DataError(f"{where}: image {image!r} appears a second time (first at line {seen[image]}); "
                            "remove the duplicate row.")
        seen[image] = _line(i)
        path = Path(image) if Path(image).is_absolute() else csv.parent / image
        if not path.is_file():
            if not skip_bad_images:
                raise DataError(f"image file {path} is missing (listed in {where}). Restore the file, remove the "
                                "row, or pass skip_bad_images=True / --skip-bad-images to skip it.")
            bad.append({"image": image, "path": str(path), "reason": "missing file"})
            continue
        eye = row.get("eye", "").lower()
        kept.append({"image": image, "path": str(path), "patient_id": row["patient_id"], "eye": eye,
                     "keywords": "", "categories": "", "coarse": row["coarse"],
                     "fine": row["fine"] or row["coarse"],
                     "caption": " ".join(row["caption"].lower().split())})
    manifest = _frame(kept, MANIFEST_COLUMNS)
    if manifest.empty:
        raise DataError(f"no usable image in {csv}.")
    return Dataset(manifest=manifest, excluded=_empty(MANIFEST_COLUMNS + ("reason",)),
                   bad_images=_frame(bad, BAD_COLUMNS), root=csv.parent, layout="manifest",
                   name=_safe_name(csv.parent.name), taxonomy="manifest", info={"csv": str(csv), "csv_rows": len(df)})


def detect_layout(root: Path) -> str:
    """``"odir"`` (full_df.csv), ``"manifest"`` (manifest.csv) or a DataError naming the expected files."""
    if (root / ODIR_CSV).is_file():
        return "odir"
    if (root / MANIFEST_CSV).is_file():
        return "manifest"
    raise DataError(
        f"{root} holds neither {ODIR_CSV} (ODIR-5K, Kaggle layout: {ODIR_CSV} + {ODIR_IMAGES}/) nor "
        f"{MANIFEST_CSV} (generic layout: columns {', '.join(MANIFEST_REQUIRED)}). Point data_root at such a folder."
    )


def load_dataset(root: str | os.PathLike | None = None, taxonomy: str = "paper5",
                 skip_bad_images: bool = False, strict_keywords: bool = False,
                 allow_outside_root: bool | None = None) -> Dataset:
    """Load the data set at ``root`` (resolved by :func:`repro.paths.resolve_data_root`), layout auto-detected.

    ``strict_keywords`` (ODIR layout only; a manifest has no keywords): see :func:`load_odir`.
    ``allow_outside_root``: accept images outside the data folder (default: ``$REPRO_ALLOW_OUTSIDE_ROOT``).
    """
    root = resolve_data_root(root)
    if root.is_file():
        if root.suffix == ".csv" and root.name != ODIR_CSV:
            return load_manifest_csv(root, skip_bad_images=skip_bad_images, allow_outside_root=allow_outside_root)
        root = root.parent
    if detect_layout(root) == "odir":
        return load_odir(root, taxonomy=taxonomy, skip_bad_images=skip_bad_images, strict_keywords=strict_keywords,
                         allow_outside_root=allow_outside_root)
    return load_manifest_csv(root / MANIFEST_CSV, skip_bad_images=skip_bad_images,
                             allow_outside_root=allow_outside_root)
