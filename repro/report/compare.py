"""Compare a reproduction with the committed reference: every result file, main metrics within a tolerance.

A *run* is one result JSON ``<root>/<profile>/p<p>/seed<seed>/<stage>-<name>.json`` of any stage: the
paper's models and baselines (the files :func:`repro.report.results.load_results` reads) and the
ablations of notebook 07 (``ablation-<name>.json``). For every run present in both folders the main
metrics (:data:`METRICS`: T1 balanced accuracy and accuracy, T2 top-1, T3 BLEU) are compared; a metric
differs when ``|ours - reference| > tolerance`` or when only one side has it. The other JSON files of a
(p, seed) (a notebook's summary, the τ selection, the compression cost: no test metric, or one that
depends on the machine) and runs without a main test metric are listed as not compared. Files present
on one side only are listed, not counted as differences, so a partial sweep compares what it ran.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path


from repro.errors import ConfigError, MissingStageError
from repro.names import METRIC_LABEL
from repro.paths import REFERENCE_RESULTS_ROOT, project_relative
from repro.report.results import result_rows, results_folder

# report column -> how the table names it
METRICS = {col: METRIC_LABEL[col] for col in ("T1_bacc", "T1_acc", "T2_top1", "T3_bleu")}
DEFAULT_TOLERANCE = 0.01
RunKey = tuple[int, int, str, str]  # (p, seed, stage, name); stage "" for a JSON that is not a run
# a run's file name: <stage>-<name>.json, the ablations' stage included
RUN_FILE = re.compile(r"^([a-z][a-z0-9]*)-(.+)\.json$")
ABLATION_STAGE = "ablation"


@dataclass
class Difference:
    key: RunKey
    metric: str
    ours: float
    reference: float

    @property
    def delta(self) -> float:
        return self.ours - self.reference


@dataclass
class Comparison:
    ours: Path
    reference: Path
    tolerance: float
    compared: int = 0                # runs present on both sides
    metrics_compared: int = 0        # metric values compared (NaN on both sides is not counted)
    max_abs_delta: float = 0.0
    differences: list[Difference] = field(default_factory=list)
    only_ours: list[RunKey] = field(default_factory=list)
    only_reference: list[RunKey] = field(default_factory=list)
    not_compared: list[RunKey] = field(default_factory=list)   # on both sides, without a main test metric
    ablations_compared: int = 0      # of ``compared``: runs of notebook 07's ablations
    ours_folders: set[tuple[int, int]] = field(default_factory=set)       # (p, seed) with any run here
    reference_folders: set[tuple[int, int]] = field(default_factory=set)  # ... in the reference

    @property
    def exit_code(self) -> int:
        return 1 if self.differences else 0


def _by_key(folder: Path) -> dict[RunKey, dict[str, float]]:
    """Every JSON of ``folder/p*/seed*``: runs with their main test metrics, other files with none."""
    rows, _ = result_rows(folder, RUN_FILE)
    out: dict[RunKey, dict[str, float]] = {(int(r["p"]), int(r["seed"]), str(r["stage"]), str(r["name"])):
                                           {m: float(r[m]) for m in METRICS} for r in rows}
    for path in sorted(folder.glob("p*/seed*/*.json")):
        p, seed = (re.fullmatch(r"(?:p|seed)(\d+)", part) for part in (path.parent.parent.name, path.parent.name))
        if p and seed and not RUN_FILE.match(path.name):
            out[(int(p.group(1)), int(seed.group(1)), "", path.stem)] = {}
    return out


def compare_results(profile: str, results_root=None, reference_root=None,
                    tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """Compare ``<results_root>/<profile>`` with ``<reference_root>/<profile>`` (see the module docstring).

    ``results_root`` defaults to the results root of every command (``out/``), ``reference_root`` to the
    committed ``results/`` (:data:`repro.paths.REFERENCE_RESULTS_ROOT`).
    """
    ours_dir = results_folder(profile, results_root)
    ref_dir = results_folder(profile, reference_root or REFERENCE_RESULTS_ROOT)
    if ours_dir.resolve() == ref_dir.resolve():
        raise ConfigError(f"--results-root and --reference are the same folder {ours_dir}; "
                          f"compare a reproduction (e.g. out/) with the reference (results/)")
    ours, ref = _by_key(ours_dir), _by_key(ref_dir)
    if not ref:
        raise MissingStageError(f"no result JSON in the reference {ref_dir}")
    if not ours:
        raise MissingStageError(f"no result JSON in {ours_dir}: run `make study` (or "
                                f"`python -m repro sweep --profile {profile} --results-root {ours_dir.parent}`) first")
    out = Comparison(ours_dir, ref_dir, tolerance)
    out.only_ours = sorted(set(ours) - set(ref))
    out.only_reference = sorted(set(ref) - set(ours))
    out.ours_folders = {k[:2] for k in ours}
    out.reference_folders = {k[:2] for k in ref}
    for key in sorted(set(ours) & set(ref)):
        if not any(not math.isnan(v) for side in (ours, ref) for v in side[key].values()):
            out.not_compared.append(key)
            continue
        out.compared += 1
        out.ablations_compared += key[2] == ABLATION_STAGE
        for metric in METRICS:
            a, b = ours[key][metric], ref[key][metric]
            if math.isnan(a) and math.isnan(b):
                continue
            out.metrics_compared += 1
            if math.isnan(a) or math.isnan(b):
                out.differences.append(Difference(key, metric, a, b))
                continue
            out.max_abs_delta = max(out.max_abs_delta, abs(a - b))
            if abs(a - b) > tolerance:
                out.differences.append(Difference(key, metric, a, b))
    return out


def _file(stage: str, name: str) -> str:
    return f"{stage}-{name}" if stage else name


def _run(key: RunKey) -> str:
    p, seed, stage, name = key
    return f"p{p} seed{seed} {_file(stage, name)}"


def _missing_lines(keys: list[RunKey], other_side: set[tuple[int, int]]) -> list[str]:
    """One line per (p, seed): "all N results" when the other side has no run of that (p, seed), else the names."""
    groups: dict[tuple[int, int], list[str]] = {}
    for p, seed, stage, name in keys:
        groups.setdefault((p, seed), []).append(_file(stage, name))
    return [f"  p{p} seed{seed}: " + (", ".join(names) if (p, seed) in other_side else f"all {len(names)} results")
            for (p, seed), names in sorted(groups.items())]


def _value(v: float) -> str:
    return "missing" if math.isnan(v) else f"{v:.4f}"


def format_comparison(c: Comparison) -> str:
    """The printed report: the differences as a table, what is missing on either side, what is on both
    sides but has no metric to compare, and a verdict."""
    lines = [f"comparing {project_relative(c.ours)} with the reference {project_relative(c.reference)} "
             f"(tolerance {c.tolerance:g})"]
    if c.differences:
        w = max(34, *(len(_run(d.key)) for d in c.differences))  # ablation names are long
        lines.append(f"{'run':<{w}} {'metric':<8} {'ours':>8} {'reference':>9} {'diff':>8}")
        for d in c.differences:
            delta = "" if math.isnan(d.delta) else f"{d.delta:+.4f}"
            lines.append(f"{_run(d.key):<{w}} {METRICS[d.metric]:<8} {_value(d.ours):>8} "
                         f"{_value(d.reference):>9} {delta:>8}")
    if c.only_reference:
        lines.append(f"only in the reference ({len(c.only_reference)} files, not run here):")
        lines += _missing_lines(c.only_reference, c.ours_folders)
    if c.only_ours:
        lines.append(f"only here ({len(c.only_ours)} files, not in the reference):")
        lines += _missing_lines(c.only_ours, c.reference_folders)
    if c.not_compared:
        names: dict[str, int] = {}
        for _, _, stage, name in c.not_compared:
            names[_file(stage, name)] = names.get(_file(stage, name), 0) + 1
        lines.append(f"on both sides, not compared ({len(c.not_compared)} files without a main test metric): "
                     + ", ".join(f"{n} ×{k}" if k > 1 else n for n, k in names.items()))
    verdict = ("all within tolerance" if not c.differences
               else f"{len(c.differences)} metric value(s) beyond tolerance")
    lines.append(f"{c.compared} runs compared ({c.ablations_compared} of them ablations; {c.metrics_compared} "
                 f"metric values), largest |diff| "
                 f"{c.max_abs_delta:.4f}: {verdict}")
    return "\n".join(lines)
