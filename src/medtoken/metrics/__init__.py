"""Segmentation metrics per case and per class, and folder evaluation (nnU-Net summary.json)."""
