"""Names shared by every layer, defined once (docs/design.md §2): tasks and their codes, task subsets,
labeled fractions p, caption token ids, the main metric per task, stage names and result-file names."""

from __future__ import annotations

from repro.errors import ConfigError

# ---------------------------------------------------------------- tasks
TASKS = ("coarse", "fine", "caption")
TASK_CODES = {"T1": "coarse", "T2": "fine", "T3": "caption"}   # paper code -> task
CODE_OF = {task: code for code, task in TASK_CODES.items()}     # task -> paper code
CODES = tuple(TASK_CODES)                                       # ("T1", "T2", "T3")

# the seven M1 teachers: every non-empty subset of the tasks
SUBSETS = ("T1", "T2", "T3", "T1+T2", "T1+T3", "T2+T3", "T1+T2+T3")
MAIN = "T1+T2+T3"   # the multi-task teacher that M2 starts from

# labeled fractions p (% of the training pool), nested L15 ⊂ L30 ⊂ … ⊂ L70
P_VALUES = (15, 30, 45, 60, 70)
# the smallest and largest p: the costly ablations run at these, and the paper's claim is "MTL + KD at 15 %
# ≈ single-task at 70 %"
P_ENDS = (P_VALUES[0], P_VALUES[-1])


def check_p(p) -> int:
    """``p`` as an int when it is one of :data:`P_VALUES`, else a ConfigError naming it and the allowed values."""
    try:
        ok = float(p) == int(float(p)) and int(float(p)) in P_VALUES
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"p={p!r} is not an allowed labeled fraction; use one of {list(P_VALUES)}")
    return int(float(p))


# ---------------------------------------------------------------- caption token ids
PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<sos>", "<eos>", "<unk>")   # their tokens, in id order

# ---------------------------------------------------------------- the main metric per task
# our main metric key per task: model selection on validation and the claims. T1's is balanced
# accuracy (ODIR is 45 % "normal"; the paper's data was almost balanced), with accuracy beside it.
PRIMARY = {"coarse": ("balanced_accuracy",), "fine": ("top1",), "caption": ("bleu_paper",)}
# ... per paper code: (the paper's metric name, our task, our metric key)
TASK_METRIC = {"T1": ("accuracy", "coarse", "accuracy"), "T2": ("accuracy", "fine", "top1"),
               "T3": ("bleu", "caption", "bleu_paper")}
# the report's column of that metric, and how it is written in tables and plots
METRIC_COL = {"T1": "T1_acc", "T2": "T2_top1", "T3": "T3_bleu"}
METRIC_NAME = {"T1": "accuracy", "T2": "top-1 accuracy", "T3": "BLEU (paper)"}
# the claims' metric per paper code (T1: balanced accuracy, see PRIMARY), its report column and name
CLAIM_METRIC = {"T1": ("coarse", "balanced_accuracy"), "T2": ("fine", "top1"), "T3": ("caption", "bleu_paper")}
CLAIM_COL = {"T1": "T1_bacc", "T2": "T2_top1", "T3": "T3_bleu"}
CLAIM_NAME = {"T1": "balanced accuracy", "T2": "top-1 accuracy", "T3": "BLEU (paper)"}
# a report column's short label in tables, plots and findings (one spelling everywhere)
METRIC_LABEL = {"T1_bacc": "T1 bacc", "T1_acc": "T1 acc", "T1_f1": "T1 macro-F1", "T2_top1": "T2 top-1",
                "T2_top5": "T2 top-5", "T3_bleu": "T3 BLEU", "T3_bleu4": "T3 BLEU-4", "T3_exact": "T3 exact match"}
BASELINE_STAGE = "baseline"   # result files baseline-majority.json, baseline-probe.json
SUBCLASS_OUTPUT = "coarse_sub"   # model output key of a subclass T1 head's sub-logits (B, C·n) (notebook 07 §3)

# ---------------------------------------------------------------- stages and result files
STAGES = ("m1", "tau", "m2", "m3", "ensemble")
ABLATION_STAGE = "ablation"   # notebook 07: result files ablation-<item>-<variant>.json
SELECTION_STAGES = ("m1", "m2", "m3")   # stages whose models compete for "best model"
TAU_SELECTION_FILE = "tau_selection.json"
SWEEP_FILE = "sweep.json"
TAU_SOURCES = ("validation", "authors")   # named ways of choosing τ (else a number or a dict)
PAPER_TAUS = (0.5, 1.0, 5.0, 10.0)   # the temperatures of the paper's τ study (Table 4)

# ---------------------------------------------------------------- notebooks
# the notebook that writes each stage's result files
NOTEBOOK_OF = {"m1": "01_m1_teachers", BASELINE_STAGE: "01_m1_teachers", "tau": "04_temperature",
               "m2": "02_m2_distill", "ensemble": "02_m2_distill", "m3": "03_m3_unlabeled",
               ABLATION_STAGE: "07_ablations"}


def notebook_path(stem: str) -> str:
    """``notebooks/01_m1_teachers.ipynb``: how error messages name the notebook to run."""
    return f"notebooks/{stem}.ipynb"


def result_file(stage: str, name: str) -> str:
    """``m1-T1+T2.json``: one result JSON per trained model, in ``results/<profile>/p<p>/seed<seed>/``."""
    return f"{stage}-{name}.json"


def checkpoint_file(stage: str, name: str) -> str:
    return f"{stage}-{name}.pt"


def subset_tasks(code: str) -> tuple[str, ...]:
    """``"T1+T3"`` → ``("coarse", "caption")``."""
    try:
        return tuple(TASK_CODES[c] for c in code.split("+"))
    except KeyError:
        raise ConfigError(f"unknown task subset {code!r}; use one of {list(SUBSETS)}") from None


def subset_code(tasks) -> str:
    return "+".join(CODE_OF[t] for t in TASKS if t in tasks)


#: environment variable that lets images lie outside the data folder (``--allow-outside-root``; a sweep's
#: notebooks inherit it)
ALLOW_OUTSIDE_ENV = "REPRO_ALLOW_OUTSIDE_ROOT"
#: environment variable naming the TensorBoard log folder (``--tensorboard DIR``; kernels and jobs inherit it)
TENSORBOARD_ENV = "REPRO_TENSORBOARD"

# ---------------------------------------------------------------- sweep executors
INLINE, LOCAL, SLURM = "inline", "local", "slurm"
EXECUTORS = (INLINE, LOCAL, SLURM)   # where a sweep's notebooks run: this process's kernels, local jobs, SLURM jobs

# ---------------------------------------------------------------- numeric precision
PRECISIONS = ("fp32", "bf16")   # of the frozen-trunk forward (feature_precision) and of timed training (cut bench)
