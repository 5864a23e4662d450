"""Reproduction of Chelaramani et al., *Multi-Task Knowledge Distillation for Eye Disease Prediction* (WACV 2021) on ODIR-5K."""



__version__ = "0.1.0"
