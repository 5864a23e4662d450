"""Two profiles side by side (issue 18): does training the encoder change the paper's verdicts?

The ``quick`` profile freezes the whole encoder; ``finetune`` trains its top stages. Read beside each
other on the same splits, p values and test images:

* :func:`side_by_side`: every pooled claim row (each claim on its metric, T1 also on accuracy) with its
  effect, 95 % interval and verdict after Holm on each profile, and whether the verdict changed. Each
  profile's claims are computed over the p values both profiles have (:func:`common_ps`), so the two
  columns answer the same question; each keeps its own Holm family.
* :func:`model_gains`: per model, p and metric, the mean over seeds on each profile and the paired
  difference (second − first) with the paired bootstrap of the claims (seeds and, within a seed, test
  patients: :func:`repro.report.claims.bootstrap_groups`) where the result files hold per-image
  predictions, else the t-interval over seeds (macro-F1 always). Descriptive, not Holm-adjusted.

:func:`compare_profiles` computes both once per report build; :meth:`ProfileComparison.save` and
:func:`load_comparison` hand them to notebook 06 through a file, like the claims
(:mod:`repro.report.claim_set`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.io import write_json
from repro.names import CLAIM_NAME, METRIC_LABEL
from repro.report.claim_set import fingerprint, read_build_file
from repro.report.claims import (ENSEMBLE_CLAIM, N_BOOT, PER_IMAGE, PER_IMAGE_ACC, PROBE_CLAIM, _test, claims_table,
                                 interval, model_predictions, model_scores, paired_differences)
from repro.report.claims_view import _ci, _markdown_table, _signed
from repro.report.results import model_label

#: the profile the others are read against: the frozen encoder
BASE_PROFILE = "quick"
#: the file a report build leaves beside the report for notebook 06
COMPARISON_FILE = "profile_comparison.json"
#: the same, as markdown (the README's table)
COMPARISON_MD = "profile_comparison.md"
#: the models whose gain is shown: the claims' models, in the order of the paper's tables
GAIN_MODELS = (("m1", "T1"), ("m1", "T2"), ("m1", "T3"), ("m1", "T1+T2+T3"), ("m2", "single"), ("m3", "single"),
               ("m2", "ensemble"), ("m3", "ensemble"))
#: the metrics of a gain: report column -> (task, per-image data key and metric kind; None: t-interval only)
GAIN_METRICS = {"T1_bacc": ("T1", PER_IMAGE["T1"]), "T1_acc": ("T1", PER_IMAGE_ACC), "T1_f1": ("T1", None),
                "T2_top1": ("T2", PER_IMAGE["T2"]), "T3_bleu": ("T3", PER_IMAGE["T3"])}
#: the claim rows that are not the paper's (the README's table leaves them to the report)
NOT_PAPER_CLAIMS = (PROBE_CLAIM, ENSEMBLE_CLAIM)
#: a changed verdict, as the side-by-side table marks it
CHANGED = "changed"

GAINS_NOTE = (
    "Gain: the second profile's metric minus the first's, paired by p and seed (the same split and test "
    "images). Interval: 95 % paired bootstrap over seeds and, within a seed, test patients where the result "
    "files hold per-image predictions, else the t-interval over seeds (T1 macro-F1 always). Descriptive: "
    "not Holm-adjusted.")


def common_ps(a: pd.DataFrame, b: pd.DataFrame) -> list[int]:
    """The p values both result sets have."""
    if a is None or b is None or a.empty or b.empty:
        return []
    return sorted(set(a["p"].dropna().astype(int)) & set(b["p"].dropna().astype(int)))


def at_ps(df: pd.DataFrame, ps: list[int]) -> pd.DataFrame:
    """The rows of ``df`` at the p values ``ps``."""
    return df[df["p"].isin(ps)].reset_index(drop=True)


def _claim_cells(r, accuracy: bool) -> tuple[str, str, str, str]:
    """(effect, interval, verdict after Holm in words, verdict after Holm) of one pooled claim row."""
    if accuracy:
        return (_signed(r["effect_acc"]), _ci(r["acc_low"], r["acc_high"]), r["reading_acc"],
                r["verdict_acc_holm"])
    return _signed(r["effect"]), _ci(*interval(r)), r["reading"], r["verdict_holm"]


def _claim_rows(claims: pd.DataFrame) -> dict[tuple[str, str, str, str], tuple[str, str, str, str]]:
    """``{(claim, comparison, task, metric): cells}`` of the pooled rows (T1 twice: both metrics)."""
    out = {}
    if claims is None or claims.empty:
        return out
    for _, r in claims[claims["scope"] != "one p"].iterrows():
        if not r["n_pairs"]:
            continue
        out[(r["claim"], r["comparison"], r["task"], CLAIM_NAME[r["task"]])] = _claim_cells(r, False)
        if r["verdict_acc"]:
            out[(r["claim"], r["comparison"], r["task"], "accuracy")] = _claim_cells(r, True)
    return out


def side_by_side(claims_a: pd.DataFrame, claims_b: pd.DataFrame, labels: tuple[str, str]) -> pd.DataFrame:
    """One row per pooled claim test of either table: claim, comparison, task, metric, then for each
    profile its effect, 95 % interval (bootstrap with test sampling where it ran) and verdict after Holm
    in words, and ``changed`` where the two verdicts after Holm differ ("–" where a profile lacks it)."""
    a, b = _claim_rows(claims_a), _claim_rows(claims_b)
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        ca, cb = a.get(key), b.get(key)
        cells = []
        for c in (ca, cb):
            cells += list(c[:3]) if c else ["–", "–", "–"]
        change = "–" if not (ca and cb) else CHANGED if ca[3] != cb[3] else ""
        rows.append(list(key) + cells + [change])
    cols = ["claim", "comparison", "task", "metric"]
    for label in labels:
        cols += [f"{label}: effect", f"{label}: 95% interval", f"{label}: verdict (Holm)"]
    return pd.DataFrame(rows, columns=cols + ["verdict"])


def model_gains(df_a: pd.DataFrame, df_b: pd.DataFrame, labels: tuple[str, str], n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per model of :data:`GAIN_MODELS`, p and metric of :data:`GAIN_METRICS`: pairs, the mean over seeds
    on each profile, the gain (second − first) with its 95 % interval, how the interval was computed and
    its verdict ("supported": the second is higher). Numeric columns; :func:`gains_display` formats."""
    rows = []
    for stage, name in GAIN_MODELS:
        ra, rb = model_predictions(df_a, stage, name), model_predictions(df_b, stage, name)
        for col, (task, per_image) in GAIN_METRICS.items():
            sa, sb = model_scores(df_a, stage, name, task, col), model_scores(df_b, stage, name, task, col)
            diffs = paired_differences(sb, sa)
            # no per-image metric (macro-F1): no predictions to resample, so _test falls back to the t-interval
            (key, kind), recs = (per_image, (rb, ra)) if per_image else (("", "mean"), ({}, {}))
            for p in sorted(set(diffs.index.get_level_values("p"))) if diffs.size else []:
                d = diffs[diffs.index.get_level_values("p") == p]
                t = _test(d, *recs, key, kind, n_boot)
                lo, hi = interval(t)
                rows.append({"model": model_label(stage, name), "p": int(p), "metric": METRIC_LABEL[col],
                             "pairs": int(d.size), labels[0]: float(sa.loc[d.index].mean()),
                             labels[1]: float(sb.loc[d.index].mean()), "gain": t["effect"], "low": lo, "high": hi,
                             "interval": "bootstrap (seeds + test patients)" if np.isfinite(t["boot_low"])
                             else "t over seeds", "verdict": t["verdict"]})
    return pd.DataFrame(rows, columns=["model", "p", "metric", "pairs", *labels, "gain", "low", "high", "interval",
                                       "verdict"])


def gains_display(gains: pd.DataFrame, labels: tuple[str, str], digits: int = 3) -> pd.DataFrame:
    """:func:`model_gains` as the report shows it: means and gain rounded, the interval as text."""
    if gains.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "model": gains["model"], "p": gains["p"], "metric": gains["metric"], "pairs": gains["pairs"],
        labels[0]: gains[labels[0]].map(lambda v: f"{v:.{digits}f}"),
        labels[1]: gains[labels[1]].map(lambda v: f"{v:.{digits}f}"),
        f"{labels[1]} − {labels[0]}": gains["gain"].map(lambda v: _signed(v, digits)),
        "95% interval": [_ci(lo, hi, digits) for lo, hi in zip(gains["low"], gains["high"])],
        "interval": gains["interval"], "verdict": gains["verdict"]}).reset_index(drop=True)


def compact_claims(claims: pd.DataFrame, labels: tuple[str, str]) -> pd.DataFrame:
    """:func:`side_by_side` with a profile's effect, interval and verdict in one cell (the README)."""
    if claims.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"claim": claims["claim"], "A − B": claims["comparison"],
                        "task, metric": claims["task"] + " " + claims["metric"]})
    for label in labels:
        out[label] = [f"{e} {i} {v}" if e != "–" else "–" for e, i, v in
                      zip(claims[f"{label}: effect"], claims[f"{label}: 95% interval"], claims[f"{label}: verdict (Holm)"])]
    out["verdict"] = claims["verdict"]
    return out.reset_index(drop=True)


def gains_pivot(gains: pd.DataFrame, labels: tuple[str, str], digits: int = 3) -> pd.DataFrame:
    """:func:`model_gains` with a row per model and p and a cell per metric: "a → b (gain [interval])"."""
    if gains.empty:
        return pd.DataFrame()
    cell = [f"{a:.{digits}f} → {b:.{digits}f} ({_signed(g, digits)} {_ci(lo, hi, digits)})" for a, b, g, lo, hi in
            zip(gains[labels[0]], gains[labels[1]], gains["gain"], gains["low"], gains["high"])]
    wide = gains.assign(cell=cell).pivot(index=["model", "p"], columns="metric", values="cell")
    order = [m for m in dict.fromkeys(gains["metric"]) if m in wide.columns]
    models = list(dict.fromkeys(gains["model"]))
    wide = wide[order].reset_index()
    wide["_m"] = wide["model"].map(models.index)
    return wide.sort_values(["_m", "p"]).drop(columns="_m").fillna("–").reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class ProfileComparison:
    """Two profiles' claims side by side (``claims``) and each model's gain (``gains``, numeric) over the
    p values both have (``ps``); ``fingerprint``: of the second profile's results at those p."""

    labels: tuple[str, str]
    ps: tuple[int, ...]
    claims: pd.DataFrame
    gains: pd.DataFrame
    fingerprint: str

    def changed(self) -> pd.DataFrame:
        """The claim rows whose verdict after Holm differs between the profiles."""
        return self.claims[self.claims["verdict"] == CHANGED] if not self.claims.empty else self.claims

    def markdown(self) -> str:
        """Both tables as GitHub markdown, with how to read them: the paper's claims (the rows against the LR
        probe and the teacher ensemble are the report's), then every model's gain."""
        a, b = self.labels
        if self.claims.empty:
            return f"_No claims to compare: {a} and {b} share no p value with results._\n"
        paper = self.claims[~self.claims["claim"].isin(NOT_PAPER_CLAIMS)]
        n, k = len(paper), int((paper["verdict"] == CHANGED).sum())
        head = (f"The paper's claims on `{a}` and on `{b}`, each over p = {', '.join(map(str, self.ps))} "
                f"(the p values both have), each with its own Holm family: {k} of {n} verdicts change. A cell: "
                "effect, 95 % interval (the paired bootstrap with test sampling), verdict after Holm. The rows "
                "against the LR probe and the M1 teacher ensemble are in the report.\n\n")
        diff = settings_differences(*self.labels)
        if diff:
            head += ("Settings in which the two profiles differ (as defined in `repro/profiles.py`): "
                     + "; ".join(f"`{k}` {va} / {vb}" for k, (va, vb) in diff.items()) + ".\n\n")
        return (head + _markdown_table(compact_claims(paper, self.labels))
                + f"\nEach model on `{b}` against `{a}` (mean over seeds, `{a}` → `{b}`, gain and 95 % interval):"
                "\n\n" + _markdown_table(gains_pivot(self.gains, self.labels)) + "\n" + GAINS_NOTE + "\n")

    def save(self, path: str | Path) -> Path:
        """Both tables, the labels, p values and fingerprint as JSON (atomically); returns the path."""
        return write_json(path, {"labels": list(self.labels), "ps": list(self.ps), "fingerprint": self.fingerprint,
                                 "claims": self.claims.to_dict(orient="split"),
                                 "gains": self.gains.to_dict(orient="split")})


def settings_differences(a: str, b: str) -> dict[str, tuple[Any, Any]]:
    """``{setting: (value in a, value in b)}`` for every profile setting (the name aside) in which profiles
    ``a`` and ``b`` differ: what besides the encoder could explain a gain. ``{}`` when either is not a
    known profile."""
    from repro.profiles import PROFILES, setting_differences

    if a not in PROFILES or b not in PROFILES:
        return {}
    return setting_differences(PROFILES[a].to_dict(), PROFILES[b])


def compare_profiles(df_a: pd.DataFrame, df_b: pd.DataFrame, labels: tuple[str, str],
                     claims_b: pd.DataFrame | None = None, n_boot: int = N_BOOT) -> ProfileComparison:
    """Both profiles' claims over their common p values, side by side, and the models' gains.
    ``claims_b``: the second profile's claims where already computed over exactly those p values (a report
    build's), else computed here."""
    ps = common_ps(df_a, df_b)
    a, b = at_ps(df_a, ps), at_ps(df_b, ps)
    ca = claims_table(a, n_boot=n_boot) if ps else pd.DataFrame()
    cb = claims_b if claims_b is not None else claims_table(b, n_boot=n_boot) if ps else pd.DataFrame()
    return ProfileComparison(tuple(labels), tuple(ps), side_by_side(ca, cb, labels),
                             model_gains(a, b, labels, n_boot) if ps else pd.DataFrame(), fingerprint(b))


def _frame(split: dict) -> pd.DataFrame:
    return pd.DataFrame(split["data"], columns=split["columns"])


def load_comparison(path: str | Path, df_b: pd.DataFrame) -> ProfileComparison:
    """The comparison a report build saved at ``path``, checked against the second profile's results."""
    saved = read_build_file(path, "profile comparison", "comparison_file",
                            lambda saved: fingerprint(at_ps(df_b, list(saved.get("ps", [])))))
    return ProfileComparison(tuple(saved["labels"]), tuple(saved["ps"]), _frame(saved["claims"]),
                             _frame(saved["gains"]), saved["fingerprint"])


def against_base(profile: str, folder: str | Path, df: pd.DataFrame, claims: pd.DataFrame | None = None,
                 n_boot: int = N_BOOT) -> ProfileComparison | None:
    """``profile``'s results (``df``, read from ``folder``) against :data:`BASE_PROFILE`'s beside them
    (``<folder>/../quick``), or ``None`` where ``profile`` is the base or the two share no p value.
    ``claims``: ``profile``'s claims table (a report's), used where it covers exactly the shared p values."""
    from repro.report.results import load_results

    if profile == BASE_PROFILE or df is None or df.empty:
        return None
    base = load_results(BASE_PROFILE, results_dir=Path(folder).parent / BASE_PROFILE)
    ps = common_ps(base, df)
    if not ps:
        return None
    own = claims if claims is not None and set(df["p"].dropna().astype(int)) == set(ps) else None
    return compare_profiles(base, df, (BASE_PROFILE, profile), claims_b=own, n_boot=n_boot)
