"""Reproduction of Chelaramani et al., *Multi-Task Knowledge Distillation for Eye Disease Prediction* (WACV 2021) on ODIR-5K."""

__version__ = "0.1.0"

TASKS = ("coarse", "fine", "caption")
TASK_CODES = {"T1": "coarse", "T2": "fine", "T3": "caption"}
P_VALUES = (15, 30, 45, 60, 70)
