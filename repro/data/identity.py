"""The identity of a data set is its content (docs/design.md §2).

``data_identity(manifest, name)`` is ``<name>-n<images>-<12 hex>``; the hex digits are the SHA-256 of

* every image file's bytes (its own SHA-256, :func:`file_digests`), by image name, and
* the label rows the run reads, after parsing (:func:`label_rows_digest`): image, patient, eye and the
  raw keywords (ODIR layout), or the given T1/T2 classes and caption (manifest layout).

So a copy of the reference images is the reference data, while the same file names with other bytes
(a gray image in place of a fundus, another picture of the same byte size) or a relabelled table are
another data set: other split files, image and feature caches, checkpoint folders and result identity.

Hashing every byte costs one read of the image folder; the digests are kept in a small JSON file per
data folder under ``<cache>/hashes/`` keyed by ``(path, size, mtime_ns)``, so a later run rehashes only
files whose size or modification time changed (a file rewritten with the same size *and* the same
mtime, e.g. with ``touch -r``, is the one change this cache cannot see; delete the cache file to force
a full rehash). An unwritable cache folder only costs the rehash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd

from repro.errors import DataError
from repro.paths import OutputError, cache_dir

#: bytes read per ``update`` while hashing a file
CHUNK = 1 << 20


#: bumped when what the identity covers changes (old per-file caches are then ignored)
IDENTITY_VERSION = "v2"


#: per process: resolved path -> (size, mtime_ns, sha256), so one process hashes a file at most once
_MEMO: dict[str, tuple[int, int, str]] = {}


class IdentityMismatchError(DataError):
    """A result or checkpoint made from another data set (other image bytes or labels) than this run's."""


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def hash_cache_file(paths: list[str], cache_root: str | os.PathLike | None) -> Path:
    """``<cache_root>/hashes/<folder>-<8 hex>.json``: the per-file digest cache of the folder holding ``paths``."""
    folder = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else "."
    tag = hashlib.sha256(folder.encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(folder).name) or "data"
    return Path(cache_root if cache_root is not None else cache_dir()) / "hashes" / f"{name}-{tag}.json"


def _read_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != IDENTITY_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def file_digests(paths, cache_root: str | os.PathLike | None = None) -> list[str]:
    """SHA-256 of each file in ``paths`` (same order), reusing digests whose ``(size, mtime_ns)`` still hold.

    A file that cannot be stat'ed or read gets ``"missing"`` (the image cache names it as a bad image).
    """
    paths = [os.path.abspath(str(p)) for p in paths]
    cache_path = hash_cache_file(paths, cache_root)
    stored = None
    out, changed = [], False
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append("missing")
            continue
        memo = _MEMO.get(p)
        if memo and memo[:2] == (st.st_size, st.st_mtime_ns):
            out.append(memo[2])
            continue
        if stored is None:
            stored = _read_cache(cache_path)
        rec = stored.get(p)
        if isinstance(rec, list) and len(rec) == 3 and tuple(rec[:2]) == (st.st_size, st.st_mtime_ns):
            digest = str(rec[2])
        else:
            try:
                digest = sha256_file(p)
            except OSError:
                out.append("missing")
                continue
            stored[p] = [st.st_size, st.st_mtime_ns, digest]
            changed = True
        _MEMO[p] = (st.st_size, st.st_mtime_ns, digest)
        out.append(digest)
    if changed:
        _save_cache(cache_path, stored)
    return out


def _save_cache(path: Path, files: dict[str, list]) -> None:
    from repro.io import atomic_write_text

    try:
        atomic_write_text(path, json.dumps({"version": IDENTITY_VERSION, "files": files}))
    except (OSError, OutputError):
        pass  # a read-only or full cache folder (DiskFullError): the next run hashes again, nothing is wrong


def label_rows_digest(manifest: pd.DataFrame) -> str:
    """SHA-256 (hex) of the parsed label rows, sorted by image: image, patient id, eye and the raw keywords
    (ODIR layout), or the T1 class, T2 class and caption of a manifest row (which has no keywords)."""
    cols = {c: manifest[c].astype(str).tolist() if c in manifest.columns else [""] * len(manifest)
            for c in ("image", "patient_id", "eye", "keywords", "coarse", "fine", "caption")}
    lines = []
    for i in range(len(manifest)):
        label = cols["keywords"][i] if cols["keywords"][i] else "\x1f".join(
            (cols["coarse"][i], cols["fine"][i], cols["caption"][i]))
        lines.append("\t".join((cols["image"][i], cols["patient_id"][i], cols["eye"][i], label)))
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def content_hash(manifest: pd.DataFrame, cache_root: str | os.PathLike | None = None) -> str:
    """12 hex digits of the data set's content: image bytes by image name, and the label rows."""
    digests = file_digests(manifest["path"].astype(str).tolist(), cache_root)
    images = sorted(f"{i}\t{d}" for i, d in zip(manifest["image"].astype(str), digests))
    h = hashlib.sha256(f"{IDENTITY_VERSION}\n".encode())
    h.update("\n".join(images).encode())
    h.update(f"\nlabels {label_rows_digest(manifest)}".encode())
    return h.hexdigest()[:12]


def data_identity(manifest: pd.DataFrame, name: str, cache_root: str | os.PathLike | None = None) -> str:
    """``<name>-n<images>-<content hash>``, e.g. ``odir5k-n5503-<12 hex>`` (``name``: the data set's label)."""
    base = re.sub(r"-n\d+$", "", re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))) or "data"
    return f"{base}-n{len(manifest)}-{content_hash(manifest, cache_root)}"


def recorded_identity(result: dict) -> str | None:
    """The data identity a result JSON records (``data.data_identity`` or a top-level ``data_identity``)."""
    if not isinstance(result, dict):
        return None
    data = result.get("data")
    ident = data.get("data_identity") if isinstance(data, dict) else None
    return ident or result.get("data_identity") or None


def mismatch_message(what: str, recorded: str, current: str, rerun: str) -> str:
    """One message: ``what`` was made from data ``recorded``, this run's data is ``current``, and how to rerun."""
    return (f"{what} was computed from data set {recorded}, but the data now is {current} (other image bytes "
            f"or labels); it is not reported as this data's result. Rerun with --force to replace it ({rerun}), "
            "or point --results-root at another folder to keep both.")
