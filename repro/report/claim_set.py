"""The claims table of one report, computed once and handed to every place that shows it (issue 21).

:func:`repro.report.claims.claims_table` costs about 1 s per claim row where the result files hold
per-image test predictions (the paired patient bootstrap), so a report build computes it once
(:func:`claims_for`) and hands the :class:`ClaimSet` on: the LaTeX / CSV tables and the forest plot
(per p), the headline (pooled) and, through a file (:meth:`ClaimSet.save`), notebook 06, which runs in
its own kernel and reads it back (:func:`load_claims`). The file carries a fingerprint of the results
it was computed from, so read beside other results it is an error, never a silent mismatch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from repro.errors import ConfigError
from repro.io import read_json, write_json
from repro.names import CLAIM_COL
from repro.paths import project_relative
from repro.report.claims import N_BOOT, claims_table, stored_predictions

#: the file a report build leaves beside the report for notebook 06
CLAIMS_FILE = "claims.json"
#: how a :class:`ClaimSet` came to be (``origin``)
COMPUTED = "computed from the results"
READ = "read from {name} (computed once by the report build)"

# what the claims are computed from: the models, their pairs and their scores (and per-image predictions)
_KEY_COLUMNS = ("stage", "name", "p", "seed", "tau_task", "tau")
_SCORE_COLUMNS = tuple(CLAIM_COL.values()) + ("T1_acc",)


@dataclass(frozen=True, eq=False)
class ClaimSet:
    """The claims of one set of results: ``table`` has the pooled rows and a row per single p
    (``claims_table(df, per_p=True)``); ``fingerprint`` identifies those results; ``origin`` says
    whether it was computed here or read from a report build's file."""

    table: pd.DataFrame
    fingerprint: str
    origin: str = COMPUTED

    @property
    def pooled(self) -> pd.DataFrame:
        """The rows the report tests (pooled over p, and the τ claim): the headline and the summary."""
        return self.table[self.table["scope"] != "one p"] if not self.table.empty else self.table

    @property
    def per_p(self) -> pd.DataFrame:
        """The descriptive rows at each single p (not Holm-adjusted)."""
        return self.table[self.table["scope"] == "one p"] if not self.table.empty else self.table

    def save(self, path: str | Path) -> Path:
        """Write the table and its fingerprint as JSON (atomically); returns the path."""
        t = self.table
        return write_json(path, {"fingerprint": self.fingerprint, "columns": list(t.columns),
                                 "dtypes": {c: str(t[c].dtype) for c in t.columns},
                                 "rows": t.to_dict(orient="records")})


def fingerprint(df: pd.DataFrame | None) -> str:
    """SHA-256 of what the claims are computed from: each model's ``(stage, name, p, seed, τ)``, its scores
    and its per-image test predictions, in a fixed order."""
    h = hashlib.sha256()
    if df is None or df.empty:
        return h.hexdigest()
    keys = [c for c in _KEY_COLUMNS if c in df]
    rows = df.sort_values(keys, kind="stable")
    h.update(rows[keys + [c for c in _SCORE_COLUMNS if c in df]].to_csv(index=False).encode())
    if "result" in rows:
        for res in rows["result"]:
            h.update(json.dumps(stored_predictions(res), sort_keys=True, default=str).encode())
    return h.hexdigest()


def claims_for(df: pd.DataFrame, n_boot: int = N_BOOT) -> ClaimSet:
    """Compute the claims of ``df`` once: every row, pooled and per p (:func:`claims_table`)."""
    return ClaimSet(claims_table(df, per_p=True, n_boot=n_boot), fingerprint(df))


def read_build_file(path: str | Path, what: str, parameter: str, expected: Callable[[dict], str]) -> dict:
    """A file a report build left for notebook 06 (its parameter ``parameter``), read back: a ConfigError
    when it is missing or when its ``fingerprint`` is not ``expected(saved)``, the fingerprint of the
    results this report reads."""
    path = Path(path)
    shown = project_relative(path, siblings=True)
    if not path.is_file():
        raise ConfigError(f"no {what} {shown}: build the report with `python -m repro report`, or leave "
                          f"notebook 06's {parameter} unset to compute it in the notebook")
    saved = read_json(path)
    if saved.get("fingerprint") != expected(saved):
        raise ConfigError(f"{shown} was computed from other results than the ones this report reads; rebuild it "
                          f"with `python -m repro report`, or leave notebook 06's {parameter} unset")
    return saved


def load_claims(path: str | Path, df: pd.DataFrame) -> ClaimSet:
    """The claims a report build saved at ``path``, checked against the results ``df`` they must describe."""
    saved = read_build_file(path, "claims file", "claims_file", lambda _: fingerprint(df))
    table = pd.DataFrame(saved["rows"], columns=saved["columns"]).astype(saved["dtypes"])
    return ClaimSet(table, saved["fingerprint"], READ.format(name=Path(path).name))
