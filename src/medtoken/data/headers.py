"""Header-only reads of image files: dimensionality, stored shape and stored voxel size.

They read no voxel data and never raise: ``None`` when a file cannot be read. The readers are
those of :mod:`medtoken.data.io` (:func:`~medtoken.data.io.backend_for`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
from PIL import Image

from medtoken.data.io import PathLike, backend_for, split_file_ending
from medtoken.data.sitk_io import read_sitk_info

__all__ = ["peek_spatial_dims", "peek_stored_shape", "peek_stored_spacing"]


def peek_spatial_dims(path: PathLike) -> int | None:
    """Spatial dimensionality of an image file, from its header only (``None`` if unreadable)."""
    path = Path(path)
    try:
        kind = backend_for(path, "auto")
        if kind == "dicom":
            return 3
        if kind == "pillow":
            return 2
        if kind == "nibabel":
            shape: Any = nib.load(str(path)).header.get_data_shape()  # type: ignore[attr-defined]
            return 2 if len(shape) == 2 else 3
        reader = read_sitk_info(path, f"reading {split_file_ending(path)[1]}")
        return int(reader.GetDimension())
    except Exception:
        return None


def peek_stored_shape(path: PathLike) -> tuple[int, ...] | None:
    """The array shape as stored in the file, channel or vector axes included, from the header.

    NIfTI: the header's data shape; ITK: the size, plus the number of components when > 1;
    natural images: ``(H, W)`` or ``(H, W, bands)``. ``None`` if unreadable.
    """
    path = Path(path)
    try:
        kind = backend_for(path, "auto")
        if kind == "nibabel":
            header: Any = nib.load(str(path)).header  # type: ignore[attr-defined]
            return tuple(int(s) for s in header.get_data_shape())
        if kind == "pillow":
            with Image.open(path) as im:
                bands = len(im.getbands())
                return (im.height, im.width) + ((bands,) if bands > 1 else ())
        reader = read_sitk_info(path, f"reading {split_file_ending(path)[1]}")
        components = int(reader.GetNumberOfComponents())
        return tuple(int(s) for s in reader.GetSize()) + ((components,) if components > 1 else ())
    except Exception:
        return None


def peek_stored_spacing(path: PathLike) -> tuple[float, ...] | None:
    """The voxel sizes as stored in the file header, before any reader repairs them.

    nibabel replaces a zero ``pixdim`` by 1 when it loads a NIfTI file (with a warning); this
    reads the header unchecked so that a missing voxel size can be reported. ``None`` for
    natural images (they store no spacing) and unreadable files.
    """
    path = Path(path)
    try:
        kind = backend_for(path, "auto")
        if kind == "pillow":
            return None
        if kind == "nibabel":
            opener = nib.openers.ImageOpener(str(path))
            with opener as fh:
                header: Any = nib.Nifti1Header.from_fileobj(fh, check=False)
            dims = min(int(header["dim"][0]), 3)
            return tuple(float(v) for v in header["pixdim"][1:1 + dims])
        reader = read_sitk_info(path, f"reading {split_file_ending(path)[1]}")
        return tuple(float(v) for v in reader.GetSpacing())
    except Exception:
        return None
