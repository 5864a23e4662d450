"""Shared fixtures: the real ODIR-5K data, a tiny ODIR-layout copy for bad-input tests, a private cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from repro.errors import DataError
from repro.paths import resolve_data_root
from tiny_odir import make_tiny_odir

@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Path:
    """A temp folder for one test module's fixtures, removed when the module's tests are done: the suite's
    disk use stays near one module's (a notebook run under the paper profile writes over 1 GB) instead of
    growing to the sum of all of them. Test-scoped ``tmp_path`` folders go when their test passes
    (``tmp_path_retention_policy`` in pyproject.toml)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Point ``$REPRO_CACHE`` at a per-session temp folder so tests never touch the project's cache."""
    old = os.environ.get("REPRO_CACHE")
    os.environ["REPRO_CACHE"] = str(tmp_path_factory.mktemp("repro_cache"))
    yield
    if old is None:
        os.environ.pop("REPRO_CACHE", None)
    else:
        os.environ["REPRO_CACHE"] = old


@pytest.fixture(scope="session")
def odir_root() -> Path:
    """The real ODIR-5K data (skips the test when no data root is found)."""
    try:
        return resolve_data_root()
    except DataError as e:
        pytest.skip(f"ODIR-5K not available: {e}")


@pytest.fixture(scope="session")
def odir_dataset(odir_root):
    """The real data set, loaded once per session (manifest of 5,503 images)."""
    from repro.data.sources import load_dataset

    return load_dataset(odir_root)


@pytest.fixture()
def tiny_odir(odir_root, tmp_path) -> Path:
    """A fresh tiny ODIR-layout folder (10 patients, 20 real images, their real CSV rows) in tmp_path."""
    return make_tiny_odir(odir_root, tmp_path / "tiny_odir")


@pytest.fixture(scope="session")
def smoke_ctx(odir_root, tmp_path_factory):
    """A ``(smoke, p=15, seed=0)`` experiment on the real data, results and checkpoints in temp folders."""
    from repro.experiments.context import make_context

    base = tmp_path_factory.mktemp("smoke")
    return make_context("smoke", p=15, seed=0, data_root=odir_root, results_dir=base / "results",
                        runs_dir=base / "runs")


@pytest.fixture(scope="session")
def smoke_teachers(smoke_ctx):
    """The seven M1 teachers of ``smoke_ctx``, trained once per session."""
    from repro.experiments.m1 import run_m1_all

    return run_m1_all(smoke_ctx, progress=False)


@pytest.fixture()
def claims_table_calls(monkeypatch):
    """The keyword arguments of every ``claims_table`` call this test makes (counted wherever the report
    reaches it: ``repro.report.claims`` and ``repro.report.claim_set``)."""
    from repro.report import claim_set, claims

    calls = []
    real = claims.claims_table

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    for module in (claims, claim_set):
        monkeypatch.setattr(module, "claims_table", counted)
    return calls
