"""TODO docstring (from distill)."""

from __future__ import annotations

import torch


def ensemble_greedy(models, x, from_trunk: bool, max_len: int) -> torch.Tensor:
    """Greedy decoding where each next token maximises the mean of the decoders' step probabilities."""
    B = x.shape[0]
    states = [m.caption_init(x, from_trunk=from_trunk) for m in models]
    tok = torch.full((B,), 1, dtype=torch.long, device=x.device)  # SOS
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    out = torch.zeros((B, max_len), dtype=torch.long, device=x.device)
    for i in range(max_len):
        probs = 0
        for j, m in enumerate(models):
            logits, states[j] = m.decoder.step(tok, states[j])
            probs = probs + torch.softmax(logits.float(), -1)
        tok = probs.argmax(-1)
        out[:, i] = torch.where(done, torch.zeros_like(tok), tok)
        done |= tok == 2
        if bool(done.all()):
            break
    return out
