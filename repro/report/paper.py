"""The paper's published numbers (``results/paper/*.csv``, copied from ``../shared/paper``)."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from repro.paths import PROJECT_ROOT

PAPER_DIR = PROJECT_ROOT / "results" / "paper"




@lru_cache(maxsize=1)
def paper_tables() -> pd.DataFrame:
    """Long table: table, model, train_tasks, temperature, test_task, metric, p, value, note."""
    df = pd.read_csv(PAPER_DIR / "paper_tables.csv")
    df["train_tasks"] = df["train_tasks"].astype(str)
    return df


def paper_value(table: str, model: str, train_tasks: str, test_task: str, p: int, temperature=None) -> float:
    """One published cell, NaN where the paper has none."""
    df = paper_tables()
    sel = (df.table == table) & (df.model == model) & (df.train_tasks == train_tasks) & (df.test_task == test_task) & (df.p == p)
    if temperature is not None:
        sel &= df.temperature.astype(float) == float(temperature)
    vals = df.loc[sel, "value"]
    return float(vals.iloc[0]) if len(vals) else float("nan")


def paper_headlines() -> pd.DataFrame:
    return pd.read_csv(PAPER_DIR / "paper_headlines.csv")


def paper_confusion() -> pd.DataFrame:
    return pd.read_csv(PAPER_DIR / "paper_table6_confusion.csv", index_col=0)
