# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (repro-mtkd)
#     language: python
#     name: repro-mtkd
# ---

# %% [markdown]
# # 07 · Ablations beyond the paper
#
# Questions the paper does not ask, each an option of the existing stages, run for one
# `(profile, p, seed)`: compression, the Hinton α × T sweep, subclass distillation,
# transfer learning, class imbalance, split leakage, label savings and the authors' code
# choices measured one at a time. Needs notebook 01 for the same `(profile, p, seed)`.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")  # the test suite runs every notebook under "smoke"
p = 15
seed = 0
data_root = None
results_dir = None
skip_bad_images = False  # skip unreadable images (listed in the data report); the rest get a split of their own
strict_keywords = False  # fail on keywords the keyword table lacks instead of deciding them by rule

# %%
from repro.experiments.context import make_context

ctx = make_context(profile, p=p, seed=seed, data_root=data_root, results_dir=results_dir,
                   skip_bad_images=skip_bad_images, strict_keywords=strict_keywords)

# %% [markdown]
# ## 1 · Compression
#
# The teacher M1{T1,T2,T3} against a student with the same frozen trunk and a narrow trainable part
# (neck, heads and caption decoder of width 32), trained from scratch on L_p with the M2 loss from the
# teacher (τ = 4) and without KD. FLOPs and CPU latency are counted end to end from the image (frozen
# trunk included) and from the cached trunk features (the trainable part only).

# %%
from IPython.display import display

from repro.experiments.ablations.compression import run_compression
from repro.report.ablation_tables import compression_view

abl_compression = run_compression(ctx)
view_compression = compression_view(ctx.results_dir)
abl_compression["finding"] = view_compression.finding
display(view_compression.table)
print(view_compression.finding)

# %% [markdown]
# ## 2 · The conventional KD sweep (Hinton): α × T on T1
#
# A T1-only student (fresh initialisation) distilled from the main teacher's T1 head with
# (1 − α) CE + α T² KL for every α ∈ {0.1, 0.5, 0.9, 0.95} and T ∈ {1, 4, 10}, each early-stopped on
# validation; the heat maps show the test T1 balanced accuracy (mean over seeds) at p = 15 and 70.
# The student without KD is M1{T1}.

# %%
from repro.experiments.ablations.hinton import HINTON_PS, run_hinton
from repro.report.ablation_tables import hinton_view

if p in HINTON_PS:
    abl_hinton = run_hinton(ctx)
else:
    abl_hinton = {"item": "hinton", "p": p, "seed": seed, "skipped": f"runs at p in {list(HINTON_PS)} only"}
view_hinton = hinton_view(ctx.results_dir)
abl_hinton["finding"] = view_hinton.finding
display(view_hinton.table)
print(view_hinton.finding)

# %% [markdown]
# ## 3 · Subclass distillation
#
# Müller, Kornblith & Hinton (2020): the teacher's T1 head has n sub-logits per class (class logit =
# their logsumexp) and an auxiliary loss (weight β, temperature T_aux) spreads the examples over the
# subclasses; the student distils the n·C sub-logits. Compared at the same p, student and budget with
# conventional KD from M1{T1} and with KD from the subclass teacher's class logits.

# %%
from repro.experiments.ablations.subclass import run_subclass
from repro.report.ablation_tables import subclass_view

abl_subclass = run_subclass(ctx)
view_subclass = subclass_view(ctx.results_dir)
abl_subclass["finding"] = view_subclass.finding
print(f"n = {abl_subclass['n']} sub-logits per class, auxiliary weight β = {abl_subclass['beta']}, "
      f"T_aux = {abl_subclass['aux_tau']}, τ = {abl_subclass['tau']}, α = {abl_subclass['alpha']}")
display(view_subclass.table)
print(view_subclass.finding)

# %% [markdown]
# ## 4 · Transfer learning: ImageNet vs random initialisation
#
# A random trunk cannot stay frozen, so for both inits the whole EfficientNet-Lite0 (all 9 stages) is
# trained from the images together with the T1 and T2 heads, with the same optimiser, epochs and seed;
# only the encoder's initial weights differ. To fit a CPU, images are small and epochs few
# (`quick` and `smoke`: 32 px, batch 32 and 16, M1 2 and 1 epochs, M3 1 epoch). M3 is that M1 distilled
# into a copy of itself on the unlabeled set (the M3 loss, τ = 1). Runs at p = 15 and 70.

# %%
from repro.experiments.ablations.transfer import TRANSFER_PS, run_transfer
from repro.report.ablation_curves import transfer_view

if p in TRANSFER_PS:
    abl_transfer = run_transfer(ctx)
else:
    abl_transfer = {"item": "transfer", "p": p, "seed": seed, "skipped": f"runs at p in {list(TRANSFER_PS)} only"}
view_transfer = transfer_view(ctx.results_dir)
abl_transfer["finding"] = view_transfer.finding
display(view_transfer.table)
print(view_transfer.finding)

# %% [markdown]
# ## 5 · Class imbalance: plain CE vs the class-balanced T1 loss
#
# M1{T1} with plain CE and with the class-balanced T1 loss, class weights (N / (K n_c))^power for
# power 0.6 (the profile's default) and 1, judged on accuracy, balanced accuracy and macro-F1.

# %%
from repro.experiments.ablations.imbalance import run_imbalance
from repro.report.ablation_tables import imbalance_view

abl_imbalance = run_imbalance(ctx)
view_imbalance = imbalance_view(ctx.results_dir, default_power=ctx.profile.class_balance or 0.6)
abl_imbalance["finding"] = view_imbalance.finding
display(view_imbalance.table)
print(view_imbalance.finding)

# %% [markdown]
# ## 6 · Split leakage: image-level vs patient-level split
#
# The same M1{T1,T2,T3} run on the study's patient-level split and on an image-level split of the same
# images (each eye assigned on its own, as in the authors' code, so a patient's two eyes can land in
# train and test), each tested on its own split's test set. The image-level split file is written
# beside the runs (`<runs>/<profile>/splits-image/`), never over the committed one. Result files
# `ablation-leakage-image.json` and `ablation-leakage-patient.json` (section 8's per-image split row).

# %%
from repro.experiments.ablations.leakage import run_leakage
from repro.report.ablation_curves import leakage_view

abl_leakage = run_leakage(ctx)
view_leakage = leakage_view(ctx.results_dir)
abl_leakage["finding"] = view_leakage.finding
display(view_leakage.table)
print(view_leakage.finding)

# %% [markdown]
# ## 7 · Label savings
#
# Nothing is trained here: for each model and p, the labeled fraction p′ at which single-task M1{T1}
# reaches the model's mean test T1 score, on the mean M1{T1} curve over p (first crossing, linear
# between the measured p; "< 15" / "> 70" outside it, never extrapolated), from the results of
# notebooks 01-03 at every p. Balanced accuracy, with accuracy beside it; the paper's claim (MTL + KD
# with 15 % ≈ single-task with 70 %) is the star, the paper's own numbers give the dotted line.

# %%
from repro.report.ablation_curves import label_savings_view

view_savings = label_savings_view(ctx.results_dir)
abl_label_savings = {"item": "label_savings", **view_savings.effect, "finding": view_savings.finding}
display(view_savings.table)
print(view_savings.finding)

# %%
view_savings.figure

# %% [markdown]
# ## 8 · The authors' code choices, one at a time
#
# Each choice of the published code alone against this study's default, on M2 and M3 (a toggle's M3
# starts from its own M2): the authors' `KLDivLoss(reduction='mean')` (`kd_reduction="mean"`), the
# ensemble as a sum of KLs (`aggregation="sum_kl"`, on M2/M3+ensemble), their per-p temperature table
# (`taus="authors"`) and testing the last epoch's weights (`restore_best=False`). The defaults are
# notebook 02/03's runs when they fit. Runs at p = 15 and 70; the report pools p and seeds and adds
# the per-image split of section 6.

# %%
from repro.experiments.ablations.authors import run_authors_choices
from repro.report.ablation_effects import AUTHORS_PS, authors_choices_report, run_effects

if p in AUTHORS_PS:
    abl_authors = run_authors_choices(ctx)
else:
    abl_authors = {"item": "authors", "p": p, "seed": seed, "skipped": f"runs at p in {list(AUTHORS_PS)} only"}
display(run_effects(abl_authors))  # this (p, seed): choice − default, epochs tested, params changed

# %%
authors_report = authors_choices_report(ctx.results_dir)  # pooled over p = 15, 70 and the seeds run so far
abl_authors["findings"] = authors_report["findings"]
display(authors_report["table"])
for sentence in authors_report["findings"].values():
    print(sentence)

# %%
authors_report["figure"]

# %% [markdown]
# ## This run's record
#
# One JSON per `(profile, p, seed)` with every section's summary and finding (the report reads the
# result files of the single runs, `ablation-*.json`, across p and seeds).

# %%
from repro.io import write_json

write_json(ctx.run_results / "07_ablations.json", {
    "notebook": "07_ablations", "profile": profile, "p": p, "seed": seed,
    "compression": abl_compression, "hinton": abl_hinton, "subclass": abl_subclass, "transfer": abl_transfer,
    "imbalance": abl_imbalance, "leakage": abl_leakage, "label_savings": abl_label_savings,
    "authors": abl_authors,
})
