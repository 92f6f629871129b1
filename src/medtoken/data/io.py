"""Reading and writing images and label maps: NIfTI (nibabel), 2D images (Pillow), ITK (SimpleITK,
in :mod:`medtoken.data.sitk_io`).

An image may also be a folder holding one DICOM series (:mod:`medtoken.data.dicom`, read by
SimpleITK's series reader); its meta has ``file_ending=".nii.gz"``, so label maps written for it
are NIfTI files with the series' geometry.

Arrays keep the file's axis order; nothing is reoriented. A NIfTI volume stored as ``(X, Y, Z)`` is
read as ``(C, X, Y, Z)``, a PNG with H rows and W columns as ``(C, H, W)``, and a SimpleITK image is
transposed so that its axes match what nibabel gives for the same file. :class:`ImageMeta` carries
the geometry (spacing, a 4x4 voxel-to-world RAS affine) and the format header, so that a label map
written with the meta of an input has exactly that input's geometry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from medtoken.data.sitk_io import Geometry, from_sitk_image, read_sitk, write_sitk
from medtoken.utils.atomic import atomic_path
from medtoken.utils.errors import InputError

__all__ = [
    "AFFINE_ATOL",
    "IMAGE_ENDINGS",
    "ImageMeta",
    "backend_for",
    "read_image",
    "read_label",
    "smallest_label_dtype",
    "split_file_ending",
    "write_image",
    "write_label",
]

PathLike = str | os.PathLike[str]
NIFTI_ENDINGS = (".nii.gz", ".nii")
PIL_ENDINGS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
ITK_ENDINGS = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_ENDINGS = NIFTI_ENDINGS + ITK_ENDINGS + PIL_ENDINGS
AFFINE_ATOL = 1e-4  # tolerance when comparing the affines of images that must share geometry
_BACKENDS = ("auto", "nibabel", "pillow", "simpleitk", "dicom")
DICOM_OUTPUT_ENDING = ".nii.gz"  # label maps of DICOM input are written as NIfTI
_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                ".bmp": "BMP"}


@dataclass(frozen=True, eq=False)
class ImageMeta:
    """Geometry of an image as read from disk.

    Attributes:
        spatial_shape: spatial shape in array axis order.
        spacing: mm per array axis.
        affine: 4x4 voxel-to-world matrix (RAS, nibabel convention); for 2D natural images
            ``diag(spacing)`` embedded in a 4x4 identity.
        file_ending: ``".nii.gz"``, ``".png"``, ``".nrrd"``, ... (``".nii.gz"`` for a DICOM
            series: the format its label maps are written in).
        source: path of the (first) file read, or of the DICOM series folder.
        header: format-specific header used to write files with identical geometry (a nibabel
            header with its qform/sform codes, or a dict with SimpleITK's origin and direction).
    """

    spatial_shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray
    file_ending: str
    source: str
    header: Any = None

    def __post_init__(self) -> None:
        if len(self.spacing) != len(self.spatial_shape):
            raise ValueError(f"spacing {self.spacing} must have one entry per axis of "
                             f"spatial_shape {self.spatial_shape}")
        if np.shape(self.affine) != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {np.shape(self.affine)}")

    @property
    def spatial_dims(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spatial_shape)


def smallest_label_dtype(max_value: float) -> np.dtype:
    """``uint8`` when no value exceeds 255, else ``uint16``: how label maps (and 2D image files)
    are stored."""
    return np.dtype(np.uint8 if max_value <= 255 else np.uint16)


def split_file_ending(path: PathLike) -> tuple[str, str]:
    """Split a file name into (name, ending): ``"a (1).png"`` -> ``("a (1)", ".png")``.

    Known multi-part endings (``.nii.gz``) are kept whole; the ending keeps its original case.
    """
    name = Path(path).name
    for ending in sorted(IMAGE_ENDINGS, key=len, reverse=True):
        if name.lower().endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)], name[-len(ending):]
    suffix = Path(name).suffix
    return (name[: -len(suffix)], suffix) if suffix else (name, "")


def _sitk_need(path: Path) -> str:
    """What needs SimpleITK, for the message when it is not installed."""
    return f"reading {split_file_ending(path)[1]}"


def backend_for(path: Path, backend: str) -> str:
    """The reader of ``path``: ``backend``, or for ``"auto"`` the one of its file ending
    (``"nibabel"``, ``"pillow"``, ``"simpleitk"``; a folder is ``"dicom"``).

    Raises:
        InputError: an unsupported file ending.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if path.is_dir():
        return "dicom"
    ending = split_file_ending(path)[1].lower()
    for kind, endings in (("nibabel", NIFTI_ENDINGS), ("pillow", PIL_ENDINGS),
                          ("simpleitk", ITK_ENDINGS)):
        if ending in endings:
            return kind
    raise InputError(path, f"unsupported file type {ending!r}; supported: "
                           f"{', '.join(IMAGE_ENDINGS)}")


# --- nibabel ------------------------------------------------------------------------------------

def _read_nibabel(path: Path) -> tuple[np.ndarray, Geometry]:
    img = nib.load(str(path), mmap=False)
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image subclasses Nifti1Image
        raise InputError(path, f"cannot read image: not a NIfTI file ({type(img).__name__})")
    data = np.asanyarray(img.dataobj)  # applies scl_slope/inter; reading fails if truncated
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]  # NIfTI vector images: (X, Y, Z, 1, C) -> (X, Y, Z, C)
    if data.ndim in (2, 3):
        arr = data[None]  # (*S) -> (1, *S)
    elif data.ndim == 4:
        arr = np.moveaxis(data, -1, 0)  # MSD multi-modal: (X, Y, Z, C) -> (C, X, Y, Z)
    else:
        raise InputError(path, f"cannot read image: unsupported NIfTI shape {data.shape}")
    spatial_dims = arr.ndim - 1
    spacing = tuple(float(z) for z in img.header.get_zooms()[:spatial_dims])
    return arr, (spacing, np.array(img.affine, dtype=np.float64), img.header.copy())


def _write_nibabel(arr: np.ndarray, affine: np.ndarray, header: Any, tmp: Path,
                   label: bool) -> None:
    data = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)  # (C, *S) -> (*S, C)
    if isinstance(header, nib.Nifti1Header):
        hdr = header.copy()
        if not np.allclose(hdr.get_best_affine(), affine, atol=1e-6):
            hdr.set_sform(affine, code=int(hdr["sform_code"]) or "aligned")
            hdr.set_qform(affine, code=int(hdr["qform_code"]) or "scanner")
    else:
        hdr = nib.Nifti1Header()
        hdr.set_sform(affine, code="scanner")
        hdr.set_qform(affine, code="scanner")
    hdr.set_data_dtype(data.dtype)
    hdr.set_slope_inter(1.0, 0.0)
    if label:
        hdr["cal_min"], hdr["cal_max"] = 0.0, 0.0
    klass = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    # The header's best affine equals `affine`, so nibabel keeps qform/sform and their codes.
    nib.save(klass(data, affine, header=hdr), str(tmp))


# --- Pillow -------------------------------------------------------------------------------------

def _read_pillow(path: Path, label: bool) -> tuple[np.ndarray, Geometry]:
    with Image.open(path) as im:
        im.load()
        if im.mode == "P" and label:
            data = np.asarray(im)  # palette indices are the labels
        elif im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            data = np.asarray(im if im.mode not in ("1", "LA") else im.convert("L"))
        else:
            data = np.asarray(im.convert("RGB"))  # RGBA, P, CMYK, ... -> RGB (alpha dropped)
    arr = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)  # (H, W, 3) -> (3, H, W)
    return arr, ((1.0, 1.0), np.eye(4), None)


def _write_pillow(arr: np.ndarray, tmp: Path, ending: str) -> None:
    if arr.shape[0] not in (1, 3):
        raise ValueError(f"{ending} stores 1 or 3 channels, got {arr.shape[0]}")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    limit = 255 if arr.shape[0] == 3 or ending in (".jpg", ".jpeg", ".bmp") else 65535
    if lo < 0 or hi > limit:
        raise ValueError(f"{ending} stores integers 0..{limit}; got values {lo}..{hi}")
    data = np.rint(arr).astype(smallest_label_dtype(hi))
    data = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)  # (3, H, W) -> (H, W, 3)
    Image.fromarray(data).save(tmp, format=_PIL_FORMATS[ending])


def _read_dicom(folder: Path) -> tuple[np.ndarray, Geometry]:
    from medtoken.data.dicom import read_dicom_series

    return from_sitk_image(read_dicom_series(folder))


# --- public API ---------------------------------------------------------------------------------

def _read_raw(path: Path, backend: str, label: bool) -> tuple[np.ndarray, ImageMeta]:
    """Read one file as ``(C, *S)`` in its stored dtype; every failure is an InputError."""
    kind = backend_for(path, backend)
    if kind == "dicom":
        if label:
            raise InputError(path, "a DICOM series folder is read as an image, not as a label "
                             "map; give labels as label files (NIfTI, NRRD, PNG, ...)")
        if not path.is_dir():
            raise InputError(path, "DICOM series folder not found")
    elif not path.is_file():
        raise InputError(path, "file not found")
    elif path.stat().st_size == 0:
        raise InputError(path, "cannot read image: empty file (0 bytes)")
    try:
        if kind == "dicom":
            arr, (spacing, affine, header) = _read_dicom(path)
        elif kind == "nibabel":
            arr, (spacing, affine, header) = _read_nibabel(path)
        elif kind == "pillow":
            arr, (spacing, affine, header) = _read_pillow(path, label)
        else:
            arr, (spacing, affine, header) = read_sitk(path, _sitk_need(path))
    except InputError:
        raise
    except Exception as err:  # any decoder failure: truncated, corrupt, wrong format
        reason = " ".join(str(err).split()) or type(err).__name__
        raise InputError(path, f"cannot read image: {reason}") from err
    if arr.size == 0:
        raise InputError(path, f"cannot read image: it has no voxels (shape {arr.shape[1:]})")
    ending = DICOM_OUTPUT_ENDING if kind == "dicom" else split_file_ending(path)[1]
    return arr, ImageMeta(spatial_shape=tuple(int(s) for s in arr.shape[1:]), spacing=spacing,
                          affine=affine, file_ending=ending, source=str(path), header=header)


def read_image(paths: PathLike | Sequence[PathLike], *,
               backend: str = "auto") -> tuple[np.ndarray, ImageMeta]:
    """Read an image: one file per channel, or one (multi-channel) file.

    Args:
        paths: a file or DICOM series folder, or one per channel (all with the same shape and
            affine).
        backend: ``"auto"`` (by file ending; a folder is a DICOM series), ``"nibabel"``,
            ``"pillow"``, ``"simpleitk"`` or ``"dicom"``.

    Returns:
        The image ``(C, *S)`` as float32 and the meta of the first file.

    Raises:
        InputError: a file is missing or unreadable, or its geometry differs from the first one.
    """
    path_list = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not path_list:
        raise ValueError("read_image needs at least one path")
    arrays: list[np.ndarray] = []
    metas: list[ImageMeta] = []
    for path in path_list:
        arr, meta = _read_raw(path, backend, label=False)
        first = metas[0] if metas else meta
        if meta.spatial_shape != first.spatial_shape:
            raise InputError(path, f"shape {meta.spatial_shape} differs from "
                                   f"{path_list[0].name} {first.spatial_shape}")
        if not np.allclose(meta.affine, first.affine, atol=AFFINE_ATOL):
            raise InputError(path, f"affine differs from that of {path_list[0].name}")
        arrays.append(arr.astype(np.float32, copy=False))
        metas.append(meta)
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)  # (C, *S)
    return np.ascontiguousarray(image, dtype=np.float32), metas[0]


def _as_integer_labels(values: np.ndarray, path: Path) -> np.ndarray:
    """Check that ``values`` are integers; return them as uint8 (int16 when out of 0..255)."""
    if values.dtype.kind == "b":
        return values.astype(np.uint8)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise InputError(path, "label map contains NaN or Inf")
        bad = values[values != np.rint(values)]
        if bad.size:
            raise InputError(path, f"label values must be integers, found {bad.flat[0]:g}")
    elif values.dtype.kind not in "iu":
        raise InputError(path, f"label map has non-numeric type {values.dtype}")
    lo, hi = values.min(), values.max()
    if lo >= 0 and hi <= np.iinfo(np.uint8).max:
        return values.astype(np.uint8)
    if np.iinfo(np.int16).min <= lo and hi <= np.iinfo(np.int16).max:
        return values.astype(np.int16)
    raise InputError(path, f"label values {lo:g}..{hi:g} are out of range for a label map")


def read_label(path: PathLike, *, backend: str = "auto") -> tuple[np.ndarray, ImageMeta]:
    """Read a label map.

    2D masks: values ⊆ {0, 255} are a binary mask, read as {0, 1}; an RGB(A) mask with equal
    colour channels is read as one channel; palette PNGs give their palette indices.

    Returns:
        The labels ``(*S)`` as uint8 (int16 if values fall outside 0..255) and the meta.

    Raises:
        InputError: the file is unreadable, has several channels, or non-integer values.
    """
    path = Path(path)
    arr, meta = _read_raw(path, backend, label=True)  # (C, *S)
    if arr.shape[0] > 1:
        if not all(np.array_equal(arr[0], arr[c]) for c in range(1, arr.shape[0])):
            raise InputError(path, f"a label map must have one channel, found {arr.shape[0]} "
                                   "different channels (colour-coded masks are not supported)")
        arr = arr[:1]
    labels = _as_integer_labels(arr[0], path)
    if backend_for(path, backend) == "pillow" and labels.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
        if present[-1] == 255 and set(present.tolist()) <= {0, 255}:
            labels = (labels // 255).astype(np.uint8)  # 0/255 binary mask -> {0, 1}
    return labels, meta


def write_label(labels: np.ndarray, meta: ImageMeta, path: PathLike) -> None:
    """Write a label map ``(*S)`` with the geometry of ``meta``, atomically.

    Stored as uint8 when the largest label is below 256, else uint16. The format follows the
    ending of ``path`` (2D natural images: grayscale PNG with values 0, 1, 2, ...).
    """
    labels = np.asarray(labels)
    if labels.shape != meta.spatial_shape:
        raise ValueError(f"labels shape {labels.shape} must equal meta.spatial_shape "
                         f"{meta.spatial_shape}")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.rint(labels)):
        raise ValueError("labels must be integer valued")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"labels must lie in 0..65535, got {labels.min()}..{labels.max()}")
    dtype = smallest_label_dtype(labels.max() if labels.size else 0)
    _write(labels.astype(dtype)[None], meta, Path(path), label=True)


def write_image(image: np.ndarray, meta: ImageMeta, path: PathLike) -> None:
    """Write an image ``(C, *S)`` or ``(*S)`` with the geometry of ``meta``, atomically.

    NIfTI and ITK files store float32 (several channels: 4D NIfTI with channels last, or an ITK
    vector image); 2D natural images store the values rounded to uint8 (uint16 for one channel
    with values above 255), so they must lie in 0..255 (0..65535).
    """
    image = np.asarray(image)
    if image.ndim == meta.spatial_dims:
        image = image[None]  # (*S) -> (1, *S)
    if image.shape[1:] != meta.spatial_shape:
        raise ValueError(f"image shape {image.shape} must be (C, *{meta.spatial_shape})")
    _write(image.astype(np.float32), meta, Path(path), label=False)


def _write(arr: np.ndarray, meta: ImageMeta, path: Path, label: bool) -> None:
    """Write ``arr (C, *S)`` with the backend chosen by the ending of ``path``."""
    kind = backend_for(path, "auto")
    ending = split_file_ending(path)[1].lower()
    if ending in (".mhd", ".nhdr"):
        raise InputError(path, "writing detached-header files is not supported; use .mha/.nrrd")
    if label and ending in (".jpg", ".jpeg"):
        raise InputError(path, "label maps cannot be stored as JPEG (lossy); use .png")
    with atomic_path(path) as tmp:
        if kind == "nibabel":
            _write_nibabel(arr, meta.affine, meta.header, tmp, label)
        elif kind == "pillow":
            _write_pillow(arr, tmp, ending)
        else:
            write_sitk(arr, meta.spacing, meta.affine, meta.header, tmp, _sitk_need(path))
