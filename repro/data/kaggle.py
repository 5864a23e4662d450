"""The reference ODIR-5K subset rebuilt from an extracted Kaggle download (``python -m repro data --from-kaggle``).

The committed results come from a 5,503-image subset of the Kaggle variant of ODIR-5K
("Ocular Disease Recognition", andrewmvd/ocular-disease-recognition-odir5k), its images at
256 x 256 px, exact duplicates removed. :func:`import_kaggle` rebuilds that subset from a download:

1. find the download's table and images: ``full_df.csv`` beside ``preprocessed_images/`` in the
   given folder or a subfolder (other files and folders, such as ``ODIR-5K/Training Images/``, are
   not read);
2. pick the reference's images by the committed list of (patient id, eye) keys
   (:data:`REFERENCE_KEYS`), in the reference's order; a table row repeated word for word counts once,
   and an image whose file is identical to one already picked is not written again;
3. copy an image that already has the reference's 256 x 256 px byte for byte; resize a larger square
   one (Kaggle's are 512 px) to 256 px as the reference was made: Pillow, bicubic, saved as JPEG with
   Pillow's defaults (quality 75, 4:2:0; the reference's files carry exactly Pillow's quality-75
   tables and JFIF header, though the filter used for them is not known);
4. write ``full_df.csv`` (the download's rows of the written images, the reference's columns and
   order) and ``preprocessed_images/`` into the output folder, all at once (a temp folder renamed
   into place), and ``kaggle_import.json`` beside them with every finding;
5. say what differs from the reference: keys missing (and why), and for each written image whether
   its file is identical to the reference's (file hash), or the same picture with other bytes
   (:func:`thumbnail` within :data:`SAME_PICTURE_MAD`), or a different picture; and for each table
   row whether it equals the reference's row; and the written folder's data identity
   (:func:`repro.data.splits.data_identity`, whatever it hashes), and whether it names the reference's
   committed split files.

Only when every key is written with an identical file and every row equals the reference's is the
data the reference data (same data identity, same committed split, ``make compare`` can match).

The committed key list (:data:`REFERENCE_KEYS`, one row per reference image, in the order of the
reference's ``full_df.csv``) has the columns of :data:`REFERENCE_COLUMNS`:

==========  ===================================================================================
patient_id  the ``ID`` of the table row
eye         ``left`` / ``right``; the image file is ``{patient_id}_{eye}.jpg``
sha256      the first :data:`FILE_HASH_DIGITS` hex digits of the image file's SHA-256
thumb       the decoded image's 4 x 4 RGB box-filter thumbnail, 48 bytes, base64 (:func:`thumbnail`)
row         the first :data:`ROW_HASH_DIGITS` hex digits of the SHA-256 of the table row (:func:`row_hash`)
==========  ===================================================================================

and :data:`REFERENCE_META` holds the table's columns, its SHA-256, the image size and the counts.
Both are written from the reference folder by :func:`write_reference_keys` (maintenance only:
``python -c "from repro.data.kaggle import write_reference_keys; write_reference_keys('../shared/data/odir5k')"``).

Why a thumbnail beside the file hash: a resize of a 512 px JPEG here need not give the reference's
bytes, and no reference pixels are shipped. The mean absolute difference of two 4 x 4 RGB thumbnails
(0..255 levels) tells "same picture, other bytes" from "another picture": measured on the reference,
a 256 -> 512 -> 256 px round trip through JPEG (200 images x 4 pipelines: quality 75-95, bicubic,
Lanczos, bilinear, nearest) stays at or below 0.54, while every image's nearest other image lies at
1.71 or more (the one pair of patients 352 and 973, the same photographs under two ids, aside).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from repro.data.sources import ODIR_CSV, ODIR_IMAGES, load_dataset
from repro.data.splits import data_identity, reference_name
from repro.errors import DataError
from repro.io import atomic_write_text, process_tag, read_json, tag_is_stale, write_json
from repro.paths import PROJECT_ROOT

#: where ``data --from-kaggle`` writes unless told otherwise (found by the data root resolution, repro.paths)
DEFAULT_OUT = PROJECT_ROOT / "data" / "odir5k"


REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


REFERENCE_KEYS = REFERENCE_DIR / "odir5k_reference.csv"


REFERENCE_META = REFERENCE_DIR / "odir5k_reference.json"


REFERENCE_COLUMNS = ("patient_id", "eye", "sha256", "thumb", "row")


#: the reference's image size (px, square)
REFERENCE_SIZE = 256


FILE_HASH_DIGITS = 16


ROW_HASH_DIGITS = 8


THUMB_SIZE = 4


#: largest mean absolute thumbnail difference (0..255 levels) that still counts as the same picture
SAME_PICTURE_MAD = 1.0


#: the JPEG quality of the images this writes (Pillow's default, the reference's tables)
JPEG_QUALITY = 75


#: the findings of an import, written into the output folder
IMPORT_REPORT = "kaggle_import.json"


#: per written image: the file is the reference's / the same picture with other bytes / another picture
IDENTICAL, SAME_PICTURE, DIFFERENT = "identical file", "same picture", "different picture"


_IMAGE_NAME = re.compile(r"^(?P<id>[^_/\\]+)_(?P<eye>left|right)\.jpg$")


_SEARCH_DEPTH = 3


_LISTED = 10


# ---------------------------------------------------------------- hashes

def file_sha256(path: str | os.PathLike, digits: int | None = FILE_HASH_DIGITS) -> str:
    """SHA-256 of a file's bytes (hex), its first ``digits`` digits (all with ``None``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:digits]


def thumbnail(img: Image.Image) -> np.ndarray:
    """The image's ``THUMB_SIZE`` x ``THUMB_SIZE`` RGB thumbnail (box filter: block means), uint8."""
    return np.asarray(img.convert("RGB").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX), dtype=np.uint8)


def encode_thumb(thumb: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(thumb, dtype=np.uint8).tobytes()).decode("ascii")


def decode_thumb(text: str) -> np.ndarray:
    raw = base64.b64decode(text)
    if len(raw) != THUMB_SIZE * THUMB_SIZE * 3:
        raise ValueError(f"thumbnail of {len(raw)} bytes, expected {THUMB_SIZE * THUMB_SIZE * 3}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(THUMB_SIZE, THUMB_SIZE, 3)


def thumb_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, in 0..255 levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def row_hash(values) -> str:
    """Short SHA-256 of a table row's values (as read, text) joined by the unit separator."""
    return hashlib.sha256("\x1f".join(str(v) for v in values).encode("utf-8")).hexdigest()[:ROW_HASH_DIGITS]


# ---------------------------------------------------------------- the committed reference

def _read_table(csv: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read CSV file {csv}: {e}. Check that it is the Kaggle full_df.csv.") from None


def _row_eye(row: dict, where: str) -> str:
    fname = row["filename"].strip()
    if fname == row["Left-Fundus"].strip():
        return "left"
    if fname == row["Right-Fundus"].strip():
        return "right"
    raise DataError(f"{where}: filename {fname!r} is neither Left-Fundus ({row['Left-Fundus']!r}) nor Right-Fundus "
                    f"({row['Right-Fundus']!r}); fix the row so that the eye is known.")


def reference_rows(root: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The key list (:data:`REFERENCE_COLUMNS`) and the meta data of the reference folder ``root``.

    Checks what the import relies on: every image is ``{ID}_{eye}.jpg`` of its row, 256 x 256 px,
    listed once, and no two files are identical.
    """
    root = Path(root)
    csv = root / ODIR_CSV
    if not csv.is_file():
        raise DataError(f"{csv} does not exist; point write_reference_keys at the reference ODIR-5K folder.")
    table = _read_table(csv)
    missing = [c for c in ("ID", "Left-Fundus", "Right-Fundus", "filename") if c not in table.columns]
    if missing:
        raise DataError(f"{csv} lacks the column(s) {missing}.")
    rows, seen = [], {}
    for i, r in enumerate(table.itertuples(index=False)):
        row = dict(zip(table.columns, r))
        where = f"{csv}:line {i + 2}"
        eye = _row_eye(row, where)
        pid = row["ID"].strip()
        if row["filename"] != f"{pid}_{eye}.jpg":
            raise DataError(f"{where}: image {row['filename']!r} is not named {pid}_{eye}.jpg.")
        path = root / ODIR_IMAGES / row["filename"]
        with Image.open(path) as img:
            img.load()
            if img.size != (REFERENCE_SIZE, REFERENCE_SIZE):
                raise DataError(f"{path} is {img.size[0]} x {img.size[1]} px, not {REFERENCE_SIZE} px.")
            thumb = encode_thumb(thumbnail(img))
        full = file_sha256(path, None)
        if full in seen:
            raise DataError(f"{path} is identical to {seen[full]}; the reference holds no exact duplicates.")
        seen[full] = path.name
        rows.append({"patient_id": pid, "eye": eye, "sha256": full[:FILE_HASH_DIGITS], "thumb": thumb,
                     "row": row_hash(row.values())})
    keys = pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))
    dup = keys.duplicated(["patient_id", "eye"])
    if dup.any():
        raise DataError(f"{csv}: the key(s) {keys[dup][['patient_id', 'eye']].values.tolist()} appear twice.")
    meta = {"source": "Kaggle andrewmvd/ocular-disease-recognition-odir5k, preprocessed_images/ at 256 px, "
                      "exact duplicates removed",
            "images": len(keys), "patients": int(keys["patient_id"].nunique()), "image_size": REFERENCE_SIZE,
            "columns": list(table.columns), "table_sha256": file_sha256(csv, None),
            "file_hash": f"first {FILE_HASH_DIGITS} hex digits of the file's SHA-256",
            "thumb": f"{THUMB_SIZE} x {THUMB_SIZE} RGB box-filter thumbnail of the decoded image, uint8, base64",
            "row_hash": f"first {ROW_HASH_DIGITS} hex digits of the SHA-256 of the row's values joined by U+001F",
            "same_picture_mad": SAME_PICTURE_MAD}
    return keys, meta


def write_reference_keys(root: str | os.PathLike, out_dir: str | os.PathLike = REFERENCE_DIR) -> Path:
    """Write the key list and meta data of the reference folder ``root`` (maintenance; see the module doc)."""
    keys, meta = reference_rows(root)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / REFERENCE_KEYS.name, keys.to_csv(index=False))
    write_json(out_dir / REFERENCE_META.name, meta)
    return out_dir / REFERENCE_KEYS.name


def read_reference(keys: str | os.PathLike = REFERENCE_KEYS,
                   meta: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict]:
    """The committed key list and meta data (``meta`` defaults to the JSON beside ``keys``)."""
    keys = Path(keys)
    meta = Path(meta) if meta else keys.with_suffix(".json")
    if not keys.is_file() or not meta.is_file():
        raise DataError(f"the reference key list {keys} or its meta data {meta} is missing; restore them from git.")
    df = pd.read_csv(keys, dtype=str, keep_default_na=False)
    if tuple(df.columns) != REFERENCE_COLUMNS:
        raise DataError(f"{keys} has the columns {list(df.columns)}, expected {list(REFERENCE_COLUMNS)}.")
    return df, read_json(meta)


# ---------------------------------------------------------------- the download

def find_download(folder: str | os.PathLike) -> Path:
    """The folder inside ``folder`` (itself or a subfolder, up to 3 levels down) that holds
    ``full_df.csv`` beside ``preprocessed_images/``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"Kaggle download folder {folder} does not exist or is not a folder; extract the "
                        "downloaded archive and pass the folder it made.")
    found = []
    for here, dirs, files in os.walk(folder):
        depth = len(Path(here).relative_to(folder).parts)
        if depth >= _SEARCH_DEPTH:
            dirs[:] = []
        dirs.sort()
        if ODIR_CSV in files and ODIR_IMAGES in dirs:
            found.append(Path(here))
    if not found:
        raise DataError(f"{folder} holds no {ODIR_CSV} beside a {ODIR_IMAGES}/ folder (looked {_SEARCH_DEPTH} "
                        "levels down). Pass the folder extracted from Kaggle's 'Ocular Disease Recognition' "
                        f"archive (andrewmvd/ocular-disease-recognition-odir5k), which holds both.")
    if len(found) > 1:
        raise DataError(f"{folder} holds {len(found)} folders with {ODIR_CSV} + {ODIR_IMAGES}/: "
                        f"{', '.join(map(str, found))}; pass the one to use.")
    return found[0]


@dataclass
class ImportReport:
    """What :func:`import_kaggle` wrote and found (``to_json`` is what ``kaggle_import.json`` holds)."""

    download: Path
    out: Path
    reference_images: int
    written: list[dict] = field(default_factory=list)       # key, image, action (copied/resized), match, thumb_mad
    missing: list[dict] = field(default_factory=list)       # key, reason
    duplicate_rows: list[dict] = field(default_factory=list)   # key, line, same_as_line
    duplicate_images: list[dict] = field(default_factory=list)  # key, same_as
    rows_differ: list[dict] = field(default_factory=list)   # key, line
    not_in_reference: int = 0                                # download rows of keys outside the reference
    dropped_columns: list[str] = field(default_factory=list)
    table_identical: bool = False
    identity: str = ""                                       # data_identity of the written folder
    reference_identity: bool = False                         # it names the reference's committed split files

    def count(self, match: str) -> int:
        return sum(w["match"] == match for w in self.written)

    @property
    def exact(self) -> bool:
        """The written folder is the reference data: every key written, identical files and table."""
        return (not self.missing and self.count(IDENTICAL) == self.reference_images and self.table_identical)

    def to_json(self) -> dict:
        return {"download": str(self.download), "out": str(self.out), "exact": self.exact,
                "reference_images": self.reference_images, "written": len(self.written),
                "counts": {m: self.count(m) for m in (IDENTICAL, SAME_PICTURE, DIFFERENT)},
                "table_identical": self.table_identical, "identity": self.identity,
                "reference_identity": self.reference_identity, "not_in_reference": self.not_in_reference,
                "dropped_columns": self.dropped_columns, "missing": self.missing,
                "duplicate_rows": self.duplicate_rows, "duplicate_images": self.duplicate_images,
                "rows_differ": self.rows_differ,
                "images": [w for w in self.written if w["match"] != IDENTICAL]}


def _key(pid: str, eye: str) -> str:
    return f"{pid}_{eye}"


def _download_rows(csv: Path, columns: list[str], report: ImportReport) -> dict[str, tuple[int, dict]]:
    """Key -> (CSV line, row) of the download's table; word-for-word repeats are dropped (and reported)."""
    table = _read_table(csv)
    lacking = [c for c in columns if c not in table.columns]
    if lacking:
        raise DataError(f"{csv} lacks the column(s) {lacking} of the reference table (it has {list(table.columns)}); "
                        "is it the Kaggle full_df.csv?")
    report.dropped_columns = [c for c in table.columns if c not in columns]
    out: dict[str, tuple[int, dict]] = {}
    for i, r in enumerate(table[columns].itertuples(index=False)):
        row = dict(zip(columns, r))
        line = i + 2
        key = _key(row["ID"].strip(), _row_eye(row, f"{csv}:line {line}"))
        if key in out:
            first, prev = out[key]
            if prev != row:
                raise DataError(f"{csv}: lines {first} and {line} both describe image {key} but differ; "
                                "remove the wrong one.")
            report.duplicate_rows.append({"key": key, "line": line, "same_as_line": first})
            continue
        out[key] = (line, row)
    return out


def _write_image(src: Path, dest: Path) -> tuple[str, Image.Image | None, str | None]:
    """Copy or resize ``src`` to ``dest``: (action, decoded written image, reason when not written)."""
    try:
        with Image.open(src) as img:
            img.load()
            size = img.size
            if size == (REFERENCE_SIZE, REFERENCE_SIZE):
                shutil.copyfile(src, dest)
                return "copied", img.copy(), None
            if size[0] != size[1]:
                return "", None, f"not square ({size[0]} x {size[1]} px)"
            if size[0] < REFERENCE_SIZE:
                return "", None, f"smaller than the reference ({size[0]} px < {REFERENCE_SIZE} px)"
            small = img.convert("RGB").resize((REFERENCE_SIZE, REFERENCE_SIZE), Image.Resampling.BICUBIC)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return "", None, f"unreadable image ({e})"
    small.save(dest, format="JPEG", quality=JPEG_QUALITY)
    with Image.open(dest) as written:
        written.load()
        return "resized", written.copy(), None


def _remove_stale_temps(out: Path) -> None:
    """Remove the temp folders of earlier imports into ``out`` whose process (on this host) no longer runs."""
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        tag = tmp.name[len(out.name) + 2:-len(".tmp")]
        if tmp.is_dir() and (tag == process_tag() or tag_is_stale(tag)):
            shutil.rmtree(tmp, ignore_errors=True)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder {out} already exists and is not empty; remove it or pass another --out.")


def import_kaggle(download: str | os.PathLike, out: str | os.PathLike,
                  reference: tuple[pd.DataFrame, dict] | None = None) -> ImportReport:
    """Build the reference subset from the extracted Kaggle download ``download`` into the folder ``out``.

    ``reference``: ``(keys, meta)`` as :func:`read_reference` returns them (default: the committed ones);
    tests pass a list restricted to a few patients. See the module doc for the steps.
    """
    keys, meta = reference if reference is not None else read_reference()
    out = Path(out).expanduser().resolve()
    _check_out(out)
    root = find_download(download).resolve()
    if out == root or out.is_relative_to(root) or root.is_relative_to(out):
        raise DataError(f"output folder {out} overlaps the download {root}; pass an --out outside it.")
    report = ImportReport(download=root, out=out, reference_images=len(keys))
    columns = list(meta["columns"])
    rows = _download_rows(root / ODIR_CSV, columns, report)
    wanted = {_key(p, e) for p, e in zip(keys["patient_id"], keys["eye"])}
    report.not_in_reference = sum(k not in wanted for k in rows)

    _remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.{process_tag()}.tmp"
    (tmp / ODIR_IMAGES).mkdir(parents=True)
    try:
        table_rows, seen = [], {}
        for ref in keys.itertuples(index=False):
            key = _key(ref.patient_id, ref.eye)
            if key not in rows:
                report.missing.append({"key": key, "reason": f"no row in {ODIR_CSV}"})
                continue
            line, row = rows[key]
            src = root / ODIR_IMAGES / row["filename"].strip()
            if not src.is_file():
                report.missing.append({"key": key, "reason": f"image file {ODIR_IMAGES}/{src.name} missing"})
                continue
            full = file_sha256(src, None)
            if full in seen:
                report.duplicate_images.append({"key": key, "same_as": seen[full]})
                report.missing.append({"key": key, "reason": f"file identical to {seen[full]} (exact duplicate)"})
                continue
            name = f"{ref.patient_id}_{ref.eye}.jpg"
            action, img, reason = _write_image(src, tmp / ODIR_IMAGES / name)
            if reason:
                report.missing.append({"key": key, "reason": reason})
                continue
            seen[full] = key
            sha = file_sha256(tmp / ODIR_IMAGES / name)
            mad = thumb_mad(thumbnail(img), decode_thumb(ref.thumb))
            match = IDENTICAL if sha == ref.sha256 else SAME_PICTURE if mad <= SAME_PICTURE_MAD else DIFFERENT
            report.written.append({"key": key, "image": name, "action": action, "match": match,
                                   "thumb_mad": round(mad, 3)})
            if row_hash(row.values()) != ref.row:
                report.rows_differ.append({"key": key, "line": line})
            table_rows.append(row)
        if not table_rows:
            raise DataError(f"none of the {len(keys)} reference images was found in {root}; is it the Kaggle "
                            "ODIR-5K download?")
        atomic_write_text(tmp / ODIR_CSV, pd.DataFrame(table_rows, columns=columns).to_csv(index=False))
        report.table_identical = file_sha256(tmp / ODIR_CSV, None) == meta["table_sha256"]
        written = load_dataset(tmp)
        report.identity = data_identity(written.manifest, written.name)
        report.reference_identity = reference_name(report.identity) is not None
        write_json(tmp / IMPORT_REPORT, report.to_json())
        _check_out(out)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


# ---------------------------------------------------------------- the printout

def _listed(items: list[str]) -> str:
    more = len(items) - _LISTED
    return ", ".join(items[:_LISTED]) + (f", ... ({more} more in {IMPORT_REPORT})" if more > 0 else "")


def report_lines(report: ImportReport) -> list[str]:
    """The import's findings as the lines ``data --from-kaggle`` prints."""
    n = report.reference_images
    actions = {a: sum(w["action"] == a for w in report.written) for a in ("copied", "resized")}
    lines = [f"download       {report.download}",
             f"written        {len(report.written)} of {n} reference images to {report.out}  "
             f"({actions['copied']} copied as they were, {actions['resized']} resized to {REFERENCE_SIZE} px)"]
    if report.missing:
        lines.append(f"missing        {len(report.missing)} reference image(s): "
                     + _listed([f"{m['key']} ({m['reason']})" for m in report.missing]))
    else:
        lines.append("missing        none")
    if report.duplicate_rows or report.duplicate_images:
        lines.append(f"duplicates     removed {len(report.duplicate_rows)} repeated table row(s), "
                     f"{len(report.duplicate_images)} image(s) identical to another")
    lines.append(f"not used       {report.not_in_reference} table row(s) of images outside the reference subset")
    if report.dropped_columns:
        lines.append(f"not used       column(s) {report.dropped_columns} (not in the reference table)")
    lines.append(f"image match    {report.count(IDENTICAL)} identical file, {report.count(SAME_PICTURE)} same "
                 f"picture with other bytes (thumbnail difference <= {SAME_PICTURE_MAD}), "
                 f"{report.count(DIFFERENT)} different picture")
    for m in (DIFFERENT, SAME_PICTURE):
        keys = [f"{w['key']} ({w['thumb_mad']:.2f})" for w in report.written if w["match"] == m]
        if keys:
            lines.append(f"  {m}: " + _listed(keys))
    differ = len(report.rows_differ)
    lines.append(f"table          {len(report.written) - differ} row(s) equal to the reference's, {differ} differ"
                 + (": " + _listed([f"{d['key']} (line {d['line']})" for d in report.rows_differ]) if differ else "")
                 + f"; full_df.csv {'identical to' if report.table_identical else 'differs from'} the reference's")
    lines.append(f"data identity  {report.identity}  "
                 + ("(the reference subset's: its committed split files apply)" if report.reference_identity else
                    "(not the reference subset's: runs on it make a split file of their own)"))
    if report.exact:
        lines.append("verdict        exact: every image file and the table are the reference's; "
                     "`make compare` can match the committed results")
    else:
        other = len(report.written) - report.count(IDENTICAL)
        lines.append(f"verdict        not exact: {len(report.missing)} image(s) missing, {other} with other bytes, "
                     f"{differ} table row(s) differ; runs on it work, but `make compare` cannot match the committed "
                     "results exactly")
    if report.out == DEFAULT_OUT.resolve():
        lines.append(f"use            the project finds {report.out} by itself (unless $REPRO_DATA names another "
                     "folder)")
    else:
        lines.append(f"use            --data-root {report.out}  (make: DATA_ROOT={report.out}; or $REPRO_DATA)")
    return lines
