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
#     display_name: Python 3
#     language: python
#     name: python3
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

# %%
from repro.experiments.context import make_context

ctx = make_context(profile, p=p, seed=seed, data_root=data_root, results_dir=results_dir)

# %% [markdown]
# ## 1 · Compression

# %% [markdown]
# ## 2 · The conventional KD sweep (Hinton): α × T on T1

# %% [markdown]
# ## 3 · Subclass distillation

# %% [markdown]
# ## 5 · Class imbalance: plain CE vs the class-balanced T1 loss

# %% [markdown]
# ## 4 · Transfer learning: ImageNet vs random initialisation

# %% [markdown]
# ## 6 · Split leakage: image-level vs patient-level split

# %% [markdown]
# ## 7 · Label savings

# %% [markdown]
# ## 8 · The authors' code choices, one at a time
