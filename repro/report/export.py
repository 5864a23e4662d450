"""The report on disk: LaTeX tables, figures, the headline markdown and notebook 06 as HTML (docs/design.md §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from repro.io import atomic_write_text
from repro.paths import PROJECT_ROOT, figures_dir as default_figures_dir
from repro.report.claim_set import CLAIMS_FILE, ClaimSet, claims_for
from repro.report.profile_compare import COMPARISON_FILE, COMPARISON_MD, against_base
from repro.report.claims_view import claims_display, compact_markdown
from repro.report.formatting import fmt, to_latex
from repro.report.per_class import bleu_by_class, error_analysis, table6, topk_by_class
from repro.report.plots import plot_claims, plot_confusion, plot_metric_vs_p, plot_tau, plot_topk_by_class
from repro.report.results import load_results, results_folder
from repro.report.summary import headline_markdown
from repro.report.tables import table3, table4, table5
from repro.sweep.kernel import kernel_env, kernel_transport


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: the README's claims table, written beside the headline
README_CLAIMS_FILE = "claims.md"


def report_tables(df: pd.DataFrame, claims: ClaimSet | None = None) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, str]]:
    """name -> (numeric table, display table, caption) for every table of the report; ``claims``: the
    report's :class:`ClaimSet` (computed here when None)."""
    t3, t4, t5 = table3(df), table4(df), table5(df)
    t6, tk, bl, ea = table6(df), topk_by_class(df), bleu_by_class(df), error_analysis(df)
    cs = claims if claims is not None else claims_for(df)
    return {
        "table3": (t3, fmt(t3), "M1 per task subset and p (paper Table 3). Ours: mean $\\pm$ std over seeds (n seeds)."),
        "table4": (t4, fmt(t4), "Temperature study: single-task KD per $\\tau$ and p (paper Table 4); "
                                "T1 bacc = T1 balanced accuracy (our main T1 metric, no paper value); "
                                "chosen = seeds whose validation picked this $\\tau$."),
        "table5": (t5, fmt(t5), "M1 baseline, M2, M3, with single teacher or ensemble, and the M1 ensemble "
                                "as a predictor (paper Table 5)."),
        "table6_confusion": (t6, t6, f"T1 confusion matrix, {t6.attrs.get('note')}, vs the paper's Table 6 "
                                     "(our other stands in for melanoma)."),
        "topk_by_class": (tk, fmt(tk), f"T2 top-k accuracy per T1 class (paper Fig. 4): {tk.attrs.get('note')}."),
        "bleu_by_class": (bl, fmt(bl), f"T3 BLEU per T1 class (paper Section 4.2): {bl.attrs.get('note')}."),
        "error_analysis": (ea, fmt(ea, {"count": 1, "rate": 3}),
                           f"Error analysis (supplement Section 3): {ea.attrs.get('note')}."),
        "claims": (cs.pooled, claims_display(cs.pooled),
                   "The paper's claims: paired effect A $-$ B pooled over p and seeds, 95% t-interval and paired "
                   "patient bootstrap, verdicts raw and after Holm (inconclusive: smaller than the MDE at 80% "
                   "power), T1 also on accuracy, the paper's effect."),
        "claims_per_p": (cs.per_p, claims_display(cs.per_p, pooled_only=False),
                         "The claims at each p: descriptive, not adjusted for multiple tests."),
    }


def report_figures(df: pd.DataFrame, tables: dict | None = None) -> dict[str, Any]:
    """name -> matplotlib figure of every figure of the report."""
    tables = tables or report_tables(df)
    return {"metric_vs_p": plot_metric_vs_p(df), "tau": plot_tau(df),
            "confusion": plot_confusion(tables["table6_confusion"][0]),
            "topk_by_class": plot_topk_by_class(tables["topk_by_class"][0]),
            "claims": plot_claims(tables["claims"][0])}


# nbconvert's JupyterLab template without anything fetched from outside the file: no require.js, MathJax,
# mermaid or widget loader (the report has no math, diagrams or widgets); each figure's alt text is the
# caption its cell gave it (``IPython.display.Image(..., alt=caption)``); tables scroll sideways in their box
REPORT_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}
<style type="text/css">
  .table-scroll { overflow-x: auto; max-width: 100%; }
  .jp-RenderedHTMLCommon .report-table th { white-space: normal; }
  .jp-RenderedMarkdown table { display: block; overflow-x: auto; max-width: 100%; }
</style>
{% endblock extra_css %}
{% macro report_image(output, mimetype, kind) -%}
<div class="jp-RenderedImage jp-OutputArea-output">
{%- set alt = output | get_metadata('alt', mimetype) %}
<img src="data:{{ mimetype }};base64,{{ output.data[mimetype] | escape_html }}"
{%- if alt %} alt="{{ alt | escape_html }}"{% endif %}>
</div>
{%- endmacro %}
{% block data_png scoped %}{{ report_image(output, 'image/png', 'png') }}{% endblock data_png %}
{% block data_jpg scoped %}{{ report_image(output, 'image/jpeg', 'jpeg') }}{% endblock data_jpg %}
"""
REPORT_TEMPLATE_NAME = "repro_report.html.j2"


def report_exporter():
    """nbconvert's HTML exporter with :data:`REPORT_TEMPLATE`: code, prompts and printed output hidden."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file=REPORT_TEMPLATE_NAME,
                        extra_loaders=[DictLoader({REPORT_TEMPLATE_NAME: REPORT_TEMPLATE})],
                        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)


def notebook_title(nb) -> str | None:
    """The text of the notebook's first level-1 heading (``# …`` in a Markdown cell), or None."""
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            for line in cell.get("source", "").splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


def notebook_to_html(executed: Path, html: Path, title: str | None = None) -> Path:
    """Self-contained HTML of an executed notebook titled ``title`` (default: its first heading): code,
    printed output (stdout and stderr: logs) hidden; papermill's metadata (the paths it ran with) and its
    injected-parameters cell are left out; nothing is loaded from outside the file (:data:`REPORT_TEMPLATE`)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    title = title or notebook_title(nb) or Path(executed).stem
    nb.metadata.pop("papermill", None)
    nb.metadata["title"] = title
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        cell.get("metadata", {}).pop("papermill", None)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("output_type") != "stream"]
    body, _ = report_exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    return atomic_write_text(html, body)


def export_report(profile: str = "quick", results_root=None, out_dir=None, figures_dir=None,
                  results_dir=None, run_notebook: bool = True, kernel_name: str = "python3",
                  dpi: int = 100) -> dict[str, Any]:
    """Build the report of ``profile``.

    * executes ``notebooks/06_report.ipynb`` (papermill; parameters ``profile``, ``results_dir``)
      into ``<out_dir>/06_report.ipynb`` and converts it to ``<out_dir>/report.html`` (code hidden);
    * computes the claims once (:func:`repro.report.claim_set.claims_for`) and hands them to the tables,
      the figures, the headline (``headline.md``), the README's claims table (``claims.md``) and, through
      ``<out_dir>/claims.json``, to notebook 06;
    * for a profile other than ``quick`` with ``quick`` results beside it, the claims of both side by side and
      each model's gain (:mod:`repro.report.profile_compare`): ``profile_comparison.md`` (the README's
      table), ``profile_comparison.json`` (for notebook 06) and ``tables/profile_{claims,gains}.csv``;
    * writes every table as LaTeX (``<out_dir>/tables/<name>.tex``) and its numbers as CSV;
    * writes the figures as ``<figures_dir>/<profile>_<name>.png``; the report also shows notebook 05's
      Grad-CAM figures from there (``gradcam_<profile>*.png``).

    ``out_dir`` defaults to ``<results folder>/report``, ``figures_dir`` to ``figures`` beside the
    profile's results folder, the top-level ``figures/`` for the committed ``results/``
    (:func:`repro.paths.figures_dir`; ``$REPRO_FIGURES`` overrides).
    Returns the paths written.
    """
    import matplotlib.pyplot as plt

    folder = results_folder(profile, results_root, results_dir)
    out = Path(out_dir) if out_dir else folder / "report"
    figs_out = Path(figures_dir) if figures_dir else default_figures_dir(folder.parent)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    figs_out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"tables": [], "figures": []}

    df = load_results(profile, results_dir=folder)
    claims = claims_for(df)   # once: every table, figure, headline and notebook 06 below use it
    tables = report_tables(df, claims)
    for name, (num, disp, caption) in tables.items():
        tex = out / "tables" / f"{name}.tex"
        atomic_write_text(tex, to_latex(disp, caption, f"tab:{profile}-{name.replace('_', '-')}"))
        num_out = num.drop(columns="result", errors="ignore")
        atomic_write_text(tex.with_suffix(".csv"), num_out.to_csv())
        written["tables"].append(tex)
    for name, fig in report_figures(df, tables).items():
        path = figs_out / f"{profile}_{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        written["figures"].append(path)
    atomic_write_text(out / "headline.md", headline_markdown(profile, df=df, claims=claims))
    written["headline"] = out / "headline.md"
    written["readme_claims"] = atomic_write_text(out / README_CLAIMS_FILE, compact_markdown(claims.table))
    written["claims"] = claims.save(out / CLAIMS_FILE)
    comparison = against_base(profile, folder, df, claims.table)   # None for quick, or without quick results
    if comparison is not None:
        written["comparison"] = comparison.save(out / COMPARISON_FILE)
        written["comparison_md"] = atomic_write_text(out / COMPARISON_MD, comparison.markdown())
        for name, table in (("profile_claims", comparison.claims), ("profile_gains", comparison.gains)):
            written["tables"].append(atomic_write_text(out / "tables" / f"{name}.csv", table.to_csv(index=False)))

    if run_notebook:
        import papermill

        from repro.sweep.kernel import check_kernel

        check_kernel(kernel_name)
        nb_in = PROJECT_ROOT / "notebooks" / "06_report.ipynb"
        executed = out / "06_report.ipynb"
        params = {"profile": profile, "results_dir": str(folder.resolve()), "figures_dir": str(figs_out.resolve()),
                  "claims_file": str(written["claims"].resolve()),
                  "comparison_file": str(written["comparison"].resolve()) if comparison is not None else None}
        # the report's figures are inline images whatever $MPLBACKEND the caller has (with Agg, ipykernel
        # keeps it and the HTML would hold no figure)
        with kernel_env(MPLBACKEND=INLINE_BACKEND):
            papermill.execute_notebook(str(nb_in), str(executed), parameters=params, cwd=str(nb_in.parent),
                                       kernel_name=kernel_name, progress_bar=False, log_output=False,
                                       **kernel_transport())
        written["notebook"] = executed
        import nbformat

        heading = notebook_title(nbformat.read(str(nb_in), as_version=4))
        written["html"] = notebook_to_html(executed, out / "report.html", f"{heading} (profile {profile})")
    return written
