"""A synthetic ODIR-5K folder in the Kaggle layout (``full_df.csv`` + ``preprocessed_images/``) for tests.

Tiny real JPEGs written with PIL; one CSV row per image, both eyes' keyword columns on each
row, as in the Kaggle ``full_df.csv``. No real data needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

#: a keyword text per eye that cycles through the five paper5 classes, so every split has each class
BASE_KEYWORDS = ("normal fundus", "moderate non proliferative retinopathy", "glaucoma",
                 "dry age-related macular degeneration", "drusen")

COLUMNS = ("ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords",
           "Right-Diagnostic Keywords", "N", "D", "G", "C", "A", "H", "M", "O", "filepath", "labels", "target",
           "filename")


def write_jpeg(path: Path, seed: int, size: int = 24, mode: str = "RGB") -> Path:
    """A small noisy JPEG (``mode`` "RGB" or "L"; "RGBA" is written as PNG bytes under the .jpg name)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "L":
        img.convert("L").save(path, format="JPEG")
    elif mode == "RGBA":
        img.convert("RGBA").save(path, format="PNG")
    else:
        img.save(path, format="JPEG")
    return path


def make_kaggle_odir(root: Path, n_patients: int = 30, extra: dict[str, tuple[str, str]] | None = None) -> Path:
    """Write ``root/full_df.csv`` and ``root/preprocessed_images/`` for ``n_patients`` patients (ids 0..n-1).

    ``extra`` replaces the (left, right) keyword texts of some patient ids. The N..O flags are
    written as zeros: nothing here reads them.
    """
    extra = extra or {}
    img = root / "preprocessed_images"
    img.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_patients):
        pid = str(i)
        left, right = extra.get(pid, (BASE_KEYWORDS[i % 5], BASE_KEYWORDS[(i + 1) % 5]))
        for eye in ("left", "right"):
            name = f"{pid}_{eye}.jpg"
            write_jpeg(img / name, seed=2 * i + (eye == "right"))
            rows.append({"ID": pid, "Patient Age": "60", "Patient Sex": "Female", "Left-Fundus": f"{pid}_left.jpg",
                         "Right-Fundus": f"{pid}_right.jpg", "Left-Diagnostic Keywords": left,
                         "Right-Diagnostic Keywords": right, **{c: "0" for c in "NDGCAHMO"},
                         "filepath": f"../input/{name}", "labels": "['O']", "target": "[0, 0, 0, 0, 0, 0, 0, 1]",
                         "filename": name})
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(root / "full_df.csv", index=False)
    return root


def csv_line(root: Path, image: str) -> int:
    """The CSV line number (header = line 1) of ``image``'s row."""
    df = pd.read_csv(root / "full_df.csv", dtype=str, keep_default_na=False)
    return int((df["filename"] == image).to_numpy().nonzero()[0][0]) + 2
