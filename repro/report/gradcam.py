"""The Grad-CAM figures of notebook 05 (the paper's Fig. 5) as the report shows them: file, caption, image bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from repro.io import read_json
from repro.names import CODES

# what each head's map explains (notebook 05 records the same in 05_gradcam.json)
EXPLAINED = {"T1": "the logit of the predicted T1 class", "T2": "the logit of the predicted T2 class",
             "T3": "the log-likelihood of the greedy T3 caption"}


@dataclass(frozen=True)
class CamFigure:
    code: str      # the explained head: T1, T2, T3
    path: Path     # the PNG notebook 05 wrote
    caption: str


def gradcam_file(figures_dir: Path, profile: str, code: str) -> Path:
    """Notebook 05's file name: ``gradcam_<profile>.png`` for T1, ``gradcam_<profile>_<code>.png`` else."""
    return Path(figures_dir) / (f"gradcam_{profile}.png" if code == "T1" else f"gradcam_{profile}_{code}.png")


def _setting(info: dict) -> str:
    """"M1 {T1,T2,T3} and M3 at p = 15, 70 …; training seed 0; map of encoder stage block4 (16×16 at 256 px)"."""
    ps = ", ".join(str(p) for p in info.get("ps_shown") or [])
    size = info.get("map_size") or []
    parts = [f"M1 {{T1,T2,T3}} and M3 at p = {ps} (columns, after the plain image)" if ps else "M1 {T1,T2,T3} vs M3"]
    if info.get("cam_seed") is not None:
        parts.append(f"training seed {info['cam_seed']}")
    if info.get("target_layer"):
        parts.append(f"map of encoder stage {info['target_layer']}"
                     + (f" ({size[0]}×{size[1]} at {info.get('image_size')} px)" if len(size) == 2 else ""))
    return "; ".join(parts)


def gradcam_figures(profile: str, figures_dir: Path,
                    results_folder: Path | None = None) -> tuple[list[CamFigure], list[str]]:
    """The Grad-CAM figures present for ``profile`` (T1 first) and notes on those absent.

    Captions use ``<results_folder>/05_gradcam.json`` (p values, seed, layer) when it exists.
    """
    info_path = Path(results_folder) / "05_gradcam.json" if results_folder else None
    info = read_json(info_path) if info_path is not None and info_path.exists() else {}
    info = info if isinstance(info, dict) else {}
    figures, absent = [], []
    for code in CODES:
        path = gradcam_file(figures_dir, profile, code)
        if not path.exists() or path.stat().st_size == 0:
            absent.append(path.name)
            continue
        caption = (f"**Grad-CAM of the {code} head** (paper Fig. 5): {_setting(info)}. One test image "
                   f"per T1 class (rows); the overlay explains {EXPLAINED[code]} (red = most important). "
                   "Under each map the model's predictions of the three tasks: green ✓ correct, yellow ~ "
                   "partially correct (0 < BLEU < 0.5), red ✗ incorrect. ODIR-5K has no lesion annotations, "
                   "so the first column shows the plain image and its true labels.")
        figures.append(CamFigure(code, path, caption))
    notes = [f"Grad-CAM figure(s) not found in the figures folder: {', '.join(absent)}; run "
             f"notebooks/05_gradcam.ipynb (profile {profile})"] if absent else []
    return figures, notes


def embeddable(path: Path, max_width: int = 1800, quality: int = 85) -> tuple[bytes, str]:
    """The figure as compact bytes for an HTML page: JPEG (quality ``quality``, at most ``max_width`` px wide),
    ``(bytes, "jpeg")``; a 1 MB Grad-CAM PNG becomes a few hundred kB."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize((max_width, round(im.height * max_width / im.width)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue(), "jpeg"
