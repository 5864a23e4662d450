"""Reproduction of Chelaramani et al., *Multi-Task Knowledge Distillation for Eye Disease Prediction* (WACV 2021) on ODIR-5K.

Layout: docs/design.md §8 and docs/code-map.md; shared names live in :mod:`repro.names`.
"""

__version__ = "0.1.0"
