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
# # 02 · M2: distillation on the labeled set
#
# Paper §3.3, Eq. 2 and Table 5 rows 4–5. The student starts from the best
# M1{T1,T2,T3} and minimises, on L_p only,
# Σ_t [(1−α)·CE_t + α·τ_t²·KL(teacher_t^τ ‖ student_t^τ)] with α = 0.95,
# with M1{T1,T2,T3} as the single teacher, or the ensemble of all seven M1
# teachers (for task t, those that learned t). τ per task is chosen on
# validation by the temperature study, notebook 04's job (a sweep runs 04
# before 02). **Run alone before 04, this notebook runs the τ study itself
# first** (12 models: 3 tasks × 4 τ, most of its time) and says so below.
# Teacher outputs are computed once and cached: teachers never run inside
# the student's loop. Needs notebook 01 for the same (profile, p, seed).

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
from repro.experiments.ensemble import evaluate_ensemble
from repro.experiments.m2m3 import run_m2
from repro.experiments.tau import resolve_taus
from repro.names import MAIN, TASKS, TAU_SELECTION_FILE
from repro.experiments.context import make_context
from repro.report.plots import learning_curves
from repro.io import write_json
from repro.report.tables import compare_rows

ctx = make_context(profile, p=p, seed=seed, data_root=data_root, results_dir=results_dir,
                   skip_bad_images=skip_bad_images, strict_keywords=strict_keywords)
study_seed = seed if ctx.profile.tau_seed is None else ctx.profile.tau_seed
if taus == "validation" and study_seed == seed and not (ctx.run_results / TAU_SELECTION_FILE).exists():
    print(f"the temperature study (notebook 04) has not run for p={p} seed={seed}: running it here first "
          f"({len(TASKS)} tasks x {len(ctx.profile.taus)} τ = {len(TASKS) * len(ctx.profile.taus)} models); "
          f"notebook 04 will reuse them")
tau = resolve_taus(ctx, taus)
print("temperatures per task:", tau)

# %% [markdown]
# ## The M1 teacher ensemble as a predictor of its own

# %%
ens = evaluate_ensemble(ctx)
{t: {k: round(v, 3) for k, v in m.items() if isinstance(v, float)} for t, m in ens["metrics"]["test"].items() if t != "error_analysis"}

# %% [markdown]
# ## M2 with a single teacher and with the ensemble

# %%
m2 = {"M2": run_m2(ctx, ensemble=False, taus=taus, force=force),
      "M2+ensemble": run_m2(ctx, ensemble=True, taus=taus, force=force)}
fig = learning_curves(m2, title=f"M2, {profile}, p={p}, seed={seed}")

# %% [markdown]
# ## Table 5 rows 4–5 for this p, beside the paper

# %%
table = compare_rows(m2, p, "paper_table5", model_of=lambda n: n, train_tasks_of=lambda n: MAIN)
table.round(3)

# %%
write_json(ctx.run_results / "02_m2_distill.json", {
    "notebook": "02_m2_distill", "profile": profile, "p": p, "seed": seed, "taus": tau,
    "runs": {"M2": "m2-single.json", "M2+ensemble": "m2-ensemble.json", "ensemble": "ensemble-m1.json"},
    "table5": {n: {tt: table.loc[n, (tt, "ours")] for tt in ("T1", "T2", "T3")} for n in m2},
})
