"""This project's numbers as tables, each beside the paper's (Tables 3–5)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .paper import TASK_METRIC, paper_value


def metric_of(result: dict[str, Any], test_task: str, split: str = "test") -> float:
    """The paper's metric for ``test_task`` (T1 accuracy, T2 top-1, T3 BLEU) from one result JSON."""
    _, task, key = TASK_METRIC[test_task]
    m = result.get("metrics", {}).get(split, {}).get(task)
    v = m.get(key) if m else None
    return float(v) if v is not None else float("nan")


def compare_rows(results: dict[str, dict], p: int, table: str, model_of=lambda name: "M1",
                 train_tasks_of=lambda name: name) -> pd.DataFrame:
    """One row per run name: ours vs the paper for T1/T2/T3 at fraction ``p``."""
    rows = []
    for name, res in results.items():
        row = {"run": name}
        for tt in ("T1", "T2", "T3"):
            row[(tt, "ours")] = metric_of(res, tt)
            row[(tt, "paper")] = paper_value(table, model_of(name), train_tasks_of(name), tt, p)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("run")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df
