"""The report's tables and figures as a reader sees them (issue 17 item 7, issue 16 item 7): tidy tables,
figures with alt text and none without data, and the report check catching each untidy or remote thing."""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repro.paths import PROJECT_ROOT, REFERENCE_FIGURES, REFERENCE_RESULTS_ROOT, figures_dir  # noqa: E402
from repro.report.ablation_effects import authors_choices_report  # noqa: E402
from repro.report.check import (NO_ALT, check_report, find_chromium, html_problems,  # noqa: E402
                                layout_problems)
from repro.report.display import DATA_MARK, figure_has_data, figure_png  # noqa: E402
from repro.report.formatting import table_html, tidy_table  # noqa: E402

NO_CHROMIUM = "Chromium is not installed (Debian: `apt-get install chromium`; or set $CHROMIUM)"


def _ablation_like() -> pd.DataFrame:
    """The shape of an ablation table: pandas' row numbers, counts read back as floats, missing values."""
    return pd.DataFrame({"model": ["teacher", "student", None], "p": [15, 15, 70],
                         "T1 bacc": [0.4781, np.nan, 0.5],
                         "params trainable": [1863516.0, 4822364.0, np.nan],
                         "note": [None, "not run", np.nan]})


def test_tidy_table_drops_row_numbers_prints_integers_and_blanks():
    t = tidy_table(_ablation_like())
    assert list(t.index) == [0, 1, 2] and list(t["params trainable"]) == ["1863516", "4822364", ""]
    assert list(t["T1 bacc"]) == ["0.478", "", "0.500"] and list(t["model"]) == ["teacher", "student", ""]
    assert list(t["note"]) == ["", "not run", ""]
    html = table_html(_ablation_like())
    assert html.startswith('<div class="table-scroll" style="overflow-x: auto; max-width: 100%;">')
    assert "<th>0</th>" not in html and "NaN" not in html and "None" not in html and "1863516.0" not in html
    assert "<td>1863516</td>" in html and "<td></td>" in html


def test_tidy_table_keeps_a_named_index_and_prints_labels_as_read():
    t = pd.DataFrame([[1.0, 2.5]], columns=pd.Index([1.0, 4.0], name="T"),
                     index=pd.MultiIndex.from_tuples([(0.5, 15)], names=["α", "p"]))
    out = tidy_table(t)
    assert list(out.columns) == ["1", "4"] and list(out.index) == [("0.5", 15)]
    assert list(out.iloc[0]) == ["1", "2.500"]  # per column: whole numbers as integers, else 3 decimals
    html = table_html(t)
    assert "<th>α</th>" in html and "<th>0.5</th>" in html and "1.0</th>" not in html


def test_an_empty_forest_plot_has_no_data_and_a_real_one_has(tmp_path):
    empty = authors_choices_report(tmp_path / "quick")  # no result file: every choice "not run"
    assert empty["figure"] is None and not empty["table"].empty
    fig, ax = plt.subplots()
    ax.axvline(0)
    ax.text(0.5, 0.5, "not run", transform=ax.transAxes)
    assert not figure_has_data(fig)
    ax.plot([0.1], [1.0], "o", color="0.4")  # one grey marker is data
    assert figure_has_data(fig)
    plt.close("all")


def _page(body: str, title: str = "A reproduction report", head: str = "") -> str:
    return f"<html><head><title>{title}</title>{head}</head><body><h1>{title}</h1>{body}</body></html>"


def _png_uri(fig, **kw) -> str:
    return "data:image/png;base64," + base64.b64encode(figure_png(fig, **kw)).decode()


def _empty_figure():
    fig, axes = plt.subplots(1, 3, figsize=(9, 3))
    for ax in axes:
        ax.axvline(0, color="k")
        ax.text(0.5, 0.5, "not run", transform=ax.transAxes, color="0.5")
    return fig


def _grey_data_figure():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.errorbar([0.1, -0.05], [0, 1], xerr=0.1, fmt="o", color="0.4")
    return fig


def test_check_catches_each_remote_reference(tmp_path):
    head = ('<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>'
            '<link rel="stylesheet" href="http://cdn.example.org/a.css">'
            '<style>@import url("https://fonts.googleapis.com/css?family=Roboto");'
            '@font-face { font-family: X; src: url(https://fonts.gstatic.com/x.woff2); }'
            '.ok { background: url(data:image/png;base64,AAAA); }</style>'
            '<script type="module">const m = await import("https://cdn.jsdelivr.net/npm/mermaid.mjs");</script>')
    body = '<p><a href="#top">up</a> <a href="other.html">next</a> <span style="background:url(//x.org/b.png)">.</span></p>'
    bad = tmp_path / "remote.html"
    bad.write_text(_page(body, head=head), encoding="utf-8")
    problems = html_problems(bad, min_images=0)
    assert problems == [
        'leaves the file: <script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js">',
        'leaves the file: <link href="http://cdn.example.org/a.css">',
        'leaves the file: <a href="other.html">',
        "leaves the file: style @import https://fonts.googleapis.com/css?family=Roboto",
        "leaves the file: style font https://fonts.gstatic.com/x.woff2",
        "leaves the file: style url() //x.org/b.png",
        "leaves the file: a script loads https://cdn.jsdelivr.net/npm/mermaid.mjs",
    ]


def test_check_catches_untidy_tables_title_log_alt_and_math(tmp_path):
    table = _ablation_like().to_html()  # what pandas shows: row numbers, 1863516.0, NaN, None
    body = (table + "<p>effect $\\pm$ 0.01</p>"
            '<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain"><pre>wrote results/quick/06_report.json</pre></div>'
            f'<img src="{_png_uri(_grey_data_figure())}"><img alt="{NO_ALT}" src="{_png_uri(_grey_data_figure(), metadata=dict([DATA_MARK]))}">')
    bad = tmp_path / "untidy.html"
    bad.write_text(_page(body, title="06 · Report: this reproduction beside the paper"), encoding="utf-8")
    problems = html_problems(bad, min_images=2)
    assert problems == [
        "TeX math that only a script would typeset: '$\\\\pm$'",
        "table 1 (model, p, T1 bacc, …): shows pandas' row index (0, 1, 2, …) as its first column",
        "table 1 (model, p, T1 bacc, …): 2 whole number(s) printed as decimals, e.g. '1863516.0'",
        "table 1 (model, p, T1 bacc, …): 5 cell(s) read NaN/None instead of being blank, e.g. 'NaN'",
        "image 1: a figure without data (0.00% of its pixels coloured): leave it out and say what is missing",
        "image 1: no alt text (its caption belongs there)",
        f"image 2: no alt text (its caption belongs there), only {NO_ALT!r}",
        "a notebook's number as the title: '06 · Report: this reproduction beside the paper'",
        "printed output in the page (a log line): 'wrote results/quick/06_report.json'",
    ]
    good = tmp_path / "tidy.html"
    good.write_text(_page(table_html(_ablation_like()) + "<p>effect ± 0.01</p>"
                          + f'<img alt="Effects" src="{_png_uri(_grey_data_figure(), metadata=dict([DATA_MARK]))}">'),
                    encoding="utf-8")
    assert html_problems(good, min_images=1) == []


def test_check_catches_an_empty_figure(tmp_path):
    page = tmp_path / "empty.html"
    page.write_text(_page(f'<img alt="Forest plot" src="{_png_uri(_empty_figure())}">'), encoding="utf-8")
    [problem] = html_problems(page)
    assert problem.startswith("image 1: a figure without data (0.0") and "leave it out" in problem


@pytest.mark.skipif(find_chromium() is None, reason=NO_CHROMIUM)
def test_chromium_finds_a_wide_table_that_neither_fits_nor_scrolls(tmp_path):
    wide = pd.DataFrame([[f"value {i}" * 3 for i in range(30)]], columns=[f"a long column name {i}" for i in range(30)])
    cut = tmp_path / "cut.html"
    cut.write_text(_page('<div style="overflow: hidden; width: 900px">' + wide.to_html(index=False) + "</div>"
                         + '<div style="width: 900px">' + wide.to_html(index=False) + "</div>"), encoding="utf-8")
    problems = layout_problems(cut)
    assert len(problems) == 2
    assert problems[0].startswith("table 1 (a long column name 0, a long column name 1, a long column name 2, …): ")
    assert problems[0].endswith("px wide, cut off by a box that hides its overflow")
    assert problems[1].startswith("table 2 (") and "px window, wider than the page and not scrollable" in problems[1]
    ok = tmp_path / "scrolls.html"
    ok.write_text(_page(table_html(wide)), encoding="utf-8")
    assert layout_problems(ok) == []


def test_check_report_is_the_public_entry(tmp_path):
    from repro.errors import ReproError

    with pytest.raises(ReproError, match="no such report; build it with `make report`"):
        check_report(tmp_path / "none.html", browser=False)
    page = tmp_path / "r.html"
    page.write_text(_page(f'<img alt="Effects" src="{_png_uri(_grey_data_figure(), metadata=dict([DATA_MARK]))}">'),
                    encoding="utf-8")
    assert check_report(page, min_images=1, browser=False) == []
    assert check_report(page, min_images=2, browser=False) == ["1 image(s), expected at least 2"]


def test_reference_figures_live_at_the_top_level(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_FIGURES", raising=False)
    assert REFERENCE_FIGURES == PROJECT_ROOT / "figures"
    assert figures_dir(REFERENCE_RESULTS_ROOT) == REFERENCE_FIGURES
    assert figures_dir(tmp_path / "mine") == tmp_path / "mine" / "figures"  # a user's run: its results root
    monkeypatch.setenv("REPRO_FIGURES", str(tmp_path / "elsewhere"))
    assert figures_dir(REFERENCE_RESULTS_ROOT) == tmp_path / "elsewhere"
    assert (REFERENCE_FIGURES / "gradcam_quick.png").is_file() and (REFERENCE_FIGURES / "quick_claims.png").is_file()
    assert not (REFERENCE_RESULTS_ROOT / "figures").exists()


def test_the_committed_quick_report_passes_the_file_checks():
    """The committed reference report (rebuilt with ``python -m repro report --profile quick --results-root
    results``): self-contained, tidy, every figure with data and alt text; Chromium's part is
    ``make check-report``."""
    html = REFERENCE_RESULTS_ROOT / "quick" / "report" / "report.html"
    assert html_problems(html, min_images=6) == []
