"""Checkpoints are data, not code: every kind of bad file ends in one CheckpointError (issue 11, item 1)."""

import os
from types import SimpleNamespace

import pytest
import torch

from repro.cli import main
from repro.data.captions import Vocab
from repro.errors import CheckpointError, MissingStageError
from repro.models.checkpoints import load_checkpoint, save_checkpoint
from repro.models.mtlnet import MTLNet

KW = dict(encoder="efficientnet_lite0", tasks=("coarse", "fine", "caption"), num_classes={"coarse": 3, "fine": 4},
          vocab_size=8, trainable=0, pretrained=False, taps=("block4", "block5", "block6"), neck_hidden=16,
          hidden=16, embed=8)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    model = MTLNet(**KW)
    prepared = SimpleNamespace(coarse_classes=("normal", "dr", "other"), fine_classes=("a", "b", "c", "d"),
                               vocab=Vocab.build([["normal", "fundus"], ["cataract"]], 1), split_hash="abc123")
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    save_checkpoint(path, model, prepared)
    return path, model


def test_good_checkpoint_round_trips(good):
    path, model = good
    loaded, payload = load_checkpoint(path)
    assert payload["split_hash"] == "abc123"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_a_checkpoint_loaded_again_comes_from_memory_as_its_own_copy(good, tmp_path, monkeypatch):
    """The second load of an unchanged file reads nothing; each caller gets its own model; loading never moves
    torch's random stream; a rewritten file is read again."""
    import shutil

    from repro.models import checkpoints

    path = tmp_path / "c.pt"
    shutil.copy(good[0], path)
    before = torch.random.get_rng_state()
    first, _ = load_checkpoint(path)
    assert torch.equal(torch.random.get_rng_state(), before)   # building the model drew no random numbers
    reads = []
    real = checkpoints.read_payload
    monkeypatch.setattr(checkpoints, "read_payload", lambda *a, **k: reads.append(a) or real(*a, **k))
    second, payload = load_checkpoint(path)
    assert reads == [] and payload["split_hash"] == "abc123"
    assert second is not first and all(torch.equal(v, first.state_dict()[k]) for k, v in second.state_dict().items())
    with torch.no_grad():
        next(second.parameters()).add_(1.0)   # training one copy leaves the others alone
    third, _ = load_checkpoint(path)
    assert torch.equal(next(third.parameters()), next(first.parameters()))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    load_checkpoint(path)
    assert len(reads) == 1


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model_config": _Evil(marker), "state_dict": {}}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="data, not code"):
        load_checkpoint(path)
    assert not marker.exists(), "loading a checkpoint executed code from it"
    # the same through the command line: one line, no traceback, nothing executed
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "plain_dict", "not_a_dict", "wrong_keys"])
def test_bad_files_give_one_clear_error(good, tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(os.urandom(2048))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = good[0].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "plain_dict":
        torch.save({"a": 1}, path)
    elif kind == "not_a_dict":
        torch.save([1, 2, 3], path)
    else:
        payload = torch.load(good[0], weights_only=True)
        del payload["vocab"]
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path)


def test_missing_checkpoint_names_the_stage(tmp_path):
    with pytest.raises(MissingStageError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("change", ["vocabulary", "classes", "encoder"])
def test_checkpoint_of_another_model_is_refused(good, tmp_path, change):
    payload = torch.load(good[0], weights_only=True)
    if change == "vocabulary":
        payload["model_config"]["vocab_size"] = 20           # weights are for a vocabulary of 8
    elif change == "classes":
        payload["coarse_classes"] = ["normal", "dr"]          # the head has 3 outputs
    else:
        payload["model_config"]["encoder"] = "resnet18"       # weights are EfficientNet-Lite0's
        payload["model_config"]["taps"] = None
        payload["model_config"]["neck_hidden"] = None
        payload["model_config"]["trainable"] = 1
    path = tmp_path / f"{change}.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=path.name):
        load_checkpoint(path)


def test_unknown_encoder_in_config_is_refused(good, tmp_path):
    payload = torch.load(good[0], weights_only=True)
    payload["model_config"]["encoder"] = "vit_huge"
    path = tmp_path / "vit.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="cannot build"):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pretrained frozen-trunk model (the quick layout, small heads) saved once: its trunk is left out."""
    torch.manual_seed(0)
    model = MTLNet(**{**KW, "pretrained": True})
    prepared = SimpleNamespace(coarse_classes=("normal", "dr", "other"), fine_classes=("a", "b", "c", "d"),
                               vocab=Vocab.build([["normal", "fundus"], ["cataract"]], 1), split_hash="abc123")
    folder = tmp_path_factory.mktemp("pretrained")
    before = torch.random.get_rng_state()
    path = save_checkpoint(folder / "p.pt", model, prepared)
    assert torch.equal(torch.random.get_rng_state(), before)   # building the reference trunk drew nothing
    return path, model


def test_a_pretrained_frozen_trunk_is_left_out_and_restored_bit_for_bit(pretrained, good, tmp_path):
    from repro.models.trunk_weights import RECORD_KEY, pretrained_trunk

    path, model = pretrained
    payload = torch.load(path, weights_only=True)
    trunk = [k for k in model.state_dict() if k.startswith("trunk.")]
    record = payload[RECORD_KEY]
    assert trunk and sorted(trunk) == record["keys"] and not set(trunk) & set(payload["state_dict"])
    assert record["weights"] == model.config["encoder_weights"] != "random"
    assert record["fingerprint"] == pretrained_trunk(model.config)[2]
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    # the whole file of the same model (as written before the trunk was left out) is four times as large
    # and still loads to the same model
    whole = tmp_path / "whole.pt"
    torch.save({**{k: v for k, v in payload.items() if k != RECORD_KEY},
                "state_dict": {k: v.detach() for k, v in model.state_dict().items()}}, whole)
    assert whole.stat().st_size > 4 * path.stat().st_size
    again, _ = load_checkpoint(whole)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())
    # a random trunk (pretrained=False) is not the weights file's: stored whole
    assert RECORD_KEY not in torch.load(good[0], weights_only=True)


def test_a_trained_or_foreign_trunk_is_stored_whole(tmp_path):
    from repro.models.trunk_weights import RECORD_KEY

    model = MTLNet(**{**KW, "pretrained": True})
    with torch.no_grad():
        next(model.trunk.parameters()).add_(1e-3)   # no longer the weights file's trunk
    prepared = SimpleNamespace(coarse_classes=("normal", "dr", "other"), fine_classes=("a", "b", "c", "d"),
                               vocab=Vocab.build([["normal"]], 1), split_hash="x")
    path = save_checkpoint(tmp_path / "t.pt", model, prepared)
    assert RECORD_KEY not in torch.load(path, weights_only=True)
    loaded, _ = load_checkpoint(path)
    assert torch.equal(next(loaded.trunk.parameters()), next(model.trunk.parameters()))


@pytest.mark.parametrize("fault", ["digest", "weights", "malformed", "both"])
def test_a_trunk_record_that_does_not_match_is_refused(pretrained, tmp_path, fault):
    from repro.models.trunk_weights import RECORD_KEY

    payload = torch.load(pretrained[0], weights_only=True)
    record = payload[RECORD_KEY]
    if fault == "digest":     # trained on other trunk weights than those installed here
        record["fingerprint"] = "0" * 12
        match = "was trained on the frozen trunk"
    elif fault == "weights":
        record["weights"] = "efficientnet-lite0@0000000000"
        match = "the file was altered"
    elif fault == "malformed":
        payload[RECORD_KEY] = {"keys": "trunk.stages", "weights": 3}
        match = f"'{RECORD_KEY}' entry must be"
    else:
        key = record["keys"][0]
        payload["state_dict"][key] = torch.zeros(1)
        match = "both stores and leaves out"
    path = tmp_path / f"{fault}.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert path.name in str(err.value)
