"""Write a DICOM series from an array in a test (after SimpleITK's DicomSeriesFromArray example)."""

from __future__ import annotations

import locale
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def oblique_sitk_image(data_zyx: np.ndarray, spacing: Sequence[float] = (0.8, 0.9, 2.5),
                       origin: Sequence[float] = (12.5, -40.0, 7.25)) -> Any:
    """An int16 SimpleITK image of a ``(z, y, x)`` array, rotated 20 deg about z, 10 about x."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(data_zyx.astype(np.int16))
    a = np.deg2rad(20.0)
    b = np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    direction = rz @ rx
    image.SetDirection([float(v) for v in direction.ravel()])
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in origin])
    return image


def write_dicom_series(image: Any, folder: Path, series_uid: str | None = None,
                       skip: Sequence[int] = (),
                       pixel_spacing: dict[int, tuple[float, float]] | None = None) -> Path:
    """Write every z slice of a 3D SimpleITK image as one CT DICOM file in ``folder``.

    Args:
        skip: slice indices left out (a series with missing slices).
        pixel_spacing: slice index -> in-plane spacing written instead (inconsistent spacing).
    """
    import SimpleITK as sitk

    # GDCM's writer resets the process locale to "C" (ASCII), which would change the default
    # text encoding for every later test in this process: restore it afterwards.
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_slices(sitk, image, folder, series_uid, skip, pixel_spacing)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(sitk: Any, image: Any, folder: Path, series_uid: str | None,
                  skip: Sequence[int], pixel_spacing: dict[int, tuple[float, float]] | None
                  ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    now = time.strftime("%H%M%S")
    uid = series_uid or f"1.2.826.0.1.3680043.2.1125.{abs(hash(str(folder))) % 10**12}"
    tags = [("0008|0031", now), ("0008|0021", time.strftime("%Y%m%d")),
            ("0008|0008", "DERIVED\\SECONDARY"), ("0020|000e", uid),
            ("0020|000d", uid + ".1"),
            ("0020|0037", "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7])))),
            ("0008|103e", "test series"), ("0008|0060", "CT"),
            ("0018|0050", str(image.GetSpacing()[2]))]
    for i in range(image.GetDepth()):
        if i in skip:
            continue
        piece = image[:, :, i]
        for tag, value in tags:
            piece.SetMetaData(tag, value)
        piece.SetMetaData("0020|0032", "\\".join(
            map(str, image.TransformIndexToPhysicalPoint((0, 0, i)))))
        piece.SetMetaData("0020|0013", str(i + 1))
        piece.SetMetaData("0008|0018", f"{uid}.{i + 1}")
        if pixel_spacing and i in pixel_spacing:
            piece.SetSpacing(pixel_spacing[i])
        writer.SetFileName(str(folder / f"slice_{i:03d}.dcm"))
        writer.Execute(piece)
    return folder
