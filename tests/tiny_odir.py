"""A tiny ODIR-layout copy of the real data: the rows and images of a few patients (tests that need real images
but not 5,503 of them; imported by conftest.py's ``tiny_odir`` fixture and by tests that build their own)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

#: patients of the tiny folder: both eyes present, a mix of classes (normal, dr, amd, glaucoma, other)
TINY_PATIENTS = ("0", "4", "5", "8", "9", "13", "48", "84", "167", "191")


def make_tiny_odir(src: Path, dest: Path, patients=TINY_PATIENTS) -> Path:
    """Write an ODIR-layout folder with the rows and images of ``patients`` copied from ``src``."""
    df = pd.read_csv(src / "full_df.csv", dtype=str, keep_default_na=False)
    df = df[df["ID"].isin(list(patients))]
    (dest / "preprocessed_images").mkdir(parents=True, exist_ok=True)
    df.to_csv(dest / "full_df.csv", index=False)
    for name in df["filename"]:
        shutil.copyfile(src / "preprocessed_images" / name, dest / "preprocessed_images" / name)
    return dest
