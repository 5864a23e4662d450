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
# # 01 · M1: the seven multi-task teachers
#
# Paper §3.2 and Table 3: one model per non-empty subset of the tasks
# T1 (coarse disease), T2 (fine-grained disease) and T3 (diagnosis text),
# trained with Σ_t λ_t CE_t (Eq. 1, λ = 1) on the labeled fraction L_p only.
# Every teacher is early-stopped on the validation split; its best state is
# evaluated once on the test split. Results go to
# `results/<profile>/p<p>/seed<seed>/m1-<subset>.json`, checkpoints to `runs/`.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")  # the test suite runs every notebook under "smoke"
p = 15
seed = 0
data_root = None
results_dir = None
skip_bad_images = False  # skip unreadable images (listed in the data report); the rest get a split of their own
strict_keywords = False  # fail on keywords the keyword table lacks instead of deciding them by rule
force = False  # retrain models whose results exist (the sweep's --force sets it)

# %%
from repro.experiments.context import make_context
from repro.experiments.m1 import run_m1_all
from repro.names import SUBSETS
from repro.report.plots import learning_curves
from repro.io import write_json
from repro.report.tables import compare_rows

ctx = make_context(profile, p=p, seed=seed, data_root=data_root, results_dir=results_dir,
                   skip_bad_images=skip_bad_images, strict_keywords=strict_keywords)
print(f"profile={ctx.profile.name} p={p} seed={seed} device={ctx.device} "
      f"|L_p|={len(ctx.indices('train', p=p))} images, val={len(ctx.indices('val'))}, test={len(ctx.indices('test'))}")

# %% [markdown]
# ## Train (or load) the teachers

# %%
teachers = run_m1_all(ctx, force=force)

# %% [markdown]
# ## Baselines on the same split
# The majority class of L_p (T1, T2) and its most frequent caption (T3), and a logistic-regression
# probe on the frozen encoder's features (T1 class-balanced, T2; C chosen on validation), written to
# `baseline-majority.json` and `baseline-probe.json` beside the teachers (the report's baseline rows).

# %%
from repro.experiments.baselines import run_baselines
from repro.names import METRIC_LABEL

baselines = run_baselines(ctx, force=force)
{name: {METRIC_LABEL[col]: round(m["metrics"]["test"][task][key], 3) for col, (task, key) in
        (("T1_bacc", ("coarse", "balanced_accuracy")), ("T1_acc", ("coarse", "accuracy")), ("T2_top1", ("fine", "top1")),
         ("T3_bleu", ("caption", "bleu_paper"))) if task in m["metrics"]["test"]} for name, m in baselines.items()}

# %% [markdown]
# ## Learning curves
# The star marks the epoch whose weights were restored for the test evaluation.

# %%
fig = learning_curves(teachers, title=f"M1 teachers, {profile}, p={p}, seed={seed}")

# %% [markdown]
# ## Table 3 row for this p, beside the paper
# T1: accuracy, T2: top-1 accuracy, T3: BLEU as the authors computed it
# (`bleu_paper`). Empty cells are tasks a teacher did not learn.

# %%
table = compare_rows(teachers, p, "paper_table3")
table.round(3)

# %%
summary = {
    "notebook": "01_m1_teachers", "profile": profile, "p": p, "seed": seed,
    "runs": {s: f"m1-{s}.json" for s in SUBSETS},
    "baselines": {name: f"baseline-{name}.json" for name in baselines},
    "table3": {s: {tt: table.loc[s, (tt, "ours")] for tt in ("T1", "T2", "T3")} for s in SUBSETS},
}
write_json(ctx.run_results / "01_m1_teachers.json", summary)
