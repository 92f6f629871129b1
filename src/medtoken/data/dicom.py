"""DICOM series input: one folder holding one CT/MR series, read by SimpleITK's series reader.

A folder is a DICOM series folder when it holds files with the DICOM preamble (``DICM`` at byte
128). :func:`read_dicom_series` refuses folders that SimpleITK would read into a wrong volume:
several series, slices of different size, orientation or pixel spacing, duplicate or missing
slices (non-uniform slice positions), and slices displaced sideways (gantry tilt), each as one
:class:`InputError` naming the folder and the problem. The image comes back as a SimpleITK image
(ITK's LPS world); :mod:`medtoken.data.io` turns it into an array and a RAS affine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtoken.data.sitk_io import import_sitk
from medtoken.utils.errors import InputError

__all__ = ["is_dicom_file", "is_dicom_folder", "read_dicom_series"]

POSITION_ATOL_MM = 0.01  # slice gaps may differ by this much (positions are rounded in headers)
POSITION_RTOL = 0.01  # ... or by this fraction of the median gap
SPACING_RTOL = 1e-3  # in-plane pixel spacing and orientation must agree to this


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def is_dicom_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding at least one DICOM file (not in subfolders)."""
    path = Path(path)
    return path.is_dir() and any(is_dicom_file(p) for p in _visible(path))


def _slice_geometry(sitk: Any, files: Sequence[str]) -> list[tuple[np.ndarray, ...]]:
    """(origin, direction 3x3, spacing, size) of every file, from its header only."""
    out: list[tuple[np.ndarray, ...]] = []
    reader = sitk.ImageFileReader()
    for name in files:
        reader.SetFileName(name)
        reader.ReadImageInformation()
        dims = reader.GetDimension()
        direction = np.array(reader.GetDirection(), dtype=np.float64).reshape(dims, dims)
        out.append((np.array(reader.GetOrigin(), dtype=np.float64)[:3], direction[:3, :3],
                    np.array(reader.GetSpacing(), dtype=np.float64)[:2],
                    np.array(reader.GetSize())[:2]))
    return out


def _check_slices(folder: Path, geometry: list[tuple[np.ndarray, ...]]) -> None:
    """Refuse a series whose slices do not form one regular volume."""
    _, dir0, spacing0, size0 = geometry[0]
    for _, direction, spacing, size in geometry[1:]:
        if not np.array_equal(size, size0):
            raise InputError(folder, f"slices of different sizes ({tuple(size0)} and "
                             f"{tuple(size)} pixels)")
        if not np.allclose(spacing, spacing0, rtol=SPACING_RTOL, atol=0):
            raise InputError(folder, f"inconsistent pixel spacing across slices "
                             f"({_mm(spacing0)} and {_mm(spacing)} mm)")
        if not np.allclose(direction[:, :2], dir0[:, :2], atol=SPACING_RTOL):
            raise InputError(folder, "slices of different orientations (ImageOrientationPatient)")
    if len(geometry) < 2:
        return
    normal = np.cross(dir0[:, 0], dir0[:, 1])
    steps = np.diff(np.stack([g[0] for g in geometry]), axis=0)  # (N-1, 3) mm
    gaps = steps @ normal  # (N-1,) along the slice normal
    median = float(np.median(np.abs(gaps)))
    if np.any(np.abs(gaps) < POSITION_ATOL_MM):
        raise InputError(folder, "two slices at the same position (duplicate slices?)")
    if np.ptp(gaps) > max(POSITION_ATOL_MM, POSITION_RTOL * median) or np.any(
            np.sign(gaps) != np.sign(gaps[0])):
        raise InputError(folder, f"missing slices or non-uniform slice positions (gaps from "
                         f"{np.abs(gaps).min():.4g} to {np.abs(gaps).max():.4g} mm along the "
                         f"slice normal, {len(geometry)} slices)")
    sideways = np.linalg.norm(steps - gaps[:, None] * normal, axis=1)  # (N-1,)
    if sideways.max() > max(POSITION_ATOL_MM, POSITION_RTOL * median):
        raise InputError(folder, f"slices are shifted sideways by up to {sideways.max():.3g} mm "
                         "(gantry tilt?); resample the series to a regular grid first")


def _mm(values: np.ndarray) -> str:
    return " x ".join(f"{v:g}" for v in values)


def read_dicom_series(folder: str | os.PathLike[str]) -> Any:
    """Read the one DICOM series in ``folder`` as a checked 3D SimpleITK image.

    Raises:
        InputError: at ``folder``: no series, several series, or slices that do not form one
            regular volume (see the module docstring); any reader failure.
    """
    folder = Path(folder)
    sitk = import_sitk(folder, "reading a DICOM series")
    series = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not series:
        raise InputError(folder, "holds no readable DICOM series")
    if len(series) > 1:
        shown = ", ".join(series[:3]) + (", ..." if len(series) > 3 else "")
        raise InputError(folder, f"holds {len(series)} DICOM series ({shown}); put each series "
                         "in its own folder")
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    try:
        _check_slices(folder, _slice_geometry(sitk, files))
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        image = reader.Execute()
    except InputError:
        raise
    except Exception as err:  # a corrupt or truncated slice
        reason = " ".join(str(err).split()) or type(err).__name__
        raise InputError(folder, f"cannot read DICOM series: {reason}") from err
    return image
