"""The SimpleITK side of :mod:`medtoken.data.io`: ITK files (NRRD, MetaImage) and the images of
DICOM series (read by :mod:`medtoken.data.dicom`).

SimpleITK is optional (``pip install 'medtoken[itk]'``); :func:`import_sitk` turns its absence
into an :class:`~medtoken.utils.errors.InputError` naming the file. Images are converted to and
from nibabel's axis order ``(C, x, y, z)`` and a RAS voxel-to-world affine (ITK's world is LPS).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medtoken.utils.errors import InputError

__all__ = [
    "Geometry",
    "from_sitk_image",
    "import_sitk",
    "read_sitk",
    "read_sitk_info",
    "write_sitk",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # ITK world (LPS) -> nibabel world (RAS)
Geometry = tuple[tuple[float, ...], np.ndarray, Any]  # spacing, affine, header


def import_sitk(path: str | os.PathLike[str], what: str) -> Any:
    """The ``SimpleITK`` module.

    Raises:
        InputError: at ``path``, "``what`` needs SimpleITK", when it is not installed.
    """
    try:
        import SimpleITK as sitk
    except ImportError:
        raise InputError(path, f"{what} needs SimpleITK: pip install 'medtoken[itk]'") from None
    return sitk


def read_sitk(path: Path, what: str) -> tuple[np.ndarray, Geometry]:
    """An ITK file as ``(C, x, y, z)`` with its RAS geometry (``what``: see :func:`import_sitk`)."""
    return from_sitk_image(import_sitk(path, what).ReadImage(str(path)))


def read_sitk_info(path: Path, what: str) -> Any:
    """An ``ImageFileReader`` of ``path`` that has read the header only."""
    reader = import_sitk(path, what).ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


def from_sitk_image(img: Any) -> tuple[np.ndarray, Geometry]:
    """A SimpleITK image as ``(C, x, y, z)`` (nibabel's axis order) with its RAS geometry."""
    import SimpleITK as sitk

    dims = img.GetDimension()
    data = sitk.GetArrayFromImage(img)  # (z, y, x) or (z, y, x, C)
    arr = np.moveaxis(data, -1, 0) if img.GetNumberOfComponentsPerPixel() > 1 else data[None]
    arr = arr.transpose(0, *range(dims, 0, -1))  # (C, z, y, x) -> (C, x, y, z), as nibabel
    spacing = tuple(float(s) for s in img.GetSpacing())
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dims, dims)
    origin = np.array(img.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    affine[:dims, :dims] = direction @ np.diag(spacing)
    affine[:dims, 3] = origin
    header = {"origin": tuple(img.GetOrigin()), "direction": tuple(img.GetDirection())}
    return arr, (spacing, LPS_TO_RAS @ affine, header)


def write_sitk(arr: np.ndarray, spacing: tuple[float, ...], affine: np.ndarray, header: Any,
               tmp: Path, what: str) -> None:
    """Write ``arr (C, x, y, z)`` to ``tmp`` with the ITK geometry of ``header`` (an ITK
    input's origin and direction), else the one of the RAS ``affine``; compressed."""
    sitk = import_sitk(tmp, what)
    dims = arr.ndim - 1
    data = arr.transpose(0, *range(dims, 0, -1))  # (C, x, y, z) -> (C, z, y, x)
    vector = data.shape[0] > 1
    img = sitk.GetImageFromArray(np.moveaxis(data, 0, -1) if vector else data[0],
                                 isVector=vector)
    img.SetSpacing([float(s) for s in spacing])
    if isinstance(header, dict) and len(header.get("origin", ())) == dims:
        img.SetOrigin(header["origin"])
        img.SetDirection(header["direction"])
    else:  # derive ITK geometry from the RAS affine
        lps = LPS_TO_RAS @ affine
        img.SetOrigin([float(v) for v in lps[:dims, 3]])
        img.SetDirection([float(v) for v in (lps[:dims, :dims] / np.asarray(spacing)).ravel()])
    sitk.WriteImage(img, str(tmp), True)  # useCompression
