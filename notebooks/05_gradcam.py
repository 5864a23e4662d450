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
# # 05 · Grad-CAM: where M1 and M3 look
#
# Paper §4.4 and Fig. 5: Grad-CAM maps of M1{T1,T2,T3} (multi-task, no
# distillation) beside M3 (multi-task + distillation on unlabeled images) at
# the smallest and the largest labeled fraction p, for one test image per T1
# class, with each model's predictions of all three tasks underneath
# (green ✓ correct, yellow ~ partially correct, red ✗ incorrect).
#
# * **Layer**: the last stage of the encoder's trainable top (ResNet: `layer4`), i.e. the
#   last feature map before pooling; for the `quick` profile's frozen, tapped encoder the
#   first tapped stage (EfficientNet-Lite0 `block4`, 16×16 at 256 px), through which the
#   gradients of all pooled features flow.
# * **Heads**: one head at a time through `repro.cam.HeadOutput`. T1 and T2
#   explain the logit of the predicted class. T3 explains the log-likelihood
#   of the model's own greedy caption (Σ_t log p(w_t | w_<t, image) up to and
#   including EOS), so its map covers the whole generated diagnosis text, not
#   just its first word.
# * **Colours**: T1/T2 green when the predicted class is the true one, red
#   otherwise; T3 by the authors' sentence BLEU against the reference caption:
#   green if ≥ 0.5, yellow if > 0, red if 0.
# * The paper's first column shows an ophthalmologist's lesion annotations;
#   ODIR-5K has none, so ours shows the plain image and its true labels.
#
# Needs notebooks 01–03 for every p in `ps` (training seed `cam_seed`); a p
# without checkpoints is left out with a note. The figure goes to
# `figures/gradcam_<profile>.png` beside the results folder (the top-level `figures/`
# for the committed results; T1 head) plus one file per other head; notebook 06
# shows them in the report.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")  # the test suite runs every notebook under "smoke"
data_root = None
results_dir = None
skip_bad_images = False  # skip unreadable images (listed in the data report); the rest get a split of their own
strict_keywords = False  # fail on keywords the keyword table lacks instead of deciding them by rule
cam_seed = 0  # the training seed whose models are shown (also draws the images)
ps = [15, 70]  # smallest and largest labeled fraction
figures_dir = None  # default: figures/ beside the results folder, figures/ for results/ ($REPRO_FIGURES overrides)

# %%
from pathlib import Path

from repro.analysis.cam import cam_map_size, target_layer_name
from repro.analysis.cam_figures import build_panels, default_figures_dir, gradcam_figure, load_cam_models, save_figure, select_images, true_labels
from repro.names import CODE_OF
from repro.paths import project_relative
from repro.io import write_json

cm = load_cam_models(profile, ps, seed=cam_seed, data_root=data_root, results_dir=results_dir,
                     data_options={"skip_bad_images": skip_bad_images, "strict_keywords": strict_keywords})
if cm.missing:
    print("note:", cm.note)
print(f"profile={profile} seed={cam_seed} shown p={cm.ps} models: {', '.join(cm.models)}")
any_model = next(iter(cm.models.values()))
layer, map_size = target_layer_name(any_model), cam_map_size(any_model, cm.prepared.image_size)
print(f"explained layer: {layer}, map {map_size[0]}x{map_size[1]} at {cm.prepared.image_size} px")

# %% [markdown]
# ## Images: one test image per T1 class (fixed draw)

# %%
idx = select_images(cm.prepared, per_class=1, seed=cam_seed)
truth = true_labels(cm.prepared, idx)
panels = build_panels(cm.models, cm.prepared.images[idx], cm.prepared, truth)
panels.table()

# %% [markdown]
# ## Fig. 5: Grad-CAM of the T1 head
# Rows: the test images (true T1 class and file on the left); columns: the
# plain image with its true labels, then M1 and M3 at each p.

# %%
fig_dir = Path(figures_dir) if figures_dir else default_figures_dir(cm.results_dir.parent)
title = f"Grad-CAM, M1 vs M3 ({profile}, seed {cam_seed})"
fig = gradcam_figure(panels, task="coarse", title=f"{title}: T1 head")
figures = {"T1": save_figure(fig, fig_dir / f"gradcam_{profile}.png", dpi=90)}

# %% [markdown]
# ## The same images explained through the T2 and T3 heads

# %%
for task in ("fine", "caption"):
    code = CODE_OF[task]
    fig = gradcam_figure(panels, task=task, title=f"{title}: {code} head")
    figures[code] = save_figure(fig, fig_dir / f"gradcam_{profile}_{code}.png", dpi=90)

# %%
write_json(cm.results_dir / "05_gradcam.json", {
    "notebook": "05_gradcam", "profile": profile, "cam_seed": cam_seed, "ps_requested": list(ps),
    "ps_shown": cm.ps, "missing": {str(k): v for k, v in cm.missing.items()},
    "target_layer": layer, "map_size": list(map_size), "image_size": cm.prepared.image_size,
    "explained": {"T1": "logit of the predicted class", "T2": "logit of the predicted class",
                  "T3": "log-likelihood of the greedy caption"},
    "images": truth, "models": cm.checkpoints, "figures": {k: project_relative(v) for k, v in figures.items()},
    "predictions": panels.table().to_dict(orient="records"),
})
