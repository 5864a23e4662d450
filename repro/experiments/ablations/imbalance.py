"""Ablation 5 · class imbalance: M1{T1} with plain CE vs the class-balanced T1 loss (profile ``class_balance``)."""

from __future__ import annotations

from typing import Any

from repro.experiments.ablations.variants import run_supervised, summary, with_profile
from repro.experiments.context import Context

# T1 CE weight powers compared: w_c = (N / (K n_c)) ** power (0: plain CE; the quick profile's default 0.6)
IMBALANCE_POWERS = (0.0, 0.6, 1.0)


def imbalance_name(power: float) -> str:
    """``imbalance-plain`` for power 0, else ``imbalance-cb<power>`` (e.g. ``imbalance-cb0.6``)."""
    return "imbalance-plain" if float(power) == 0 else f"imbalance-cb{float(power):g}"


def run_imbalance(ctx: Context, powers=IMBALANCE_POWERS, progress: bool = True) -> dict[str, Any]:
    """One M1{T1} per class-balance power on L_p (same seed, init and budget); plain dicts keyed by result name."""
    out = {}
    for power in powers:
        name = imbalance_name(power)
        res = run_supervised(with_profile(ctx, class_balance=float(power)), name, ("coarse",),
                             params={"item": "imbalance", "class_balance": float(power)}, progress=progress)
        out[name] = {**summary(res), "class_balance": float(power)}
    return {"p": ctx.p, "seed": ctx.seed, "default_power": ctx.profile.class_balance, "runs": out}
