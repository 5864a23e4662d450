"""Number formatting of report tables and their LaTeX export (docs/design.md §5)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from repro.report.results import BACC, STATS

# column groups holding counts (images, outcomes): whole numbers print without decimals
COUNT_GROUPS = ("count", "test images", "support", "n")


def fmt_num(v: float, digits: int) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _fmt_count(v: float, digits: int = 1) -> str:
    """A count: "162", not "162.000"; a non-whole mean over seeds keeps ``digits`` decimals."""
    if v is None or not np.isfinite(v):
        return "–"
    return f"{int(round(v))}" if float(v).is_integer() else f"{v:.{digits}f}"


def fmt(table: pd.DataFrame, digits: int | dict[str, int] = 3) -> pd.DataFrame:
    """Display form of a comparison table: per column group "mean ± std (n)" as ``ours`` beside
    ``paper`` (none for "T1 bacc"); other columns (e.g. ``chosen``) kept. Missing values read "–";
    counts (:data:`COUNT_GROUPS`) print whole numbers without decimals."""
    if table is None or table.empty or not isinstance(table.columns, pd.MultiIndex):
        return table
    out = {}
    for g in dict.fromkeys(table.columns.get_level_values(0)):
        d = digits.get(g, 3) if isinstance(digits, dict) else digits
        num = (lambda v, d=d: _fmt_count(v, d)) if g in COUNT_GROUPS else (lambda v, d=d: fmt_num(v, d))
        stats = list(table[g].columns)
        if "mean" in stats and "n" in stats:
            def ours(r, num=num):
                if not r["n"]:
                    return "–"
                sd = r["std"] if r["n"] >= 2 and np.isfinite(r["std"]) else None
                s = num(r["mean"])  # a count: "126 ± 21.7", "141.3 ± 41.1", "821 ± 0"
                if sd is not None:
                    s += f" ± {num(sd)}"
                return f"{s} ({int(r['n'])})"
            out[(g, "ours")] = table[g].apply(ours, axis=1)
            if "paper" in stats and g != BACC:  # balanced accuracy: the paper has none
                out[(g, "paper")] = table[(g, "paper")].map(num)
            for s in stats:
                if s not in STATS:
                    out[(g, s)] = table[(g, s)]
        else:
            for s in stats:
                col = table[(g, s)]
                out[(g, s)] = col.map(num) if col.dtype.kind == "f" else col
    res = pd.DataFrame(out, index=table.index)
    res.columns = pd.MultiIndex.from_tuples(res.columns)
    return res


def _missing(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, (float, np.floating)) and np.isnan(v))


def _whole(v) -> bool:
    return isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer()


def _label(v):
    """A row or column label as a reader wants it: ``1.0`` -> ``"1"``, ``0.5`` -> ``"0.5"``, a missing label blank."""
    if isinstance(v, tuple):
        return tuple(_label(x) for x in v)
    if _missing(v):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{int(v)}" if _whole(v) else f"{v:g}"
    return v


def _tidy_column(col: pd.Series, digits: int) -> pd.Series:
    """Strings for one column: whole numbers without decimals (a column of them as integers), other numbers
    with ``digits`` decimals, and blank where there is no value."""
    floats = [v for v in col if isinstance(v, (float, np.floating)) and np.isfinite(v)]
    whole = all(float(v).is_integer() for v in floats)

    def one(v):
        if _missing(v):
            return ""
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return "∞" if v > 0 else "−∞"
            return f"{int(v)}" if whole else f"{v:.{digits}f}"
        return v
    return col.map(one)


def _default_index(index: pd.Index) -> bool:
    """pandas' own row numbers (0, 1, 2, … without a name), which a reader does not need to see."""
    return (index.nlevels == 1 and index.name is None and index.dtype.kind in "iu"
            and list(index) == list(range(len(index))))


def tidy_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The display form of any table: every cell a string (:func:`_tidy_column`), labels such as ``1.0``
    as ``1``, pandas' row numbers dropped (the labels of a named index are kept)."""
    t = table.copy()
    t.columns = (pd.MultiIndex.from_tuples([_label(c) for c in t.columns], names=t.columns.names)
                 if isinstance(t.columns, pd.MultiIndex)
                 else pd.Index([_label(c) for c in t.columns], dtype=object, name=t.columns.name))
    for i in range(t.shape[1]):
        t.isetitem(i, _tidy_column(t.iloc[:, i], digits))
    if _default_index(t.index):
        return t.reset_index(drop=True)
    levels = [pd.Index([_label(v) for v in t.index.get_level_values(i)], dtype=object, name=t.index.names[i])
              for i in range(t.index.nlevels)]
    t.index = pd.MultiIndex.from_arrays(levels) if len(levels) > 1 else levels[0]
    return t


def table_html(table: pd.DataFrame, digits: int = 3) -> str:
    """HTML of :func:`tidy_table` inside a box that scrolls sideways when the table is wider than the page;
    no row numbers, blank where a value is missing."""
    t = tidy_table(table, digits)
    body = t.to_html(index=not _default_index(table.index), na_rep="", escape=True, border=0,
                     classes="report-table")
    return f'<div class="table-scroll" style="overflow-x: auto; max-width: 100%;">\n{body}\n</div>'


def setup_display() -> None:
    """Show every row, column and character of a table (pandas would cut long tables with "...")."""
    for opt in ("display.max_rows", "display.max_columns", "display.max_colwidth", "display.width"):
        pd.set_option(opt, None)


_LATEX_UNICODE = {"τ": r"$\tau$", "−": "$-$", "∈": r"$\in$", "≥": r"$\geq$", "★": r"$\star$", "±": r"$\pm$",
                  "≠": r"$\neq$", "–": "--", "…": r"\ldots{}", "<": "$<$", ">": "$>$"}


def _escape_caption(text: str) -> str:
    """Escape LaTeX specials in a caption (pandas does not); ``$…$`` math written on purpose is kept."""
    return re.sub(r"([%&_#])", r"\\\1", text)


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """Booktabs LaTeX of a (formatted) table; needs ``\\usepackage{booktabs}`` only."""
    t = table.copy()
    if isinstance(t.columns, pd.MultiIndex):
        t.columns = pd.MultiIndex.from_tuples([tuple(str(x) for x in c) for c in t.columns])
    tex = t.to_latex(escape=True, float_format="%.3f", na_rep="–", multicolumn=True, multicolumn_format="c",
                     multirow=False, caption=_escape_caption(caption), label=label,
                     index=not isinstance(t.index, pd.RangeIndex))
    for k, v in _LATEX_UNICODE.items():
        tex = tex.replace(k, v)
    return tex
