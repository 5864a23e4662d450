"""Analysis (docs/design.md §5): Grad-CAM, evaluating a checkpoint on any data folder, the throughput bench."""
