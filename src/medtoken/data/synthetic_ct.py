"""Generated CT-like volumes of any size, for time and memory benchmarks of whole cases.

A case is a body (an elliptic cylinder of soft tissue in air, -1000 HU) holding a spine-like bone
column and a handful of ellipsoidal "organs" of 20-80 HU, plus smooth low-frequency texture and
voxel noise of about 20 HU. Everything is drawn on a grid 8 times coarser than the volume and
upsampled trilinearly, then the noise is added one slab at a time, so that building a
512x512x300 case needs little more than the volume itself (float32: 315 MB). The
content depends only on the size and ``seed``; it is meant to look like CT to the intensity
normalisation and to cost what a real case costs, not to be segmented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["CT_STATS", "ct_normalization", "make_ct_like_volume"]

AIR_HU, FAT_HU, BONE_HU = -1000.0, -100.0, 700.0
ORGAN_HU_RANGE = (20.0, 80.0)
NUM_ORGANS = 6
TEXTURE_HU, NOISE_HU = 15.0, 20.0
COARSE_FACTOR = 8  # the shapes are drawn on a grid this many times coarser per axis,
COARSE_MIN = 16  # but with at least this many points (or the size itself)
NOISE_SLAB = 16  # planes of noise generated at once along the first axis
CT_STATS = (-1000.0, 1000.0, -300.0, 450.0)  # (lo, hi, mean, std) in HU


def ct_normalization(channels: int = 1) -> dict[str, Any]:
    """The normalisation plan (as stored in a checkpoint) of generated cases: medtoken's CT
    scheme, clip to ``[lo, hi]`` then ``(x - mean) / std`` with :data:`CT_STATS`."""
    return {"schemes": ["ct"] * channels, "ct_stats": [list(CT_STATS)] * channels}


def _coarse_shape(size: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(int(s), max(COARSE_MIN, -(-int(s) // COARSE_FACTOR))) for s in size)


def _coarse_hu(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The phantom on the coarse grid ``shape`` (HU, float32); the last axis runs along the
    body (z of a NIfTI volume read as ``(X, Y, Z)``), the others across it."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, max(n, 2)) for n in shape],
                                indexing="ij"))[(slice(None), *[slice(0, n) for n in shape])]
    across = grid[:-1]  # (d - 1, *shape)
    body = np.sum((across / np.array([0.9, 0.75][: len(across)]).reshape(-1, *[1] * len(shape)))
                  ** 2, axis=0) <= 1.0
    hu = np.full(shape, AIR_HU, np.float32)
    hu[body] = FAT_HU
    for _ in range(NUM_ORGANS):
        center = rng.uniform(-0.5, 0.5, len(shape))
        radii = rng.uniform(0.15, 0.4, len(shape))
        inside = np.sum(((grid - center.reshape(-1, *[1] * len(shape)))
                         / radii.reshape(-1, *[1] * len(shape))) ** 2, axis=0) <= 1.0
        hu[inside & body] = rng.uniform(*ORGAN_HU_RANGE)
    spine = np.sum((across - np.array([0.5, 0.0][: len(across)]).reshape(
        -1, *[1] * len(shape))) ** 2, axis=0) <= 0.15**2
    hu[spine] = BONE_HU
    texture = rng.standard_normal(shape).astype(np.float32) * TEXTURE_HU
    return np.where(body, hu + texture, hu).astype(np.float32)


def make_ct_like_volume(size: Sequence[int], seed: int = 0) -> np.ndarray:
    """A deterministic CT-like image ``(1, *size)`` in HU (float32), 2D or 3D.

    Raises:
        ValueError: ``size`` is not 2 or 3 positive ints.
    """
    size = tuple(int(s) for s in size)
    if len(size) not in (2, 3) or min(size) < 1:
        raise ValueError(f"size must be 2 or 3 positive ints, got {size}")
    rng = np.random.default_rng([seed, *size])
    coarse = torch.from_numpy(_coarse_hu(rng, _coarse_shape(size)))[None, None]
    mode = "trilinear" if len(size) == 3 else "bilinear"
    volume = torch.nn.functional.interpolate(coarse, size=size, mode=mode,
                                             align_corners=True)[0]  # (1, *S)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, size[0], NOISE_SLAB):  # noise slab by slab: no second full copy
        slab = volume[0, start:start + NOISE_SLAB]
        slab.add_(torch.randn(slab.shape, generator=gen).mul_(NOISE_HU))
    return volume.numpy()
