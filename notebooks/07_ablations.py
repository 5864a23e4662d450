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
# choices measured one at a time. Needs notebook 01 for the same `(profile, p, seed)`, and
# notebook 04 for the authors' choices.
#
# The ablations and their order come from one registry, `repro/report/ablation_registry.py`
# (runner, the p it runs at, title, description, result files, view); adding a question is one
# entry there. For each, in order, the cell below shows its heading and description, runs it
# (where it runs at this p), and shows its table, figure and finding over every p and seed run
# so far; the report (notebook 06) shows the same views.

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

# %%
from repro.report.ablations import run_ablations

record = run_ablations(ctx)

# %% [markdown]
# ## This run's record
#
# One JSON per `(profile, p, seed)`, `07_ablations.json`, with every ablation's run summary,
# result files and finding (the report reads the result files of the single runs,
# `ablation-*.json`, across p and seeds).

# %%
from repro.paths import project_relative

print(f"wrote {project_relative(ctx.run_results / '07_ablations.json', siblings=True)}: "
      + ", ".join(f"{k} ({'skipped' if 'skipped' in v else 'run'})" for k, v in record.items() if isinstance(v, dict)))
