"""Compare a reproduction with the committed reference: main metrics per run, within a tolerance.

A *run* is one result JSON ``<root>/<profile>/p<p>/seed<seed>/<stage>-<name>.json``
(the files :func:`repro.report.results.load_results` reads). For every run present in
both folders the main metrics (:data:`METRICS`: T1 balanced accuracy and accuracy,
T2 top-1, T3 BLEU) are compared; a metric differs when ``|ours - reference| > tolerance``
or when only one side has it. Runs present on one side only are listed, not counted
as differences, so a partial sweep compares what it ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from repro.errors import ConfigError, MissingStageError
from repro.names import METRIC_LABEL
from repro.paths import REFERENCE_RESULTS_ROOT, project_relative
from repro.report.results import load_results, results_folder

# report column -> how the table names it
METRICS = {col: METRIC_LABEL[col] for col in ("T1_bacc", "T1_acc", "T2_top1", "T3_bleu")}
DEFAULT_TOLERANCE = 0.01
RunKey = tuple[int, int, str, str]  # (p, seed, stage, name)


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
    ours_folders: set[tuple[int, int]] = field(default_factory=set)       # (p, seed) with any run here
    reference_folders: set[tuple[int, int]] = field(default_factory=set)  # ... in the reference

    @property
    def exit_code(self) -> int:
        return 1 if self.differences else 0


def _by_key(df: pd.DataFrame) -> dict[RunKey, dict[str, float]]:
    return {(int(r.p), int(r.seed), str(r.stage), str(r.name)): {m: float(getattr(r, m)) for m in METRICS}
            for r in df.itertuples(index=False)}


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
    ours, ref = _by_key(load_results(results_dir=ours_dir)), _by_key(load_results(results_dir=ref_dir))
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
        out.compared += 1
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


def _run(key: RunKey) -> str:
    p, seed, stage, name = key
    return f"p{p} seed{seed} {stage}-{name}"


def _missing_lines(keys: list[RunKey], other_side: set[tuple[int, int]]) -> list[str]:
    """One line per (p, seed): "all N results" when the other side has no run of that (p, seed), else the names."""
    groups: dict[tuple[int, int], list[str]] = {}
    for p, seed, stage, name in keys:
        groups.setdefault((p, seed), []).append(f"{stage}-{name}")
    return [f"  p{p} seed{seed}: " + (", ".join(names) if (p, seed) in other_side else f"all {len(names)} results")
            for (p, seed), names in sorted(groups.items())]


def _value(v: float) -> str:
    return "missing" if math.isnan(v) else f"{v:.4f}"


def format_comparison(c: Comparison) -> str:
    """The printed report: the differences as a table, what is missing on either side, and a verdict."""
    lines = [f"comparing {project_relative(c.ours)} with the reference {project_relative(c.reference)} "
             f"(tolerance {c.tolerance:g})"]
    if c.differences:
        lines.append(f"{'run':<34} {'metric':<8} {'ours':>8} {'reference':>9} {'diff':>8}")
        for d in c.differences:
            delta = "" if math.isnan(d.delta) else f"{d.delta:+.4f}"
            lines.append(f"{_run(d.key):<34} {METRICS[d.metric]:<8} {_value(d.ours):>8} "
                         f"{_value(d.reference):>9} {delta:>8}")
    if c.only_reference:
        lines.append(f"only in the reference ({len(c.only_reference)} runs, not run here):")
        lines += _missing_lines(c.only_reference, c.ours_folders)
    if c.only_ours:
        lines.append(f"only here ({len(c.only_ours)} runs, not in the reference):")
        lines += _missing_lines(c.only_ours, c.reference_folders)
    verdict = ("all within tolerance" if not c.differences
               else f"{len(c.differences)} metric value(s) beyond tolerance")
    lines.append(f"{c.compared} runs compared ({c.metrics_compared} metric values), largest |diff| "
                 f"{c.max_abs_delta:.4f}: {verdict}")
    return "\n".join(lines)
