"""Grad-CAM per head (repro.analysis.cam): the head wrapper, the maps, prediction colours, image choice, the Fig. 5 grid."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from repro.analysis import cam, cam_figures
from repro.models.encoders import EncoderSpec, TFLITE_MEAN, TFLITE_STD, preprocess
from repro.errors import MissingStageError
from repro.errors import ConfigError
from repro.models.mtlnet import MTLNet
from repro.names import EOS, PAD
from repro.data.captions import Vocab

NUM_CLASSES = {"coarse": 5, "fine": 7}
VOCAB = 20
SIZE = 96


def net(trainable=1, tasks=("coarse", "fine", "caption"), pretrained=True) -> MTLNet:
    torch.manual_seed(0)
    return MTLNet("efficientnet_lite0", tasks=tasks, num_classes=NUM_CLASSES, vocab_size=VOCAB,
                  trainable=trainable, pretrained=pretrained).eval()


def synthetic_fundus(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Fundus-like uint8 images: a reddish disc on black, a bright optic disc, a few dark and bright spots."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3))
        disc = (yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.22
        img[disc] = (170, 70, 30)
        cx, cy = rng.uniform(0.25, 0.75, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.006] = (250, 220, 120)
        for _ in range(4):
            sx, sy = rng.uniform(0.25, 0.75, 2)
            img[((yy - sy) ** 2 + (xx - sx) ** 2 < 0.002) & disc] = rng.choice([(60, 10, 5), (240, 230, 90)])
        out[i] = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
    return out


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: many small kernels, and on a shared 2-core machine 2 threads run ~5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> MTLNet:
    return net()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return synthetic_fundus(3)


# ---------------------------------------------------------------- target layer and head wrapper

def test_target_layer_is_last_stage_before_pooling(model):
    assert cam.target_layer(model) is model.top.stages["head"]
    frozen = net(trainable=0, tasks=("coarse",))
    assert len(frozen.top.stages) == 0 and cam.target_layer(frozen) is frozen.trunk.stages["head"]
    resnet = MTLNet("resnet18", tasks=("coarse",), num_classes=NUM_CLASSES, trainable=2, pretrained=False)
    assert cam.target_layer(resnet) is resnet.top.stages["layer4"]


@pytest.mark.parametrize("task", ["coarse", "fine"])
def test_head_output_is_exactly_the_model_output(model, images, task):
    x = preprocess(images, model.encoder_spec)
    with torch.no_grad():
        assert torch.equal(cam.HeadOutput(model, task)(x), model(x)[task])


def test_caption_score_is_the_greedy_caption_log_likelihood(model, images):
    x = preprocess(images, model.encoder_spec)
    with torch.no_grad():
        score = cam.HeadOutput(model, "caption", max_len=8)(x)
        ids, logits = model.decoder.greedy(model._features(x, False), 8)
    assert score.shape == (3, 1)
    logp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    expected = (logp * (ids != PAD)).sum(1)
    torch.testing.assert_close(score[:, 0], expected, rtol=1e-5, atol=1e-5)
    assert bool((score <= 0).all())


def test_head_output_rejects_a_missing_head():
    with pytest.raises(ConfigError, match="no 'caption' head"):
        cam.HeadOutput(net(tasks=("coarse",)), "caption")


# ---------------------------------------------------------------- maps

@pytest.mark.parametrize("task", ["coarse", "fine", "caption"])
def test_cam_maps_shape_range_and_no_side_effects(model, images, task):
    trunk_flags = [p.requires_grad for p in model.trunk.parameters()]
    maps = cam.cam_maps(model, images, task)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.ptp(maps) > 0.1
    assert np.isclose(maps.reshape(3, -1).max(1), 1.0, atol=1e-4).sum() >= 2  # min-max scaled per image
    assert not model.training
    assert [p.requires_grad for p in model.trunk.parameters()] == trunk_flags
    assert all(p.grad is None for p in model.parameters())


def test_cam_depends_on_the_target_class(model, images):
    a = cam.cam_maps(model, images, "coarse", targets=0)
    b = cam.cam_maps(model, images, "coarse", targets=[1, 1, 1])
    assert np.abs(a - b).max() > 0.05
    pred = model(preprocess(images, model.encoder_spec))["coarse"].argmax(1).tolist()
    np.testing.assert_allclose(cam.cam_maps(model, images, "coarse"), cam.cam_maps(model, images, "coarse", pred),
                               atol=1e-6)


def test_caption_target_can_be_any_caption(model, images):
    greedy = model.generate(preprocess(images, model.encoder_spec), max_len=15)
    np.testing.assert_allclose(cam.cam_maps(model, images, "caption"),
                               cam.cam_maps(model, images, "caption", targets=greedy.numpy()), atol=1e-6)
    other = np.full((3, 6), PAD)
    other[:, :3] = [5, 6, EOS]
    maps = cam.cam_maps(model, images, "caption", targets=other)
    assert maps.shape == (3, SIZE, SIZE) and np.isfinite(maps).all()
    with pytest.raises(ConfigError, match="caption targets"):
        cam.cam_maps(model, images, "caption", targets=other[:2])


def test_hooks_fire_with_a_completely_frozen_encoder(images):
    frozen = net(trainable=0, tasks=("coarse", "caption"))
    assert not any(p.requires_grad for p in cam.target_layer(frozen).parameters())
    for task in ("coarse", "caption"):
        maps = cam.cam_maps(frozen, images[:2], task)
        assert maps.shape == (2, SIZE, SIZE) and np.ptp(maps) > 0.1


def test_train_mode_is_restored(images):
    m = net(tasks=("coarse",)).train()
    cam.cam_maps(m, images[:1], "coarse")
    assert m.training


# ---------------------------------------------------------------- predictions and colours

class FixedModel(nn.Module):
    """Stands in for MTLNet with predictions fixed in advance (a constructed example)."""

    tasks = ("coarse", "fine", "caption")

    def __init__(self, coarse, fine, captions):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.encoder_spec = EncoderSpec("fixed", None, 1, TFLITE_MEAN, TFLITE_STD, "none")
        self.coarse, self.fine, self.captions = coarse, fine, torch.tensor(captions)

    def forward(self, x):
        n = len(x)
        return {"coarse": nn.functional.one_hot(torch.tensor(self.coarse[:n]), 3).float(),
                "fine": nn.functional.one_hot(torch.tensor(self.fine[:n]), 4).float()}

    def generate(self, x, from_trunk=False, max_len=15):
        return self.captions[: len(x), :max_len]


def test_prediction_colours_on_a_constructed_example():
    vocab = Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "mild", "nonproliferative", "retinopathy", "normal", "fundus",
                   "glaucoma"])
    meta = {"coarse_classes": ["normal", "dr", "glaucoma"], "fine_classes": ["normal fundus", "mild npdr",
                                                                             "glaucoma", "other:dr"],
            "vocab": vocab.to_dict(), "extra": {"profile": {"max_caption_len": 14}}}
    caps = [vocab.encode(t.split()) for t in ("mild nonproliferative retinopathy", "mild", "glaucoma")]
    model = FixedModel(coarse=[1, 0, 2], fine=[1, 3, 0], captions=caps)
    truth = [{"coarse": "dr", "fine": "mild npdr", "caption": "mild nonproliferative retinopathy"},
             {"coarse": "dr", "fine": "mild npdr", "caption": "mild nonproliferative retinopathy"},
             {"coarse": "glaucoma", "fine": "glaucoma", "caption": "normal fundus"}]
    res = cam_figures.predictions(model, synthetic_fundus(3, 16), meta, truth)
    colors = [[r[t]["color"] for t in ("coarse", "fine", "caption")] for r in res]
    assert colors == [["green", "green", "green"], ["red", "red", "yellow"], ["green", "red", "red"]]
    assert res[0]["caption"]["bleu"] == pytest.approx(1.0) and res[0]["caption"]["correct"] is True
    assert res[1]["caption"]["correct"] == "partial" and 0 < res[1]["caption"]["bleu"] < 0.5
    assert res[2]["caption"]["bleu"] == 0.0 and res[2]["caption"]["correct"] is False
    assert res[1]["coarse"] == {"pred": "normal", "true": "dr", "correct": False, "color": "red"}
    assert res[2]["fine"]["pred"] == "normal fundus"
    no_truth = cam_figures.predictions(model, synthetic_fundus(3, 16), meta)
    assert no_truth[0]["caption"]["pred"] == "mild nonproliferative retinopathy"
    assert no_truth[0]["coarse"]["color"] is None


@pytest.mark.parametrize("bleu,color", [(1.0, "green"), (0.5, "green"), (0.49, "yellow"), (1e-9, "yellow"),
                                        (0.0, "red")])
def test_caption_color_thresholds(bleu, color):
    assert cam_figures.caption_color(bleu) == color


def test_predictions_of_a_real_model_with_prepared_like_meta(model, images):
    meta = SimpleNamespace(coarse_classes=[f"c{i}" for i in range(5)], fine_classes=[f"f{i}" for i in range(7)],
                           vocab=Vocab(["<pad>", "<sos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(16)]),
                           max_caption_len=6)
    res = cam_figures.predictions(model, images, meta)
    assert len(res) == 3 and all(set(r) == {"coarse", "fine", "caption"} for r in res)
    assert all(r["coarse"]["pred"] in meta.coarse_classes and len(r["caption"]["pred"].split()) <= 7 for r in res)


# ---------------------------------------------------------------- image choice

def fake_prepared(seed=0):
    rng = np.random.default_rng(seed)
    n = 60
    manifest = pd.DataFrame({
        "image": [f"{i}_left.jpg" for i in range(n)],
        "coarse": rng.choice(["normal", "dr", "amd", "glaucoma"], n),
        "split": rng.choice(["train", "val", "test"], n, p=[0.5, 0.2, 0.3]),
    })
    manifest.loc[manifest.index[:2], ["coarse", "split"]] = [["other", "train"], ["other", "val"]]
    return SimpleNamespace(
        manifest=manifest, coarse_classes=("normal", "dr", "amd", "glaucoma", "other"),
        indices=lambda split: np.flatnonzero(manifest["split"].to_numpy() == split))


def test_select_images_one_test_image_per_class_with_a_fixed_seed():
    pr = fake_prepared()
    idx = cam_figures.select_images(pr, per_class=1, seed=0)
    m = pr.manifest.iloc[idx]
    assert list(m["coarse"]) == ["normal", "dr", "amd", "glaucoma"]  # "other" has no test image
    assert (m["split"] == "test").all()
    assert np.array_equal(idx, cam_figures.select_images(pr, per_class=1, seed=0))
    two = cam_figures.select_images(pr, per_class=2, seed=3)
    assert len(two) == 8 and (pr.manifest.iloc[two]["split"] == "test").all()
    draws = {tuple(cam_figures.select_images(pr, seed=s)) for s in range(5)}
    assert len(draws) > 1
    with pytest.raises(ConfigError):
        cam_figures.select_images(pr, per_class=0)


# ---------------------------------------------------------------- panels and the figure

def test_build_panels_and_figure_axes(model, images):
    truth = [{"image": f"img{i}.jpg", "coarse": "normal", "fine": "normal fundus", "caption": "normal fundus"}
             for i in range(2)]
    meta = {"coarse_classes": [f"c{i}" for i in range(5)], "fine_classes": [f"f{i}" for i in range(7)],
            "vocab": Vocab(["<pad>", "<sos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(16)]).to_dict()}
    coarse_only = net(tasks=("coarse",))
    panels = cam_figures.build_panels({"M1 p=15": model, "T1 only": coarse_only}, images[:2], meta, truth,
                              tasks=("coarse", "caption"))
    assert panels.cams["coarse"].shape == (2, 2, SIZE, SIZE) and np.isfinite(panels.cams["coarse"]).all()
    assert np.isnan(panels.cams["caption"][:, 1]).all() and np.isfinite(panels.cams["caption"][:, 0]).all()
    assert set(panels.preds[0][0]) == {"coarse", "fine", "caption"} and set(panels.preds[1][1]) == {"coarse"}
    table = panels.table()
    assert len(table) == 4 and {"image", "model", "T1", "T1_correct", "T3_bleu"} <= set(table.columns)

    fig = cam_figures.gradcam_figure(panels, task="coarse")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2 * (2 + 1)
    fig = cam_figures.gradcam_figure(panels, task="caption", show_image=False)
    assert len(fig.axes) == 2 * 2
    with pytest.raises(ConfigError, match="no Grad-CAM maps"):
        cam_figures.gradcam_figure(panels, task="fine")
    matplotlib.pyplot.close("all")


def test_figure_of_synthetic_panels_and_saving(tmp_path):
    rng = np.random.default_rng(0)
    rows, cols = 3, 4
    judge = cam_figures.judge_prediction
    truth = [{"image": f"{r}.jpg", "coarse": "dr", "fine": "moderate non proliferative retinopathy",
              "caption": "moderate non proliferative retinopathy , hypertensive retinopathy"} for r in range(rows)]
    preds = [[{"coarse": judge("dr", truth[r], "coarse"), "fine": judge("normal fundus", truth[r], "fine"),
               "caption": judge("moderate retinopathy", truth[r], "caption")} for _ in range(cols)]
             for r in range(rows)]
    cams = rng.random((rows, cols, 32, 32)).astype(np.float32)
    cams[0, 0] = 0.0  # an empty map is labelled, not overlaid
    panels = cam_figures.Panels(synthetic_fundus(rows, 32), truth, [f"M{c}" for c in range(cols)], {"coarse": cams}, preds)
    fig = cam_figures.gradcam_figure(panels)
    assert len(fig.axes) == rows * (cols + 1)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("empty map" in t for t in texts)
    out = cam_figures.save_figure(fig, tmp_path / "sub" / "g.png", dpi=40)
    assert out.is_file() and out.stat().st_size > 0 and not list(out.parent.glob(".*"))
    matplotlib.pyplot.close("all")


# ---------------------------------------------------------------- checkpoints for the notebook

def test_load_cam_models_reports_missing_p(tmp_path, monkeypatch):
    from repro.experiments import context as experiment
    from repro.models.checkpoints import save_checkpoint

    prepared = SimpleNamespace(coarse_classes=("a", "b"), fine_classes=("x", "y"), split_hash="h1",
                               vocab=Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "w"]))

    def make_context(profile, p, seed, data_root=None, results_dir=None):
        return SimpleNamespace(prepared=prepared, results_dir=tmp_path / "results" / profile, device="cpu",
                               checkpoint_path=lambda stage, name: tmp_path / f"p{p}" / f"{stage}-{name}.pt")

    monkeypatch.setattr(experiment, "make_context", make_context)
    with pytest.raises(MissingStageError, match="01_m1_teachers.*03_m3_unlabeled"):
        cam_figures.load_cam_models("smoke", [15, 70], seed=0)

    small = MTLNet("efficientnet_lite0", tasks=("coarse", "fine", "caption"), num_classes={"coarse": 2, "fine": 2},
                   vocab_size=5, trainable=1, pretrained=False)
    for stage, name in (("m1", "T1+T2+T3"), ("m3", "single")):
        save_checkpoint(tmp_path / "p15" / f"{stage}-{name}.pt", small, prepared)
    cm = cam_figures.load_cam_models("smoke", [15, 70], seed=0)
    assert list(cm.models) == ["M1 p=15", "M3 p=15"] and cm.ps == [15] and list(cm.missing) == [70]
    assert "p=70" in cm.note and "notebooks 01-03" in cm.note
    assert cm.results_dir == tmp_path / "results" / "smoke"
    assert Path(cm.checkpoints["M3 p=15"]).name == "m3-single.pt"

    prepared.split_hash = "other"
    with pytest.raises(ConfigError, match="another split"):
        cam_figures.load_cam_models("smoke", [15], seed=0)


def test_a_hook_that_never_fires_is_a_clear_error(model, images, monkeypatch):
    monkeypatch.setattr(cam, "target_layer", lambda m: nn.Identity())
    with pytest.raises(RuntimeError, match="hooks on the target layer fired 0"):
        cam.cam_maps(model, images[:1], "coarse")
