"""The report's HTML as a student reads it: built from a small synthetic results folder (as in
test_report.py), checked for cut tables, absolute paths and figures, and rendered in headless Chromium."""

from __future__ import annotations

import re

import pytest

from repro.io import write_json
from repro.paths import PROJECT_ROOT
from repro.report import export_report, load_results
from repro.report.check import OK_LINE, find_chromium, html_problems, main, render_problems
from repro.report.claim_set import claims_for
from repro.report.claims_view import claims_display
from test_report import make_results

PROFILE = "synthetic"
NO_CHROMIUM = "Chromium is not installed (Debian: `apt-get install chromium`; or set $CHROMIUM)"


def _gradcam_png(path) -> None:
    """A stand-in for notebook 05's T1 Grad-CAM figure (a real PNG, small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(np.random.default_rng(0).random((16, 16)), cmap="jet")
    fig.savefig(path, dpi=60)
    plt.close(fig)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report of a synthetic results root ``R``: results in ``R/synthetic``, figures left to their
    default (``R/figures``), where notebook 05's Grad-CAM figure of T1 already lies."""
    root = tmp_path_factory.mktemp("results_root")
    make_results(root / PROFILE)
    write_json(root / PROFILE / "05_gradcam.json", {"notebook": "05_gradcam", "cam_seed": 0, "ps_shown": [15, 70],
                                                   "target_layer": "block4", "map_size": [3, 3], "image_size": 96})
    _gradcam_png(root / "figures" / f"gradcam_{PROFILE}.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("REPRO_FIGURES", raising=False)
        mp.delenv("REPRO_RESULTS", raising=False)
        mp.setenv("MPLBACKEND", "Agg")  # a caller's non-inline backend must not empty the report of figures
        written = export_report(PROFILE, results_root=root)
    html = written["html"]
    return {"root": root, "written": written, "html": html, "text": html.read_text(encoding="utf-8")}


def _plain(text: str) -> str:
    """The page without inline image data."""
    return re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]*", "data:", text)


def test_figures_go_beside_the_results(built):
    root = built["root"]
    assert built["html"] == root / PROFILE / "report" / "report.html"
    assert {p.parent for p in built["written"]["figures"]} == {root / "figures"}
    assert (root / "figures" / f"{PROFILE}_metric_vs_p.png").stat().st_size > 1000


def test_no_cut_table_and_no_absolute_path(built):
    plain = _plain(built["text"])
    assert not re.search(r"\d+ rows [x×] \d+ columns", plain)
    assert "<td>...</td>" not in plain and "<td>…</td>" not in plain
    for prefix in (str(PROJECT_ROOT), "/root", "/work", str(built["root"])):  # as an absolute path
        assert not re.search(r"(?<![\w.~-])" + re.escape(prefix), plain), prefix
    # both claims tables are there in full: every verdict cell of the pooled and the per-p table
    cs = claims_for(load_results(PROFILE, results_root=built["root"]))
    assert len(cs.table) > 60
    words = ["inconclusive", "supported", "not supported"]
    cells = sum(int(claims_display(t, pooled_only=False).isin(words).sum().sum()) for t in (cs.pooled, cs.per_p))
    assert cells >= len(cs.table)   # at least the raw verdict of every row
    assert len(re.findall(r"<td>(inconclusive|supported|not supported)</td>", plain)) == cells
    assert html_problems(built["html"], min_images=6) == []


def test_every_image_is_present_and_decodes(built):
    from repro.report.ablations import ablation_views

    srcs = re.findall(r'<img[^>]*src="([^"]*)"', built["text"])
    views = ablation_views(built["root"] / PROFILE).values()
    shown = sum(1 for v in views if v.figure is not None and not v.table.empty)
    # the report's five figures, the Grad-CAM figure, and each ablation figure that has results to show
    assert len(srcs) == 5 + 1 + shown
    assert all(re.fullmatch(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=\s]{1000,}", s) for s in srcs)


def test_gradcam_is_in_the_report_with_a_caption(built):
    text = built["text"]
    assert "Grad-CAM of the T1 head" in text and "at p = 15, 70" in text and "block4 (3×3 at 96 px)" in text
    assert "gradcam_synthetic_T2.png, gradcam_synthetic_T3.png" in text  # the absent ones are named
    assert "run notebooks/05_gradcam.ipynb" in text


def test_missing_section_is_short(built):
    plain = re.sub(r"<[^>]+>", " ", _plain(built["text"]))
    start = plain.index("Missing:")
    section = plain[start:plain.index("Headline:", start)]
    assert "8 of 104 expected result files are missing" in section  # the synthetic folder has no baselines
    assert len(section) < 800


def test_check_finds_each_kind_of_problem(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(f"<html><body><p>wrote {PROJECT_ROOT}/results/x.json</p><p>/home/reader/.cache</p>"
                   "<table><tr><td>...</td></tr></table><p>90 rows × 10 columns</p>"
                   '<img src="data:image/png;base64,"><img src="missing.png"></body></html>', encoding="utf-8")
    problems = html_problems(bad)
    assert "truncated table: '90 rows × 10 columns'" in problems
    assert "truncated table: 1 cell(s) read '...'" in problems
    assert any(p.startswith(f"absolute path: '{PROJECT_ROOT}/results/x.json") for p in problems)
    assert "absolute path: '/home/reader/.cache'" in problems
    assert "image 1: its data is not a PNG (0 bytes)" in problems
    assert "image 2: missing.png is missing or empty" in problems
    assert main([str(bad), "--no-browser"]) == 1


def test_check_command_passes_the_built_report(built, capsys):
    assert main([str(built["html"]), "--no-browser"]) == 0
    assert capsys.readouterr().out.strip() == f"{built['html']}: " + OK_LINE.format(browser="")


def test_the_report_is_self_contained(built):
    text = built["text"]
    assert "<script" not in text and "<link" not in text  # no require.js, MathJax, mermaid, widget loader
    assert not re.search(r"(src|href)=\"(?!#|data:)", _plain(text))
    assert "cdnjs" not in text and "mathjax" not in text.lower()


def test_the_report_reads_as_a_report(built):
    text = built["text"]
    title = re.search(r"<title>(.*?)</title>", text).group(1)
    assert title == ("Multi-task knowledge distillation for eye disease prediction: this reproduction "
                     f"beside the paper (profile {PROFILE})")
    assert "06 ·" not in text and 'class="jp-RenderedText' not in text  # no notebook number, no printed log
    assert "Built from 96 result files in" in text  # what the first print said, now part of the page
    alts = re.findall(r'<img alt="([^"]*)"', text)
    assert len(alts) == len(re.findall(r"<img", text)) and "No description" not in text
    assert alts[0].startswith("Temperature study: test score of single-task KD per τ and p")
    assert any(a.startswith("Grad-CAM of the T1 head (paper Fig. 5)") for a in alts)  # markdown stripped
    # tables: no pandas row numbers, no NaN/None, whole numbers without ".0", each in a scroll box
    assert "NaN" not in _plain(text) and "<td>None</td>" not in text
    assert text.count('<div class="table-scroll"') == len(re.findall(r'<table[^>]*class="[^"]*report-table', text)) >= 10
    assert ".jp-RenderedMarkdown table { display: block; overflow-x: auto;" in text  # the headline's table


@pytest.mark.skipif(find_chromium() is None, reason=NO_CHROMIUM)
def test_chromium_renders_the_report(built, tmp_path):
    png = tmp_path / "report.png"
    assert render_problems(built["html"], png) == []
    from PIL import Image

    with Image.open(png) as im:
        assert im.width == 1400 and im.height > 5000


def test_check_without_chromium_or_report_is_one_clear_error(built, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    assert find_chromium() is None
    assert main([str(built["html"])]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no Chromium to render the report with: install it (Debian/Ubuntu: `apt-get install chromium`) "
        "or set $CHROMIUM to a Chromium or Chrome executable")
    assert main([str(tmp_path / "report.html")]) == 2
    assert "report.html: no such report; build it with `make report`" in capsys.readouterr().err
