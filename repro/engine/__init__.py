"""Training engine (docs/design.md §4–5): stages, ``fit``, prediction and scoring, metrics."""
