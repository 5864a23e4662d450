"""The ablations of the registry (:data:`repro.report.ablation_registry.ABLATIONS`), run and shown.

* :func:`run_ablations`: notebook 07 for one ``(profile, p, seed)``. Per ablation, in the registry's order:
  its numbered heading and description, its run (where it runs at this p; the registered result files
  must then exist), its view over every p and seed run so far (table, finding, figure), and one record,
  ``07_ablations.json``, with every run's summary and finding.
* :func:`show_ablations`: the report's "Beyond the paper" section (notebook 06): per ablation its
  numbered title and finding, its table and figure, over the result files of every p and seed.

Each view (:class:`repro.report.ablation_tables.AblationView`) reads the ``ablation-*.json`` result files
under a results folder and says "no paired runs yet" where there are none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.display import Markdown, display

from repro.errors import ConfigError
from repro.io import write_json
from repro.paths import project_relative
from repro.report.ablation_registry import ABLATIONS, NOTEBOOK, numbered
from repro.report.ablation_tables import AblationView


def ablation_views(results_dir: str | Path) -> dict[str, AblationView]:
    """Every registered ablation's view over the result files under ``results_dir`` (``<root>/<profile>``)."""
    return {key: entry.view(results_dir) for key, entry in ABLATIONS.items()}


def ablation_findings(views: dict[str, AblationView]) -> dict[str, str]:
    """``{ablation: finding}``, for the report's summary JSON and the README."""
    return {key: v.finding for key, v in views.items()}


def show_view(view: AblationView, caption: str) -> None:
    """The view's table (when it has rows) as a tidy table, and its figure with ``caption`` as its alt text;
    the figure is closed so it is shown once (:mod:`repro.report.display`)."""
    import matplotlib.pyplot as plt

    from repro.report.display import show_figure, show_table

    if not view.table.empty:
        display(show_table(view.table))
        if view.figure is not None:
            show_figure(view.figure, caption)
    if view.figure is not None:
        plt.close(view.figure)


def show_ablations(results_dir: str | Path) -> dict[str, AblationView]:
    """The report's section: each ablation's numbered title and finding, then its table and figure."""
    views = ablation_views(results_dir)
    for key, view in views.items():
        display(Markdown(f"### {numbered(key)}\n\n{view.finding}"))
        show_view(view, f"{numbered(key).split(' · ', 1)[-1]}: {view.finding}")
    return views


def run_ablation(ctx, key: str) -> dict[str, Any]:
    """One ablation of notebook 07 at ``ctx``'s ``(profile, p, seed)``: heading and description, its run
    (skipped at a p it does not run at), its view over every run so far; the record of this run."""
    entry = ABLATIONS.get(key)
    if entry is None:
        raise ConfigError(f"unknown ablation {key!r}; registered: {list(ABLATIONS)}")
    display(Markdown(f"## {numbered(key)}\n\n{entry.description}"))
    record: dict[str, Any] = {"item": key, "p": ctx.p, "seed": ctx.seed}
    if entry.runs_at(ctx.p):
        out = entry.run(ctx)
        missing = [f for f in entry.files if not (ctx.run_results / f).exists()]
        if missing:
            raise ConfigError(
                f"ablation {key!r} ran but did not write {missing} into "
                f"{project_relative(ctx.run_results, siblings=True)}; its registry entry "
                "(repro/report/ablation_registry.py) must list the files its runner writes")
        record.update(out)
        record["files"] = list(entry.files)
        if entry.run_table is not None:
            display(entry.run_table(out))
    elif entry.run is not None:
        record["skipped"] = f"runs at p in {list(entry.ps)} only"
    view = entry.view(ctx.results_dir)
    record["finding"] = view.finding
    record["effect"] = view.effect
    show_view(view, f"{numbered(key).split(' · ', 1)[-1]}: {view.finding}")
    display(Markdown(view.finding))
    return record


def run_ablations(ctx, keys=None) -> dict[str, Any]:
    """Notebook 07: every registered ablation (or ``keys``) in order, and their record,
    ``<results>/<profile>/p<p>/seed<seed>/07_ablations.json``, written and returned."""
    record: dict[str, Any] = {"notebook": NOTEBOOK, "profile": ctx.profile.name, "p": ctx.p, "seed": ctx.seed}
    for key in (list(ABLATIONS) if keys is None else keys):
        record[key] = run_ablation(ctx, key)
    write_json(ctx.run_results / f"{NOTEBOOK}.json", record)
    return record
