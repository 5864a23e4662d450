"""Ablations beyond the paper (notebook 07): each an option of the existing stages, one module per item."""
