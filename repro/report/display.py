"""How notebook 06 shows a table or a figure in the report: tidy tables in a box that scrolls sideways,
figures with their caption as alt text and below, and no figure at all where there is nothing to plot."""

from __future__ import annotations

import io

import pandas as pd

from repro.report.formatting import table_html

# the share of clearly coloured pixels (not white, grey or black) below which a figure of unknown origin
# holds no data: only axes, grey "not run" text and a legend (an empty ablation forest plot: 0.05 %; the
# sparsest real figure of the quick report, the claims plot: 0.5 %)
MIN_INK = 0.0015
# the PNG text chunk by which :func:`show_figure` says it found data in the figure (the check trusts it:
# a figure whose data are all grey, e.g. claims that are all inconclusive, has little colour)
DATA_MARK = ("repro-figure", "holds data")


def figure_ink(image) -> float:
    """The share of clearly coloured pixels of a PIL image (channels differing by more than 60)."""
    import numpy as np

    im = image.convert("RGB")
    if im.width > 600 or im.height > 600:
        im = im.resize((min(im.width, 600), min(im.height, 600)))
    rgb = np.asarray(im, dtype=np.int16)
    return float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())


def figure_has_data(fig) -> bool:
    """Whether any panel of a matplotlib figure draws data: a line with a finite point (not a reference
    line such as ``axvline``), a non-empty collection (markers, error bars, a mesh), a bar or an image.
    Text ("not run"), axes and legends are not data."""
    import numpy as np

    for ax in fig.axes:
        reference = (ax.get_xaxis_transform(which="grid"), ax.get_yaxis_transform(which="grid"))
        for line in ax.lines:
            if any(line.get_transform() is r for r in reference):  # axvline / axhline: the same object
                continue
            x, y = (np.asarray(v, dtype=float) for v in line.get_data())
            if np.isfinite(x).any() and np.isfinite(y).any():
                return True
        if ax.images or ax.patches or any(len(c.get_paths()) or len(c.get_offsets()) for c in ax.collections):
            return True
    return False


def figure_png(fig, dpi: int = 100, metadata: dict | None = None) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box, ``metadata`` as text chunks); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    return buf.getvalue()


def show_figure(fig, caption: str, missing: str = "nothing to plot yet") -> None:
    """Display ``fig`` with ``caption`` as its alt text and, in italics, below it; a figure that is None
    or holds no data (:func:`figure_has_data`) is not drawn: "**Missing:** ``caption``: ``missing``" instead."""
    from IPython.display import Image, Markdown, display

    if fig is None or not figure_has_data(fig):
        if fig is not None:
            figure_png(fig)  # closed, so that the notebook's inline backend does not draw it either
        display(Markdown(f"**Missing:** {caption.rstrip('.')}: {missing}."))
        return
    png = figure_png(fig, metadata={"Description": caption, DATA_MARK[0]: DATA_MARK[1]})
    display(Image(data=png, format="png", alt=caption))
    display(Markdown(f"*{caption}*"))


def show_image(data: bytes, kind: str, caption: str) -> None:
    """Display image bytes (``kind``: ``png`` or ``jpeg``) with ``caption`` as alt text and, as Markdown, below."""
    import re

    from IPython.display import Image, Markdown, display

    display(Image(data=data, format=kind, alt=re.sub(r"[*_`]", "", caption)))
    display(Markdown(caption))


def show_table(table: pd.DataFrame, digits: int = 3):
    """What a report cell displays for ``table``: :func:`repro.report.formatting.table_html` (no row
    numbers, whole numbers as integers, blank where a value is missing, a box that scrolls sideways)."""
    from IPython.display import HTML

    return HTML(table_html(table, digits))
