"""Distillation layer (docs/design.md §4): KD losses, cached teacher outputs, the teacher set, ensemble decoding."""
