"""The one list of ablations beyond the paper: notebook 07 runs it, the report shows it, the tests check it.

An :class:`Ablation` names everything about one question: its key (the key of notebook 07's record and
of the report's summary), its title and description (notebook 07's heading and narrative, the report's
heading), its runner (``repro/experiments/ablations/``; ``None`` for an ablation computed from other
results), the labeled fractions p it runs at, the result files one run writes beside the stage
results, and its view (``repro/report/ablation_*.py``: table, finding, figure over every p and seed).
Adding a question means one more entry in :data:`ABLATIONS` (or :func:`register`); notebook 07
(:func:`repro.report.ablations.run_ablations`) and the report's "Beyond the paper" section
(:func:`repro.report.ablations.show_ablations`) loop over it, in order.

The registry lives in the report layer because it binds both layers: the report may use the
experiments (docs/design.md §8), never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from repro.errors import ConfigError
from repro.experiments.ablations.authors import MODELS as AUTHORS_MODELS
from repro.experiments.ablations.authors import TOGGLES, authors_name, run_authors_choices
from repro.experiments.ablations.compression import COMPRESSION_COST_FILE, STUDENT_KD, STUDENT_NOKD, run_compression
from repro.experiments.ablations.hinton import HINTON_ALPHAS, HINTON_TAUS, hinton_name, run_hinton
from repro.experiments.ablations.imbalance import IMBALANCE_POWERS, imbalance_name, run_imbalance
from repro.experiments.ablations.leakage import UNITS, leakage_name, run_leakage
from repro.experiments.ablations.subclass import SUBCLASS_N, run_subclass, subclass_names
from repro.experiments.ablations.transfer import INITS, run_transfer, transfer_name
from repro.experiments.ablations.transfer import MODELS as TRANSFER_MODELS
from repro.names import ABLATION_STAGE, NOTEBOOK_OF, P_ENDS, P_VALUES, result_file
from repro.report.ablation_curves import label_savings_view, leakage_view, transfer_view
from repro.report.ablation_effects import authors_view, run_effects
from repro.report.ablation_tables import AblationView, compression_view, hinton_view, imbalance_view, subclass_view

#: notebook 07's record of one (profile, p, seed): ``<results>/<profile>/p<p>/seed<seed>/07_ablations.json``
NOTEBOOK = NOTEBOOK_OF[ABLATION_STAGE]


@dataclass(frozen=True)
class Ablation:
    """One ablation: what notebook 07 runs and what the report shows of it."""

    key: str                                    # "hinton": record key, summary key
    title: str                                  # heading, numbered by position: "2 · <title>"
    description: str                            # markdown: what is trained and compared (notebook 07's narrative)
    view: Callable[[Any], AblationView]         # results_dir (``<root>/<profile>``) -> table, finding, figure
    run: Callable[..., dict[str, Any]] | None = None   # ctx -> plain dict for the record; None: nothing trained
    ps: tuple[int, ...] = P_VALUES              # the labeled fractions it runs at (other p: recorded as skipped)
    files: tuple[str, ...] = ()                 # the files one run at an allowed p writes into ctx.run_results
    run_table: Callable[[dict[str, Any]], pd.DataFrame] | None = None   # the one run's own table, if it has one

    def runs_at(self, p: int) -> bool:
        return self.run is not None and int(p) in self.ps


def _ablation_files(*names: str) -> tuple[str, ...]:
    return tuple(result_file(ABLATION_STAGE, n) for n in names)


ABLATIONS: dict[str, Ablation] = {}


def register(entry: Ablation) -> Ablation:
    """Add ``entry`` at the end of :data:`ABLATIONS` (its key must be new)."""
    if entry.key in ABLATIONS:
        raise ConfigError(f"an ablation with key {entry.key!r} is already registered; pick another key")
    bad = [p for p in entry.ps if p not in P_VALUES]
    if bad:
        raise ConfigError(f"ablation {entry.key!r} runs at p = {bad}, which are not study p values {list(P_VALUES)}")
    ABLATIONS[entry.key] = entry
    return entry


def numbered(key: str) -> str:
    """``"2 · The conventional KD sweep (Hinton): α × T on T1"``: the title with the entry's position."""
    keys = list(ABLATIONS)
    if key not in keys:
        raise ConfigError(f"unknown ablation {key!r}; registered: {keys}")
    return f"{keys.index(key) + 1} · {ABLATIONS[key].title}"


for _entry in (
    Ablation(
        "compression", "Compression: the MTL teacher into a student of 3 % of its trainable size",
        "The teacher M1{T1,T2,T3} against a student with the same frozen trunk and a narrow trainable part "
        "(neck, heads and caption decoder of width 32), trained from scratch on L_p with the M2 loss from the "
        "teacher (τ = 4) and without KD. FLOPs and CPU latency are counted end to end from the image (frozen "
        "trunk included) and from the cached trunk features (the trainable part only).",
        compression_view, run_compression,
        files=_ablation_files(STUDENT_KD, STUDENT_NOKD) + (COMPRESSION_COST_FILE,)),
    Ablation(
        "hinton", "The conventional KD sweep (Hinton): α × T on T1",
        "A T1-only student (fresh initialisation) distilled from the main teacher's T1 head with "
        "(1 − α) CE + α T² KL for every α ∈ {0.1, 0.5, 0.9, 0.95} and T ∈ {1, 4, 10}, each early-stopped on "
        "validation; the heat maps show the test T1 balanced accuracy (mean over seeds) at p = 15 and 70. "
        "The student without KD is M1{T1}.",
        hinton_view, run_hinton, ps=P_ENDS,
        files=_ablation_files(*(hinton_name(a, t) for a in HINTON_ALPHAS for t in HINTON_TAUS))),
    Ablation(
        "subclass", "Subclass distillation",
        "Müller, Kornblith & Hinton (2020): the teacher's T1 head has n sub-logits per class (class logit = "
        "their logsumexp) and an auxiliary loss (weight β, temperature T_aux) spreads the examples over the "
        "subclasses; the student distils the n·C sub-logits. Compared at the same p, student and budget with "
        "conventional KD from M1{T1} and with KD from the subclass teacher's class logits; the table gives "
        "n, β, T_aux, τ and α.",
        subclass_view, run_subclass,
        files=_ablation_files(*subclass_names(SUBCLASS_N))),
    Ablation(
        "transfer", "Transfer learning: ImageNet vs random initialisation",
        "A random trunk cannot stay frozen, so for both inits the whole EfficientNet-Lite0 (all 9 stages) is "
        "trained from the images together with the T1 and T2 heads, with the same optimiser, epochs and seed; "
        "only the encoder's initial weights differ. To fit a CPU, images are small and epochs few "
        "(`quick` and `smoke`: 32 px, batch 32 and 16, M1 2 and 1 epochs, M3 1 epoch). M3 is that M1 distilled "
        "into a copy of itself on the unlabeled set (the M3 loss, τ = 1). Runs at p = 15 and 70.",
        transfer_view, run_transfer, ps=P_ENDS,
        files=_ablation_files(*(transfer_name(i, m) for i in INITS for m in TRANSFER_MODELS))),
    Ablation(
        "imbalance", "Class imbalance: plain CE vs the class-balanced T1 loss",
        "M1{T1} with plain CE and with the class-balanced T1 loss, class weights (N / (K n_c))^power for "
        "power 0.6 (the profiles' default) and 1, judged on accuracy, balanced accuracy and macro-F1.",
        imbalance_view, run_imbalance,
        files=_ablation_files(*(imbalance_name(w) for w in IMBALANCE_POWERS))),
    Ablation(
        "leakage", "Split leakage: image-level vs patient-level split",
        "The same M1{T1,T2,T3} run on the study's patient-level split and on an image-level split of the same "
        "images (each eye assigned on its own, as in the authors' code, so a patient's two eyes can land in "
        "train and test), each tested on its own split's test set. The image-level split file is written "
        "beside the runs (`<runs>/<profile>/splits-image/`), never over the committed one; section 8 uses "
        "these two runs as its per-image split row.",
        leakage_view, run_leakage,
        files=_ablation_files(*(leakage_name(u) for u in UNITS))),
    Ablation(
        "label_savings", "Label savings: the labeled fraction single-task M1{T1} needs for the same score",
        "Nothing is trained here: for each model and p, the labeled fraction p′ at which single-task M1{T1} "
        "reaches the model's mean test T1 score, on the isotonic (non-decreasing) fit to the mean M1{T1} curve "
        "over p, linear between the measured p (\"< 15\" / \"> 70\" outside it, never extrapolated), with a "
        "95 % bootstrap interval over seeds, from the results of notebooks 01-03 at every p. Balanced "
        "accuracy and accuracy; the first crossing of the raw curve beside it, and the same rule on the "
        "paper's own T1 accuracies. In the figure the paper's claim (MTL + KD with 15 % ≈ single-task with "
        "70 %) is the star, the paper's own numbers give the dotted line.",
        label_savings_view),
    Ablation(
        "authors", "What each choice of the published code does to the result",
        "Each choice of the published code alone against this study's default, on M2 and M3 (a toggle's M3 "
        "starts from its own M2): the authors' `KLDivLoss(reduction='mean')` (`kd_reduction=\"mean\"`), the "
        "ensemble as a sum of KLs (`aggregation=\"sum_kl\"`, on M2/M3+ensemble), their per-p temperature table "
        "(`taus=\"authors\"`) and testing the last epoch's weights (`restore_best=False`). The defaults are "
        "notebook 02/03's runs when they fit. Runs at p = 15 and 70; the first table is this (p, seed), the "
        "second pools p and seeds and adds the per-image split of section 6.",
        authors_view, run_authors_choices, ps=P_ENDS,
        files=_ablation_files(*(authors_name(m, t) for t in TOGGLES for m in AUTHORS_MODELS)),
        run_table=run_effects),
):
    register(_entry)
del _entry
