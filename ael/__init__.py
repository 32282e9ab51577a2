"""ael: semi-supervised semantic segmentation with Adaptive Equalization Learning (NeurIPS 2021)."""

__version__ = "0.1.0"
