"""nbval runs of the notebooks (``pytest --nbval-lax notebooks``): the smoke profile, results in a temp folder.

The notebooks read ``REPRO_PROFILE`` in their parameters cell; results and
checkpoints go to a throw-away folder so that a test run never touches the
committed ``results/``. Notebooks run in file order, so each finds what the
earlier ones wrote.
"""

import os
import shutil
import tempfile

_tmp = tempfile.mkdtemp(prefix="repro-nbval-")
os.environ.setdefault("REPRO_PROFILE", "smoke")
os.environ.setdefault("REPRO_RESULTS", os.path.join(_tmp, "results"))
os.environ.setdefault("REPRO_RUNS", os.path.join(_tmp, "runs"))
os.environ.setdefault("REPRO_FIGURES", os.path.join(_tmp, "figures"))
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_tmp, ignore_errors=True)
