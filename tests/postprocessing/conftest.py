"""Hand-made label maps with known components, saved as NIfTI / PNG in tmp."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE = np.diag([1.5, 1.0, 2.0, 1.0])


def save_nifti(path: Path, labels: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), path)
    return path


def cube(shape: tuple[int, ...], *boxes: tuple[int, tuple[slice, ...]]) -> np.ndarray:
    """A label map of ``shape`` with ``(label, slices)`` boxes painted in order."""
    out = np.zeros(shape, dtype=np.uint8)
    for label, where in boxes:
        out[where] = label
    return out


S = slice
BIG = (S(1, 5), S(1, 5), S(1, 5))  # 64 voxels
SMALL = (S(8, 10), S(8, 10), S(8, 10))  # 8 voxels, far from BIG
