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
BASELINE_STAGE = "baseline"   # result files baseline-majority.json, baseline-probe.json
SUBCLASS_OUTPUT = "coarse_sub"   # model output key of a subclass T1 head's sub-logits (B, C·n) (notebook 07 §3)

# ---------------------------------------------------------------- stages and result files
STAGES = ("m1", "tau", "m2", "m3", "ensemble")
ABLATION_STAGE = "ablation"   # notebook 07: result files ablation-<item>-<variant>.json
SELECTION_STAGES = ("m1", "m2", "m3")   # stages whose models compete for "best model"
TAU_SELECTION_FILE = "tau_selection.json"
SWEEP_FILE = "sweep.json"
TAU_SOURCES = ("validation", "authors")   # named ways of choosing τ (else a number or a dict)


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
