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
# # 03 · M3: distillation on unlabeled images
#
# Paper §3.3, Eq. 3 and Table 5 rows 6–7. The student starts from the best
# M2 and minimises Σ_t τ_t²·KL(teacher_t^τ ‖ student_t^τ) on the unlabeled
# set (by default the whole training pool with its labels hidden, so at
# p = 70 this is label-free self-distillation; profile setting
# `unlabeled = "rest"` uses pool \ L_p only, as in the paper). Caption KD is
# per decoding step over the main teacher's greedy caption. The teacher is
# M2 alone, or the ensemble with M2 in place of M1{T1,T2,T3}.
# Needs notebooks 01 and 02 for the same (profile, p, seed).

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")  # the test suite runs every notebook under "smoke"
p = 15
seed = 0
data_root = None
results_dir = None
skip_bad_images = False  # skip unreadable images (listed in the data report); the rest get a split of their own
strict_keywords = False  # fail on keywords the keyword table lacks instead of deciding them by rule
taus = "validation"
force = False  # retrain models whose results exist (the sweep's --force sets it)

# %%
from repro.experiments.context import load_result
from repro.experiments.m2m3 import run_m3
from repro.experiments.tau import resolve_taus
from repro.experiments.context import make_context
from repro.report.plots import learning_curves
from repro.io import write_json
from repro.names import MAIN
from repro.report.tables import compare_rows

ctx = make_context(profile, p=p, seed=seed, data_root=data_root, results_dir=results_dir,
                   skip_bad_images=skip_bad_images, strict_keywords=strict_keywords)
tau = resolve_taus(ctx, taus)
print("temperatures per task:", tau, "| unlabeled images:", len(ctx.indices(unlabeled=(ctx.profile.unlabeled, p))))

# %%
m3 = {"M3": run_m3(ctx, ensemble=False, taus=taus, force=force),
      "M3+ensemble": run_m3(ctx, ensemble=True, taus=taus, force=force)}
fig = learning_curves(m3, title=f"M3, {profile}, p={p}, seed={seed}")

# %% [markdown]
# ## Table 5 rows 4–7 for this p, beside the paper

# %%
rows = {"M2": load_result(ctx, "m2", "single"), "M2+ensemble": load_result(ctx, "m2", "ensemble"), **m3}
table = compare_rows({k: v for k, v in rows.items() if v}, p, "paper_table5", model_of=lambda n: n,
                     train_tasks_of=lambda n: MAIN)
table.round(3)

# %%
write_json(ctx.run_results / "03_m3_unlabeled.json", {
    "notebook": "03_m3_unlabeled", "profile": profile, "p": p, "seed": seed, "taus": tau,
    "runs": {"M3": "m3-single.json", "M3+ensemble": "m3-ensemble.json"},
    "table5": {n: {tt: table.loc[n, (tt, "ours")] for tt in ("T1", "T2", "T3")} for n in table.index},
})
