"""Experiments (docs/design.md §1, §6): one ``(profile, p, seed)`` context and the M1, τ, M2/M3 and ensemble stages."""
