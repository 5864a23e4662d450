"""MTLNet heads and outputs, the caption decoder (teacher forcing, greedy decoding), the frozen-trunk cache."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

from repro.names import TASKS
from repro.models.encoders import preprocess
from repro.errors import ConfigError
from repro.models.mtlnet import CaptionDecoder, MLPHead, MTLNet
from repro.names import EOS, PAD, SOS

SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(TASKS, r)]
NUM_CLASSES = {"coarse": 5, "fine": 7}
VOCAB = 11


def small_net(tasks=TASKS, trainable=1, **kw) -> MTLNet:
    return MTLNet("efficientnet_lite0", tasks=tasks, num_classes=NUM_CLASSES, vocab_size=VOCAB,
                  trainable=trainable, pretrained=False, **kw)


def images(n=3, size=64, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def captions(n=3, t=6, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (n, t), generator=g)


# ---------------------------------------------------------------- MTLNet outputs

def test_seven_task_subsets():
    assert len(SUBSETS) == 7


@pytest.mark.parametrize("tasks", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_output_shapes_for_every_task_subset(tasks):
    torch.manual_seed(0)
    net = small_net(tasks).eval()
    assert set(net.heads) == set(tasks) and net.tasks == tuple(t for t in TASKS if t in tasks)
    x, cap = images(), captions()
    with torch.no_grad():
        for from_trunk in (False, True):
            inp = net.trunk_features(x) if from_trunk else x
            out = net(inp, captions=cap, from_trunk=from_trunk)
            assert isinstance(out, dict) and set(out) == set(tasks)
            for t in ("coarse", "fine"):
                if t in tasks:
                    assert out[t].shape == (3, NUM_CLASSES[t])
            if "caption" in tasks:
                assert out["caption"].shape == (3, 6, VOCAB)
                assert "caption" not in net(inp, from_trunk=from_trunk)
                assert net.generate(inp, from_trunk=from_trunk, max_len=5).shape == (3, 5)
            else:
                with pytest.raises(ConfigError, match="no caption head"):
                    net.generate(inp, from_trunk=from_trunk)


def test_mlp_head_architecture():
    head = MLPHead(1280, 60)
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Linear"]
    assert head.net[0].out_features == 512 and head.net[2].out_features == 60


def test_bad_model_settings_are_config_errors():
    with pytest.raises(ConfigError, match="subset"):
        small_net(("coarse", "segmentation"))
    with pytest.raises(ConfigError, match="num_classes"):
        MTLNet(tasks=("fine",), num_classes={"coarse": 5}, pretrained=False)
    with pytest.raises(ConfigError, match="vocab_size"):
        MTLNet(tasks=("caption",), pretrained=False)
    with pytest.raises(ConfigError, match="decoder cell"):
        small_net(("caption",), decoder="transformer")


def test_cached_trunk_path_equals_full_forward():
    torch.manual_seed(0)
    net = small_net(trainable=1).eval()
    x, cap = images(4), captions(4)
    with torch.no_grad():
        full = net(x, captions=cap)
        cached = net(net.trunk_features(x), captions=cap, from_trunk=True)
        half = net(net.trunk_features(x).half(), captions=cap, from_trunk=True)
    for t in TASKS:
        torch.testing.assert_close(cached[t], full[t], atol=1e-5, rtol=1e-5)
        assert half[t].dtype == torch.float32
    assert net.trunk_features(x).shape == (4, 320, 2, 2)


def test_frozen_trunk_batchnorm_stays_in_eval_after_train():
    net = small_net(trainable=2)
    net.train()
    bns = [m for m in net.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in net.trunk.modules())
    assert all(m.training for m in net.top.modules())
    before = [b.running_mean.clone() for b in bns]
    net(images(4))["coarse"].sum().backward()
    assert all(torch.equal(a, b.running_mean) for a, b in zip(before, bns))
    assert all(p.grad is None for p in net.trunk.parameters())
    assert all(p.grad is not None for p in net.top.parameters())


def test_trainable_all_has_no_trunk_and_trains_everything():
    net = small_net(("coarse",), trainable="all")
    assert not net.has_trunk and all(p.requires_grad for p in net.parameters())
    net.eval()
    x = images(2)
    with torch.no_grad():
        torch.testing.assert_close(net(x, from_trunk=True)["coarse"], net(x)["coarse"])


def test_config_rebuilds_without_pretrained_weights(monkeypatch):
    net = small_net(trainable=1, decoder="gru").eval()
    cfg = net.config

    def no_weights(*a, **k):
        raise AssertionError("from_config must not load pretrained weights")

    monkeypatch.setattr("repro.models.encoders.wheel_weights_path", no_weights)
    again = MTLNet.from_config(cfg).eval()
    again.load_state_dict(net.state_dict())
    assert again.config == cfg and again.trainable == 1
    x, cap = images(2), captions(2)
    with torch.no_grad():
        a, b = net(x, captions=cap), again(x, captions=cap)
    for t in TASKS:
        torch.testing.assert_close(a[t], b[t])


# ---------------------------------------------------------------- caption decoder

def tiny_decoder(cell="lstm", dropout=0.0, seed=0) -> CaptionDecoder:
    torch.manual_seed(seed)
    return CaptionDecoder(feat_dim=16, vocab_size=VOCAB, embed=8, hidden=12, cell=cell, dropout=dropout)


def manual_logits(dec: CaptionDecoder, feats, caps, use_true) -> torch.Tensor:
    """Step-by-step reference: step 0 reads SOS, step i the true token if use_true[i-1] else the own argmax."""
    state = dec.init_state(feats)
    tok = torch.full((caps.shape[0], 1), SOS, dtype=torch.long)
    out = []
    for i in range(caps.shape[1]):
        if i > 0:
            tok = caps[:, i - 1:i] if use_true[i - 1] else out[-1].argmax(-1, keepdim=True)
        y, state = dec.rnn(dec.embed(tok), state)
        out.append(dec.out(y)[:, 0])
    return torch.stack(out, 1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_eval_forward_is_teacher_forced(cell):
    dec = tiny_decoder(cell, dropout=0.1).eval()
    f, cap = torch.randn(3, 16), captions(3, 7)
    with torch.no_grad():
        a = dec(f, cap, teacher_forcing=0.0)
        b = dec(f, cap, teacher_forcing=0.5)
        ref = manual_logits(dec, f, cap, [True] * 6)
    assert a.shape == (3, 7, VOCAB)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, ref, atol=1e-6, rtol=1e-5)


def test_train_without_teacher_forcing_feeds_own_predictions():
    dec = tiny_decoder("lstm").train()
    f, cap = torch.randn(4, 16), captions(4, 7, seed=3)
    with torch.no_grad():
        free = dec(f, cap, teacher_forcing=0.0)
        forced = dec(f, cap, teacher_forcing=1.0)
        own = manual_logits(dec, f, cap, [False] * 6)
    torch.testing.assert_close(free, own, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(forced, manual_logits(dec, f, cap, [True] * 6), atol=1e-6, rtol=1e-5)
    # both read SOS at step 0; they part where the own prediction differs from the true token
    torch.testing.assert_close(free[:, 0], forced[:, 0])
    assert (free[:, :-1].argmax(-1) != cap[:, :-1]).any()
    assert not torch.allclose(free[:, 1:], forced[:, 1:])


def test_train_teacher_forcing_is_one_draw_per_step_from_torch_rng():
    dec = tiny_decoder("gru").train()
    f, cap = torch.randn(5, 16), captions(5, 9, seed=1)
    torch.manual_seed(123)
    with torch.no_grad():
        a = dec(f, cap, teacher_forcing=0.5)
    torch.manual_seed(123)
    use_true = (torch.rand(8) < 0.5).tolist()
    assert 0 < sum(use_true) < 8
    torch.manual_seed(123)
    with torch.no_grad():
        b = dec(f, cap, teacher_forcing=0.5)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, manual_logits(dec, f, cap, use_true), atol=1e-6, rtol=1e-5)


def test_teacher_forced_train_logits_get_gradients():
    dec = tiny_decoder("lstm", dropout=0.1).train()
    f = torch.randn(3, 16, requires_grad=True)
    dec(f, captions(3, 5), teacher_forcing=0.5).sum().backward()
    assert f.grad is not None and dec.init_c.weight.grad is not None


def test_greedy_stops_when_every_sequence_has_eos():
    dec = tiny_decoder().eval()
    with torch.no_grad():
        dec.out.weight.zero_()
        dec.out.bias.zero_()
        dec.out.bias[EOS] = 10.0
    calls = []
    run = dec._run
    dec._run = lambda tok, state: calls.append(1) or run(tok, state)
    with torch.no_grad():
        ids, logits = dec.greedy(torch.randn(3, 16), max_len=6)
    assert ids.shape == (3, 6) and logits.shape == (3, 6, VOCAB)
    assert (ids[:, 0] == EOS).all() and (ids[:, 1:] == PAD).all()
    assert len(calls) == 1 and (logits[:, 1:] == 0).all()


def test_greedy_pads_after_each_sequences_own_eos():
    """Sequence b emits token 4+b until its step stop[b], then EOS: ids are PAD after EOS, decoding stops at max(stop)."""
    dec = tiny_decoder().eval()
    stop = torch.tensor([1, 3, 0])
    seen = []

    def scripted(tok, state):
        i = len(seen)
        seen.append(tok.reshape(-1).clone())
        logits = torch.zeros(3, 1, VOCAB)
        for b in range(3):
            logits[b, 0, EOS if i == stop[b] else 4 + b] = 1.0
        return logits, state

    dec._run = scripted
    ids, _ = dec.greedy(torch.randn(3, 16), max_len=8)
    assert len(seen) == 4
    assert (seen[0] == SOS).all() and seen[1].tolist() == [4, 5, EOS]
    assert ids.tolist() == [
        [4, EOS, PAD, PAD, PAD, PAD, PAD, PAD],
        [5, 5, 5, EOS, PAD, PAD, PAD, PAD],
        [EOS, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
    ]


def test_step_api_reproduces_greedy():
    """``caption_init`` + ``decoder.step`` (used by custom loops such as ensemble decoding) match ``generate``."""
    torch.manual_seed(1)
    net = small_net(("coarse", "caption")).eval()
    x = images(3)
    with torch.no_grad():
        want = net.generate(x, max_len=6)
        state = net.caption_init(x)
        tok, got = torch.full((3,), SOS, dtype=torch.long), []
        for _ in range(6):
            logits, state = net.decoder.step(tok, state)
            tok = logits.argmax(-1)
            got.append(tok)
    got = torch.stack(got, 1)
    after_eos = (got == EOS).long().cumsum(1) - (got == EOS).long() > 0
    torch.testing.assert_close(want, got.masked_fill(after_eos, PAD))


def test_greedy_runs_to_max_len_without_eos():
    dec = tiny_decoder().eval()
    with torch.no_grad():
        dec.out.bias[EOS] = -1e4
        ids, logits = dec.greedy(torch.randn(2, 16), max_len=5)
    assert (ids != PAD).all() and (ids != EOS).all() and (logits != 0).any(-1).all()


# ---------------------------------------------------------------- frozen-trunk feature cache

@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_feature_cache_computes_once_and_matches_the_trunk(cache_env, monkeypatch):
    from repro.models import featcache

    torch.manual_seed(0)
    net = small_net(("coarse",), trainable=1).eval()
    imgs = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    feats = featcache.trunk_feature_cache(net, imgs, batch_size=2, cache_key="unit", progress=False)
    assert set(feats) == {"orig", "hflip"}
    files = sorted(cache_env.glob("features/*/*.npy"))
    assert [p.name for p in files] == ["hflip.npy", "orig.npy"]
    assert "efficientnet_lite0-k1-" in str(files[0]) and "64px-unit" in str(files[0])

    with torch.no_grad():
        want = net.trunk_features(preprocess(imgs, net.encoder_spec)).numpy()
        want_flip = net.trunk_features(preprocess(imgs[:, :, ::-1].copy(), net.encoder_spec)).numpy()
    assert feats["orig"].shape == (5, 320, 2, 2) and feats["orig"].dtype == np.float16
    np.testing.assert_allclose(feats["orig"], want, atol=2e-2, rtol=2e-3)
    np.testing.assert_allclose(feats["hflip"], want_flip, atol=2e-2, rtol=2e-3)
    assert not np.allclose(feats["orig"], feats["hflip"], atol=1e-2)

    mtimes = [os.stat(p).st_mtime_ns for p in files]

    def no_compute(*a, **k):
        raise AssertionError("cached features were recomputed")

    monkeypatch.setattr(featcache, "_compute", no_compute)
    again = featcache.trunk_feature_cache(net, imgs, batch_size=2, cache_key="unit", progress=False)
    for v in ("orig", "hflip"):
        np.testing.assert_array_equal(again[v], feats[v])
    assert [os.stat(p).st_mtime_ns for p in files] == mtimes
    assert not list(cache_env.glob("features/*/.*.tmp"))

    with torch.no_grad():
        net.trunk.stages["stem"][0].weight.mul_(2)
    with pytest.raises(AssertionError, match="recomputed"):
        featcache.trunk_feature_cache(net, imgs, cache_key="unit", progress=False)


def test_feature_cache_refuses_trainable_all(cache_env):
    from repro.models.featcache import trunk_feature_cache

    net = small_net(("coarse",), trainable="all")
    imgs = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="no frozen trunk"):
        trunk_feature_cache(net, imgs, cache_key="x", progress=False)
    with pytest.raises(ConfigError, match="unknown view"):
        trunk_feature_cache(small_net(("coarse",)), imgs, views=("vflip",), cache_key="x", progress=False)


def test_fold_batchnorm_is_the_same_function_without_batchnorm():
    from repro.models.encoders import fold_batchnorm

    torch.manual_seed(0)
    net = small_net(("coarse",), trainable=1).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that folding has work to do
        for m in net.trunk.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(net.trunk)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.trunk.modules())
    assert n_bn > 10 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = preprocess(np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8), net.encoder_spec)
    with torch.inference_mode():
        want, got = net.trunk(x), folded(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.trunk.modules()) == n_bn  # the original is kept


def test_feature_cache_with_folded_batchnorm_has_its_own_folder_and_record(cache_env):
    from repro.device import usable_cores
    from repro.models.featcache import FOLD_TAG, trunk_feature_cache

    torch.manual_seed(0)
    net = small_net(("coarse",), trainable=1).eval()
    imgs = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    plain = trunk_feature_cache(net, imgs, views=("orig",), cache_key="unit", progress=False)
    folded = trunk_feature_cache(net, imgs, views=("orig",), cache_key="unit", progress=False, fold_bn=True)
    assert folded.folder != plain.folder and folded.folder.name.endswith(f"-{FOLD_TAG}-unit")
    np.testing.assert_allclose(np.asarray(folded["orig"], np.float32), np.asarray(plain["orig"], np.float32),
                               rtol=2e-3, atol=2e-3)
    rec, rec_plain = folded.record(), plain.record()
    assert rec["batchnorm_folded"] is True and rec_plain["batchnorm_folded"] is False
    assert rec["views"] == ["orig"] and rec["precision"] == "fp32" and rec["build_s"] >= 0
    assert rec["build_s"] == rec["build_s_per_view"]["orig"] and rec["images"] == [4, 64, 64, 3]
    assert rec["threads"] == usable_cores() and torch.get_num_threads() >= 1


def test_feature_cache_is_the_same_whatever_the_number_of_cores(tmp_path, monkeypatch):
    """Each batch runs on one torch thread (batches in parallel, one per core), so a cache built with one or
    with three workers holds the same bytes: the features do not follow the machine's core count."""
    from repro.models import featcache

    torch.manual_seed(0)
    net = small_net(("coarse",), trainable=1).eval()
    imgs = np.random.default_rng(2).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    got = {}
    for cores in (1, 3):
        monkeypatch.setattr(featcache, "usable_cores", lambda n=cores: n)
        feats = featcache.trunk_feature_cache(net, imgs, views=("orig",), cache_key="unit", batch_size=2,
                                              root=tmp_path / f"c{cores}", progress=False, fold_bn=True)
        assert feats.record()["threads"] == cores
        got[cores] = np.asarray(feats["orig"])
    np.testing.assert_array_equal(got[1], got[3])
