"""Training-patch augmentation with MONAI transforms (nnU-Net-like recipe, lighter for CPU).

Pad to the patch size, crop with foreground oversampling (one crop in three centred on
foreground, as nnU-Net's ``oversample_foreground_percent=0.33``), random flips on every axis,
rot90 in planes whose patch sides are equal, small rotations/scalings, intensity scale/shift and
Gaussian noise. Inputs are dicts ``{"image": (C, *S) float32, "label": (1, *S) int}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from monai import transforms as mt

__all__ = ["build_train_transforms"]


def _rot90_axes(roi_size: Sequence[int]) -> list[tuple[int, int]]:
    """Spatial axis pairs (0-based, without channel) whose patch sides are equal."""
    return [(a, b) for a, b in combinations(range(len(roi_size)), 2)
            if roi_size[a] == roi_size[b]]


def build_train_transforms(roi_size: Sequence[int], foreground_ratio: float = 0.33,
                           affine_prob: float = 0.2) -> mt.Compose:
    """MONAI transforms that turn a whole normalised case into one augmented training patch.

    Args:
        roi_size: spatial size of the training patch (the model's ``roi_size``).
        foreground_ratio: probability that the crop is centred on a foreground voxel.
        affine_prob: probability of a small random rotation/scaling.
    """
    dims = len(roi_size)
    keys = ["image", "label"]
    pos = max(foreground_ratio, 1e-6)
    neg = max(1.0 - foreground_ratio, 1e-6)
    steps: list[mt.Transform] = [
        mt.SpatialPadd(keys, spatial_size=roi_size, mode="constant"),
        mt.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=roi_size,
                                  pos=pos, neg=neg, num_samples=1, allow_smaller=False),
        mt.RandAffined(keys, prob=affine_prob, rotate_range=(np.pi / 12,) * (3 if dims == 3 else 1),
                       scale_range=(0.15,) * dims, mode=("bilinear", "nearest"),
                       padding_mode="zeros"),
    ]
    steps += [mt.RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(dims)]
    steps += [mt.RandRotate90d(keys, prob=0.5, max_k=3, spatial_axes=axes)
              for axes in _rot90_axes(roi_size)]
    steps += [
        mt.RandScaleIntensityd("image", factors=0.15, prob=0.15),
        mt.RandShiftIntensityd("image", offsets=0.1, prob=0.15),
        mt.RandGaussianNoised("image", std=0.05, prob=0.1),
    ]
    return mt.Compose(steps)
