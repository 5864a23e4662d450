"""The report's "Beyond the paper" section: one view per ablation of notebook 07, in its numbered order.

Each view (:class:`repro.report.ablation_tables.AblationView`) holds a table, a one-sentence finding with
its effect and 95 % CI, and a figure where one helps; the views read the ``ablation-*.json`` result files
of every p and seed under a results folder and say "no paired runs yet" where there are none.
"""

from __future__ import annotations

from pathlib import Path

from repro.report.ablation_curves import label_savings_view, leakage_view, transfer_view
from repro.report.ablation_effects import authors_choices_report
from repro.report.ablation_tables import (AblationView, compression_view, hinton_view, imbalance_view,
                                          subclass_view)

TITLES = {
    "compression": "1 · Compression: the MTL teacher into a student of 3 % of its trainable size",
    "hinton": "2 · The conventional KD sweep (Hinton): α × T on T1",
    "subclass": "3 · Subclass distillation",
    "transfer": "4 · Transfer learning: ImageNet vs random initialisation",
    "imbalance": "5 · Class imbalance: plain CE vs the class-balanced T1 loss",
    "leakage": "6 · Split leakage: image-level vs patient-level split",
    "label_savings": "7 · Label savings: the labeled fraction single-task M1{T1} needs for the same score",
    "authors": "8 · What each choice of the published code does to the result",
}


def _authors_view(results_dir) -> AblationView:
    r = authors_choices_report(results_dir)
    return AblationView(r["table"], " ".join(r["findings"].values()), r["figure"],
                        {"findings": r["findings"]})


VIEWS = {
    "compression": compression_view, "hinton": hinton_view, "subclass": subclass_view,
    "transfer": transfer_view, "imbalance": imbalance_view, "leakage": leakage_view,
    "label_savings": label_savings_view, "authors": _authors_view,
}


def ablation_views(results_dir: str | Path) -> dict[str, AblationView]:
    """Every ablation's view over the result files under ``results_dir`` (``<root>/<profile>``)."""
    return {key: view(results_dir) for key, view in VIEWS.items()}


def ablation_findings(views: dict[str, AblationView]) -> dict[str, str]:
    """``{ablation: finding}``, for the report's summary JSON and the README."""
    return {key: v.finding for key, v in views.items()}
