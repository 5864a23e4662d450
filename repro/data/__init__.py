"""Data layer (docs/design.md §2): sources, labels, the patient split, captions, the image cache, and ``prepare`` (the facade)."""
