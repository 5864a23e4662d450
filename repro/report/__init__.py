"""The report: results loading, Tables 3–6, claims, plots and export (docs/design.md §7).

``from repro import report`` gives the whole public surface that notebook 06 and
``python -m repro report`` use; each job lives in its own module:

- :mod:`repro.report.results`: result JSONs → one long DataFrame (``load_results``);
- :mod:`repro.report.paper`: the paper's published numbers;
- :mod:`repro.report.tables`: Tables 3–5 beside the paper;
- :mod:`repro.report.per_class`: best model, Table 6, top-k / BLEU per class, error analysis;
- :mod:`repro.report.claims`: the paper's claims as paired differences with verdicts;
- :mod:`repro.report.claim_set`: the claims computed once per report and handed to every place that shows them;
- :mod:`repro.report.claims_view`: the claims in words and tables (report, headline, README);
- :mod:`repro.report.summary`: inventory, what is missing, the headline table;
- :mod:`repro.report.formatting`: number formatting, tidy HTML tables and LaTeX;
- :mod:`repro.report.display`: how notebook 06 shows a table or a figure (caption, alt text, nothing empty);
- :mod:`repro.report.plots`: figures;
- :mod:`repro.report.gradcam`: notebook 05's Grad-CAM figures (Fig. 5) with captions;
- :mod:`repro.report.export`: HTML (notebook 06), LaTeX tables and figures on disk;
- :mod:`repro.report.check`: the HTML as a reader gets it (self-contained, tidy, rendered by Chromium).
"""

from repro.report.claim_set import ClaimSet, claims_for, load_claims
from repro.report.claims_view import claims_display, claims_markdown, compact_markdown, method_note
from repro.report.display import show_figure, show_image, show_table
from repro.report.export import export_report, notebook_to_html, report_figures, report_tables
from repro.report.formatting import fmt, setup_display, to_latex
from repro.report.per_class import best_model, bleu_by_class, error_analysis, headlines, table6, topk_by_class
from repro.report.plots import (
                                    learning_curves,
                                    plot_claims,
                                    plot_confusion,
                                    plot_metric_vs_p,
                                    plot_tau,
                                    plot_topk_by_class,
                                    setup_plots,
)
from repro.report.results import load_results, metric_of, model_label, result_row, results_folder
from repro.report.summary import by_design, headline_markdown, inventory, missing, summary
from repro.report.tables import compare_rows, table3, table4, table5

__all__ = [
    "ClaimSet", "best_model", "bleu_by_class", "by_design", "claims_display", "claims_for", "claims_markdown",
    "compact_markdown", "compare_rows", "error_analysis", "export_report", "fmt", "headline_markdown", "headlines",
    "inventory", "learning_curves", "load_claims", "load_results", "metric_of", "method_note", "missing",
    "model_label", "notebook_to_html", "plot_claims", "plot_confusion", "plot_metric_vs_p", "plot_tau",
    "plot_topk_by_class", "report_figures", "report_tables", "result_row", "results_folder", "setup_display", "setup_plots",
    "show_figure", "show_image", "show_table", "summary", "table3", "table4", "table5", "table6", "to_latex", "topk_by_class",
]
