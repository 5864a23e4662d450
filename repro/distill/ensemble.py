"""Ensemble decoding: greedy captions from the mean of several decoders' step probabilities (docs/design.md §4)."""

from __future__ import annotations

import torch

from repro.names import EOS, PAD, SOS


def ensemble_greedy(models, x, from_trunk: bool, max_len: int) -> torch.Tensor:
    """Greedy decoding where each next token maximises the mean of the decoders' step probabilities."""
    B = x.shape[0]
    states = [m.caption_init(x, from_trunk=from_trunk) for m in models]
    tok = torch.full((B,), SOS, dtype=torch.long, device=x.device)
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    out = torch.full((B, max_len), PAD, dtype=torch.long, device=x.device)
    for i in range(max_len):
        probs = 0
        for j, m in enumerate(models):
            logits, states[j] = m.decoder.step(tok, states[j])
            probs = probs + torch.softmax(logits.float(), -1)
        tok = probs.argmax(-1)
        out[:, i] = torch.where(done, torch.full_like(tok, PAD), tok)
        done |= tok == EOS
        if bool(done.all()):
            break
    return out
