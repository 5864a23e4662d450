"""Captions as tokens (repro.data.captions): data-free tokenizer, vocabulary, encode/decode."""

import pytest

from repro.errors import ConfigError
from repro.data.labels import caption_text
from repro.data.captions import Vocab, tokenize
from repro.names import EOS, PAD, SOS, UNK


def test_tokenize_is_data_free_and_keeps_hyphenated_words():
    assert tokenize("Dry age-related macular degeneration, drusen") == \
        ["dry", "age-related", "macular", "degeneration", ",", "drusen"]
    assert tokenize("") == []


def test_specials_and_order():
    v = Vocab.build([["b", "a", "a"], ["c", "a", "b"]], min_count=2)
    assert v.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert (PAD, SOS, EOS, UNK) == (0, 1, 2, 3)
    assert v.itos[4:] == ["a", "b"]  # by count, then alphabetically; "c" below min_count
    assert len(v) == 6
    with pytest.raises(ConfigError):
        Vocab.build([["a"]], min_count=0)


def test_encode_layout():
    v = Vocab.build([["normal", "fundus"]])
    ids = v.encode(["normal", "fundus", "zebra"], max_len=5)
    assert ids == [v.stoi["normal"], v.stoi["fundus"], UNK, EOS, PAD, PAD]
    long = v.encode(["normal"] * 20, max_len=14)
    assert len(long) == 15 and long[-1] == EOS and SOS not in long
    assert v.decode([SOS] + ids) == ["normal", "fundus", "<unk>"]


def test_round_trip_on_real_captions(odir_dataset):
    token_lists = [tokenize(c) for c in odir_dataset.manifest["caption"]]
    v = Vocab.build(token_lists, min_count=1)
    for toks in token_lists:
        assert v.decode(v.encode(toks, 14)) == toks[:14]
    assert v.unknown_rate(token_lists) == 0.0
    restored = Vocab.from_dict(v.to_dict())
    assert restored == v and restored.stoi == v.stoi


def test_unknown_rate_counts_words_outside_vocab():
    v = Vocab.build([["a", "b"]])
    assert v.unknown_rate([["a", "x"], ["y", "b"]]) == pytest.approx(0.5)
    assert v.unknown_rate([]) == 0.0


def test_caption_pipeline_example():
    toks = tokenize(caption_text("laser spot，moderate non proliferative retinopathy"))
    assert toks == ["laser", "spot", ",", "moderate", "non", "proliferative", "retinopathy"]
