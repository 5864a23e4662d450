"""Sweeps (docs/design.md §6): papermill runs of the notebooks over p and seeds — plan, kernel, lock, record, run."""
