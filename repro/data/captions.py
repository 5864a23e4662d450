"""Captions as token ids (T3, docs/design.md §2): nltk tokenisation and a small vocabulary.

The tokenizer is nltk's Treebank tokenizer, which needs no downloaded data
(``punkt`` is not required): ``"age-related macular degeneration, drusen"`` ->
``["age-related", "macular", "degeneration", ",", "drusen"]``. The comma that
separates two keywords is a token of its own, so a decoded caption still shows
where one keyword ends and the next begins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from nltk.tokenize import TreebankWordTokenizer

from repro.errors import ConfigError
from repro.names import EOS, PAD, SOS, SPECIALS, UNK

_TOKENIZER = TreebankWordTokenizer()




def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of a caption (nltk Treebank tokenizer, data-free)."""
    if text is None:
        return []
    return _TOKENIZER.tokenize(str(text).lower())


class Vocab:
    """Token <-> id map with ``PAD=0, SOS=1, EOS=2, UNK=3``.

    Words are ordered by decreasing count in the corpus it was built on, ties
    alphabetically, so the same corpus always gives the same ids.
    """

    def __init__(self, itos: Sequence[str], min_count: int = 1):
        itos = list(itos)
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ConfigError(f"a vocabulary must start with the special tokens {SPECIALS}, got {itos[:4]}")
        if len(set(itos)) != len(itos):
            raise ConfigError("a vocabulary lists a token twice")
        self.itos = itos
        self.stoi = {t: i for i, t in enumerate(itos)}
        self.min_count = int(min_count)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1) -> "Vocab":
        """Vocabulary of the words that occur at least ``min_count`` times in ``token_lists``."""
        if min_count < 1:
            raise ConfigError(f"vocab min_count must be >= 1, got {min_count}")
        counts = Counter(t for toks in token_lists for t in toks)
        words = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + words, min_count=min_count)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, min_count={self.min_count})"

    def encode(self, tokens: Sequence[str], max_len: int = 14) -> list[int]:
        """``max_len + 1`` ids: the first ``max_len`` tokens, EOS, then PAD (no SOS: the decoder prepends it)."""
        ids = [self.stoi.get(t, UNK) for t in list(tokens)[:max_len]]
        return ids + [EOS] + [PAD] * (max_len - len(ids))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first EOS, without PAD and SOS (unknown ids read as ``<unk>``)."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, SOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return out

    def unknown_rate(self, token_lists: Iterable[Sequence[str]]) -> float:
        """Fraction of the tokens in ``token_lists`` that are not in the vocabulary (0.0 when empty)."""
        total = unknown = 0
        for toks in token_lists:
            for t in toks:
                total += 1
                unknown += t not in self.stoi
        return unknown / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON/checkpoint-ready form; :meth:`from_dict` restores it."""
        return {"itos": list(self.itos), "min_count": self.min_count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocab":
        try:
            return cls(d["itos"], min_count=d.get("min_count", 1))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"not a saved vocabulary (expected a dict with 'itos'): {e}") from None


def unknown_rate(vocab: Vocab, token_lists: Iterable[Sequence[str]]) -> float:
    """Fraction of tokens in ``token_lists`` not in ``vocab`` (functional form of :meth:`Vocab.unknown_rate`)."""
    return vocab.unknown_rate(token_lists)
