"""Progress in a log: every bar is plain lines, at most one every 30 s while it runs and one when it
ends, never a line redrawn with carriage returns (the feature-cache and image-cache bars included)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from repro import progress
from repro.progress import LOG_INTERVAL_S, PROGRESS_ENV, LogBar, tqdm_class


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_log_bar_prints_a_line_at_most_every_interval_and_one_at_the_end():
    clock, out = FakeClock(), io.StringIO()
    bar = LogBar(range(100), desc="trunk x orig 96px", unit="batch", file=out, clock=clock)
    for _ in bar:  # 100 batches of 1 s each
        clock.t += 1.0
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert LOG_INTERVAL_S == 30.0 and len(lines) == 100 // 30 + 1
    assert lines[0] == "trunk x orig 96px: 30/100 batch (30%), 30s, about 1m10s left"
    assert lines[2] == "trunk x orig 96px: 90/100 batch (90%), 1m30s, about 10s left"
    assert lines[-1] == "trunk x orig 96px: 100/100 batch (100%), done in 1m40s"


def test_log_bar_without_total_with_postfix_and_disabled():
    clock, out = FakeClock(), io.StringIO()
    with LogBar(desc="decoding", unit="img", file=out, clock=clock, interval=10) as bar:
        for _ in range(25):
            clock.t += 1.0
            bar.update(2)
            bar.set_postfix(loss="0.5")
    assert out.getvalue().splitlines() == ["decoding: 20 img, 10s, loss=0.5", "decoding: 40 img, 20s, loss=0.5",
                                           "decoding: 50 img, done in 25s, loss=0.5"]
    quiet = io.StringIO()
    for _ in LogBar(range(5), file=quiet, clock=clock, disable=True):
        clock.t += 100.0
    assert quiet.getvalue() == ""


def test_the_bar_class_follows_the_output(monkeypatch):
    from tqdm.std import tqdm

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # a script, not a Jupyter kernel
    monkeypatch.setenv(PROGRESS_ENV, "lines")
    assert tqdm_class() is LogBar
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    assert tqdm_class() is tqdm
    monkeypatch.delenv(PROGRESS_ENV)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file, not a terminal
    assert tqdm_class() is LogBar


def _bar_lines(err: str, prefix: str) -> list[str]:
    assert "\r" not in err
    return [line for line in err.splitlines() if line.startswith(prefix)]


def test_feature_cache_bar_in_a_log(tmp_path, monkeypatch, capsys):
    """The frozen-trunk feature cache writes one closing line per view to a log; a line per batch only
    when the interval allows it."""
    from repro.models.featcache import trunk_feature_cache
    from repro.models.mtlnet import MTLNet

    monkeypatch.delenv(PROGRESS_ENV, raising=False)  # captured stderr is not a terminal: lines
    model = MTLNet("efficientnet_lite0", tasks=("coarse",), num_classes={"coarse": 2, "fine": 2}, vocab_size=5,
                   trainable=0, pretrained=False).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    trunk_feature_cache(model, images, views=("orig", "hflip"), root=tmp_path / "a", batch_size=2)
    lines = _bar_lines(capsys.readouterr().err, "trunk efficientnet_lite0")
    assert [line.split(":")[0] for line in lines] == ["trunk efficientnet_lite0 orig 32px",
                                                       "trunk efficientnet_lite0 hflip 32px"]
    assert all(" 3/3 batch (100%), done in " in line for line in lines)

    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # every batch is due: one line each, then the end
    trunk_feature_cache(model, images, views=("orig",), root=tmp_path / "b", batch_size=2)
    lines = _bar_lines(capsys.readouterr().err, "trunk efficientnet_lite0 orig")
    assert [line.split(": ")[1].split(",")[0] for line in lines] == ["1/3 batch (33%)", "2/3 batch (67%)",
                                                                     "3/3 batch (100%)", "3/3 batch (100%)"]


def test_image_cache_bar_in_a_log(tmp_path, monkeypatch, capsys):
    from repro.data.imagecache import load_image_cache

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(np.full((40, 40, 3), 40 * i, dtype=np.uint8)).save(paths[-1])
    manifest = pd.DataFrame({"image": [q.name for q in paths], "path": [str(q) for q in paths]})
    arr, bad = load_image_cache(manifest, 16, cache_root=tmp_path / "cache", workers=1)
    assert arr.shape == (6, 16, 16, 3) and bad == []
    lines = _bar_lines(capsys.readouterr().err, "decoding 6 images at 16px")
    assert len(lines) == 1 and lines[0].startswith("decoding 6 images at 16px: 6/6 img (100%), done in ")


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (59, "59s"), (61, "1m01s"), (3725, "1h02m")])
def test_durations(seconds, text):
    assert progress.duration_text(seconds) == text
