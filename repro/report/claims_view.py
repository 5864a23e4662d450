"""The claims in words and tables, as the report, the headline and the README show them (issue 21).

Everything here reads a table of :func:`repro.report.claims.claims_table` (or a
:class:`repro.report.claim_set.ClaimSet`'s) and computes nothing new:

* :data:`METHOD_NOTE` and :func:`method_note`: the method in one paragraph, with the size of the Holm family;
* :func:`claims_display` / :func:`claims_markdown`: every pooled row with its intervals, raw and Holm
  verdicts, the verdict on T1 accuracy, the MDE and the paper's effect (the report);
* :func:`claim_line`, :func:`probe_lines`, :func:`disagreements`: the headline's lines, on the verdicts
  after Holm, T1 on balanced accuracy and on accuracy, saying where the two disagree;
* :func:`compact_markdown`: one row per comparison and a cell per task and metric (the README).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.names import CLAIM_NAME, CODES, METRIC_LABEL
from repro.report.claims import PROBE_CLAIM, beats_probe

METHOD_NOTE = (
    "Effect: mean paired difference A − B over (p, seed) pairs. t-interval: 95 % over the pairs, as if they "
    "were independent (they are not: nested L_p, shared teachers). Bootstrap: 95 % percentile interval of a "
    "paired bootstrap that resamples seeds and, within each seed, its test patients (both eyes together), "
    "recomputing both models' metric on the same images (2,000 replicates); '–' where the result files hold "
    "no per-image test predictions. Holm: verdict after Holm's adjustment over every pooled test in the "
    "table (each claim on its metric, and T1 claims on accuracy). MDE: the smallest effect this study would "
    "detect with 80 % power at two-sided α = 0.05, from the observed standard error; 'inconclusive: smaller "
    "than X' means an effect of X or more would probably have been seen, not that there is none.")

#: how a T1 row whose two metrics disagree is marked
DISAGREE = "≠ balanced accuracy"
# the README's columns: (header, task, on accuracy)
COMPACT_CELLS = (("T1 " + CLAIM_NAME["T1"], "T1", False), ("T1 accuracy", "T1", True),
                 (METRIC_LABEL["T2_top1"], "T2", False), ("T3 " + CLAIM_NAME["T3"], "T3", False))


def _pooled(claims: pd.DataFrame) -> pd.DataFrame:
    return claims[claims["scope"] != "one p"]


def _signed(v, digits: int = 3) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:+.{digits}f}"


def _ci(lo, hi, digits: int = 3) -> str:
    return "–" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _raw(r, accuracy: bool = False) -> str:
    """" (raw: …)" where a pooled row's raw verdict differs from its verdict after Holm."""
    raw, holm = (r["verdict_acc"], r["verdict_acc_holm"]) if accuracy else (r["verdict"], r["verdict_holm"])
    return f" (raw: {raw})" if holm and raw != holm else ""


def family_size(claims: pd.DataFrame) -> tuple[int, int]:
    """``(tests on each claim's metric, T1 tests on accuracy)`` in the Holm family (pooled rows with a test)."""
    if claims is None or claims.empty:
        return 0, 0
    rows = _pooled(claims)
    return int(np.isfinite(rows["p_holm"].to_numpy(dtype=float)).sum()), \
        int(np.isfinite(rows["p_holm_acc"].to_numpy(dtype=float)).sum())


def method_note(claims: pd.DataFrame) -> str:
    """:data:`METHOD_NOTE` and the size of this table's Holm family."""
    main, acc = family_size(claims)
    return (METHOD_NOTE + f" Here the family holds {main + acc} tests: {main} claims on their task's metric and "
            f"{acc} T1 claims on accuracy; rows with fewer than 2 pairs are not tested.")


# ---------------------------------------------------------------- the report's table

def claims_display(claims: pd.DataFrame, digits: int = 3, pooled_only: bool = True) -> pd.DataFrame:
    """The claims table as the report shows it: claim, task, comparison, pairs, effect, t-interval,
    bootstrap interval (with test sampling), raw and Holm verdicts (in words, with the MDE), verdict on
    accuracy (T1: raw, and Holm where it differs; "≠" marks disagreement with the main metric), MDE and
    the paper's effect. Rows at a single p (``pooled_only=False``) are descriptive: not Holm-adjusted,
    their verdict in words is the raw one."""
    if claims is None or claims.empty:
        return pd.DataFrame()
    rows = _pooled(claims) if pooled_only else claims
    one_p = (rows["scope"] == "one p").to_numpy()
    adjusted = "" if one_p.all() else " (Holm)" if not one_p.any() else " (Holm; at one p: raw)"

    def acc(r):
        if not r["verdict_acc"]:
            return "same metric" if r["task"] == "T2" else "–"
        text = f"{_signed(r['effect_acc'], digits)} {_ci(r['acc_low'], r['acc_high'], digits)} {r['reading_acc']}"
        return text + _raw(r, accuracy=True) + (f" ({DISAGREE})" if r["metrics_disagree"] else "")

    return pd.DataFrame({
        "claim": rows["claim"], "task": rows["task"], "comparison": rows["comparison"], "p": rows["p"],
        "pairs": rows["n_pairs"], "effect": rows["effect"].map(lambda v: _signed(v, digits)),
        "95% t-interval": [_ci(a, b, digits) for a, b in zip(rows["ci_low"], rows["ci_high"])],
        "95% bootstrap (seeds + test patients)": [_ci(a, b, digits) for a, b in zip(rows["boot_low"], rows["boot_high"])],
        "verdict (raw)": rows["verdict"],
        ("verdict" + adjusted if adjusted else "verdict (in words)"): list(rows["reading"]),
        "verdict on accuracy" + adjusted: [acc(r) for _, r in rows.iterrows()],
        "MDE (80 %)": rows["mde"].map(lambda v: "–" if not np.isfinite(v) else f"{v:.{digits}f}"),
        "paper effect": rows["paper_effect"].map(lambda v: _signed(v, digits)),
    }).reset_index(drop=True)


def _markdown_table(t: pd.DataFrame) -> str:
    head = "| " + " | ".join(t.columns) + " |\n|" + "---|" * len(t.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in t.itertuples(index=False))


def claims_markdown(claims: pd.DataFrame, digits: int = 3) -> str:
    """:func:`claims_display` as a GitHub markdown table followed by :func:`method_note`."""
    t = claims_display(claims, digits)
    if t.empty:
        return "_No claims: no results._"
    return _markdown_table(t) + "\n" + method_note(claims) + "\n"


# ---------------------------------------------------------------- the headline's lines

def _acc_text(r) -> str:
    """T1's verdict on accuracy after Holm in words, with its effect and interval, and the disagreement flag."""
    if not r["verdict_acc_holm"]:
        return ""
    flag = f" ({DISAGREE})" if r["metrics_disagree"] else ""
    ci = "" if not np.isfinite(r["acc_low"]) else " " + _ci(r["acc_low"], r["acc_high"])
    return f"; on accuracy **{r['reading_acc']}**{_raw(r, accuracy=True)}{flag}, effect {_signed(r['effect_acc'])}{ci}"


def claim_line(r) -> str:
    """One pooled claim in a line: the verdict after Holm in words (and the raw one where it differs), the
    effect with its t-interval and bootstrap interval, T1's verdict on accuracy, the paper's effect."""
    boot = "" if not np.isfinite(r["boot_low"]) else f", bootstrap {_ci(r['boot_low'], r['boot_high'])}"
    ci = "" if not np.isfinite(r["ci_low"]) else f" [t: {_ci(r['ci_low'], r['ci_high'])[1:-1]}]"
    paper = "" if not np.isfinite(r["paper_effect"]) else f"; paper {_signed(r['paper_effect'])}"
    return (f"- {r['claim']} ({r['comparison']}, {r['task']}, p = {r['p']}): **{r['reading']}**{_raw(r)}, "
            f"effect {_signed(r['effect'])}{ci}{boot}, {r['n_pairs']} pairs{_acc_text(r)}{paper}")


def _probe_line(label: str, v: dict[str, list[str]]) -> str:
    return (f"- {label}: beat the probe: {', '.join(v['supported']) or 'none'}; below it: "
            f"{', '.join(v['not supported']) or 'none'}; inconclusive: {', '.join(v['inconclusive']) or 'none'}")


def probe_lines(claims: pd.DataFrame) -> list[str]:
    """Which models beat the LR probe after Holm: per task on its metric, and T1 on accuracy too."""
    main, acc = beats_probe(claims), beats_probe(claims, accuracy=True)
    lines = []
    for task in CODES:
        if task in main:
            lines.append(_probe_line(f"{task} {CLAIM_NAME[task]}", main[task]))
        if task in acc:
            lines.append(_probe_line(f"{task} accuracy", acc[task]))
    return lines


def disagreements(claims: pd.DataFrame) -> list[str]:
    """The pooled T1 rows whose verdicts on balanced accuracy and accuracy differ, raw or after Holm."""
    if claims is None or claims.empty:
        return []
    rows = _pooled(claims)
    rows = rows[rows["metrics_disagree"].astype(bool)]
    return [f"{r['comparison']} ({r['claim']}): balanced accuracy {r['verdict']} (Holm: {r['verdict_holm']}), "
            f"accuracy {r['verdict_acc']} (Holm: {r['verdict_acc_holm']})" for _, r in rows.iterrows()]


# ---------------------------------------------------------------- the README's table

def _compact_cell(rows: pd.DataFrame, task: str, accuracy: bool) -> str:
    sel = rows[rows["task"] == task]
    if sel.empty or not sel.iloc[0]["n_pairs"]:
        return ""
    r = sel.iloc[0]
    if not accuracy:
        return f"{_signed(r['effect'])} {r['reading']}{_raw(r)}"
    if not r["verdict_acc"]:
        return ""
    return f"{_signed(r['effect_acc'])} {r['reading_acc']}{_raw(r, accuracy=True)}" + (" ≠" if r["metrics_disagree"] else "")


def _comparison_label(rows: pd.DataFrame) -> str:
    """"A − B", or "A − <B>" with the part that changes per task (single-task M1) in words."""
    comps = list(dict.fromkeys(rows["comparison"]))
    if len(comps) == 1:
        return comps[0]
    return comps[0].split(" − ")[0] + " − M1 (that task alone)"


def compact_markdown(claims: pd.DataFrame) -> str:
    """The README's claims table: one row per comparison of the paper's claims and the teacher-ensemble
    comparison, a cell per task ("effect verdict after Holm", inconclusive as "smaller than X", the raw
    verdict where it differs; T1 also on accuracy, "≠" where its verdicts differ from balanced accuracy's)
    and the paper's effect; then which models beat the LR probe."""
    if claims is None or claims.empty:
        return "_No claims: no results._\n"
    rows = _pooled(claims)
    claim_rows = rows[rows["claim"] != PROBE_CLAIM]
    head = ["claim", "A − B"] + [h for h, _, _ in COMPACT_CELLS] + ["paper (T1 acc / T2 / T3)"]
    body = []
    keys = claim_rows.assign(a=claim_rows["comparison"].str.split(" − ").str[0])
    for (claim, _), g in keys.groupby(["claim", "a"], sort=False):
        paper = [_signed(g.loc[g["task"] == t, "paper_effect"].iloc[0]) if (g["task"] == t).any() else "–"
                 for t in CODES]
        body.append([claim, _comparison_label(g)] + [_compact_cell(g, t, acc) for _, t, acc in COMPACT_CELLS]
                    + [" / ".join(paper)])
    table = _markdown_table(pd.DataFrame(body, columns=head))
    probe = probe_lines(rows)
    return table + ("\nAfter Holm, against the LR probe on the same frozen features:\n\n" + "\n".join(probe) + "\n"
                    if probe else "")
