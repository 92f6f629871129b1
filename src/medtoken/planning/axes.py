"""The axis order of nnU-Net arrays and how it maps to medtoken's.

nnU-Net reads every image as ``(C, z, y, x)`` (SimpleITK array order; ``SimpleITKIO``) or, for
PNG/JPEG/BMP/TIFF natural images, as ``(C, 1, H, W)`` (``NaturalImage2DIO``). medtoken reads a
NIfTI/ITK volume as ``(C, x, y, z)`` (nibabel order) and a natural image as ``(C, H, W)``. So:

- NIfTI/ITK, 3D: nnU-Net axis ``k`` is medtoken axis ``2 - k``; spacing is reversed.
- NIfTI/ITK, 2D ``(C, x, y)``: nnU-Net ``(C, 1, y, x)`` with spacing ``(999 * max, sy, sx)``;
  nnU-Net axis ``k >= 1`` is again medtoken axis ``2 - k``.
- natural 2D image ``(C, H, W)``: nnU-Net ``(C, 1, H, W)`` with spacing ``(999, 1, 1)``; nnU-Net
  axis ``k >= 1`` is medtoken axis ``k - 1``.
"""

from __future__ import annotations

import numpy as np

from medtoken.data.io import PIL_ENDINGS

__all__ = ["NATURAL_2D_IO", "SITK_IO", "medtoken_axis", "reader_writer_for", "to_nnunet_axes"]

SITK_IO = "SimpleITKIO"
NATURAL_2D_IO = "NaturalImage2DIO"
FAKE_2D_SPACING = 999.0  # nnU-Net's spacing of the one-slice axis of a 2D image


def reader_writer_for(file_ending: str) -> str:
    """nnU-Net's image reader for this file ending (its ``image_reader_writer``)."""
    return NATURAL_2D_IO if file_ending.lower() in PIL_ENDINGS else SITK_IO


def to_nnunet_axes(array: np.ndarray, spacing: tuple[float, ...],
                   file_ending: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """A medtoken array ``(C, *S)`` as nnU-Net sees it: ``(C, z, y, x)`` (a view) and its spacing.

    Args:
        array: ``(C, x, y, z)``, ``(C, x, y)`` (NIfTI/ITK) or ``(C, H, W)`` (natural image).
        spacing: mm per medtoken axis.
        file_ending: ending of the file read (selects the reader nnU-Net would use).
    """
    dims = array.ndim - 1
    if reader_writer_for(file_ending) == NATURAL_2D_IO:
        return array[:, None], (FAKE_2D_SPACING, 1.0, 1.0)  # (C, H, W) -> (C, 1, H, W)
    flipped = array.transpose(0, *range(dims, 0, -1))  # (C, x, y[, z]) -> (C, [z,] y, x)
    reversed_spacing = tuple(abs(float(s)) for s in spacing[::-1])
    if dims == 2:
        return flipped[:, None], (FAKE_2D_SPACING * max(reversed_spacing), *reversed_spacing)
    return flipped, reversed_spacing


def medtoken_axis(nnunet_axis: int, reader: str) -> int:
    """The medtoken array axis of nnU-Net array axis ``nnunet_axis`` (0..2, channels excluded)."""
    if reader == NATURAL_2D_IO:
        if nnunet_axis == 0:
            raise ValueError("axis 0 of a natural 2D image is nnU-Net's added one-slice axis")
        return nnunet_axis - 1
    return 2 - nnunet_axis
