"""Deep dataset check: list the cases, read every file, and report every problem in one pass.

Structural problems (missing or misnamed files, duplicate case ids) come from
:func:`medtoken.data.datasets.scan_dataset`; this module adds what needs the pixel data:
unreadable or truncated files (and DICOM series that are not one regular volume), channel
counts, 2D/3D agreement with the dataset, shape and affine agreement between channels and
label, missing or zero voxel sizes, label maps with a channel axis, NaN/Inf, empty or constant
images, and label values missing from ``dataset.json``.
A folder of DICOM series folders has no labels; only its images are checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from medtoken.data.datasets import Case, DatasetInfo, Problem, scan_dataset
from medtoken.data.headers import peek_stored_shape, peek_stored_spacing
from medtoken.data.io import (
    AFFINE_ATOL,
    PIL_ENDINGS,
    ImageMeta,
    read_image,
    read_label,
    split_file_ending,
)
from medtoken.utils.errors import InputError

__all__ = ["Problem", "check_dataset", "voxel_size_problem"]


def _image_values_problems(case_id: str, path: str, image: np.ndarray) -> list[Problem]:
    """NaN/Inf and constant channels of ``image (C, *S)``."""
    problems = []
    finite = np.isfinite(image)
    if not finite.all():
        problems.append(Problem(case_id, path, f"image has {int((~finite).sum())} NaN or Inf "
                                               "voxels"))
    for c in range(image.shape[0]):
        values = image[c][finite[c]]
        if values.size and values.min() == values.max():
            where = f"channel {c} " if image.shape[0] > 1 else ""
            problems.append(Problem(case_id, path, f"image {where}is constant "
                                                   f"(every voxel is {values.flat[0]:g})"))
    return problems


def _geometry_problem(case_id: str, path: str, meta: ImageMeta, ref: ImageMeta,
                      what: str) -> Problem | None:
    """Shape or affine mismatch of ``meta`` against the first image channel ``ref``."""
    if meta.spatial_shape != ref.spatial_shape:
        size = "size" if ref.spatial_dims == 2 else "shape"
        return Problem(case_id, path, f"{what} {size} {meta.spatial_shape} differs from image "
                                      f"{size} {ref.spatial_shape}")
    if not np.allclose(meta.affine, ref.affine, atol=AFFINE_ATOL):
        return Problem(case_id, path, f"{what} affine differs from the image affine (tolerance "
                                      f"{AFFINE_ATOL})")
    return None


def voxel_size_problem(path: str | os.PathLike[str],
                       spacing: Sequence[float] | None) -> str | None:
    """What is wrong with a voxel size that is missing, zero or not finite, as stored in
    ``path`` (nibabel reads a zero ``pixdim`` as 1, with a warning, so this peeks at the header)
    or as read (``spacing``); ``None`` when both are fine."""
    for candidate in (peek_stored_spacing(path) or (), spacing or ()):
        if not all(np.isfinite(s) and s > 0 for s in candidate):
            return f"voxel size {candidate} is missing or zero; every axis needs a spacing > 0"
    return None


def _voxel_size_problem(case_id: str, path: str, meta: ImageMeta) -> Problem | None:
    """A spacing that is missing, zero or not finite (as read, or as stored before nibabel
    repairs it), or an affine with a zero-length axis."""
    bad_spacing = voxel_size_problem(path, meta.spacing)
    if bad_spacing is not None:
        return Problem(case_id, path, bad_spacing)
    lengths = np.linalg.norm(np.asarray(meta.affine)[:3, :meta.spatial_dims], axis=0)
    if not np.all(np.isfinite(lengths) & (lengths > 0)):
        axes = [i for i, n in enumerate(lengths) if not (np.isfinite(n) and n > 0)]
        return Problem(case_id, path, f"the affine has a zero voxel size on axis {axes} "
                                      f"(column lengths {[round(float(n), 6) for n in lengths]})")
    return None


def _check_images(case: Case, info: DatasetInfo) -> tuple[list[Problem], ImageMeta | None]:
    """Read every channel file of ``case``; returns the problems and the first channel's meta."""
    problems: list[Problem] = []
    ref: ImageMeta | None = None
    channels, readable = 0, True
    for path in case.images:
        try:
            image, meta = read_image(path)  # (C, *S)
        except InputError as err:
            problems.append(Problem(case.case_id, err.where or str(path), err.problem))
            readable = False
            continue
        channels += image.shape[0]
        if ref is None:
            ref = meta
            bad_size = _voxel_size_problem(case.case_id, str(path), meta)
            problems += [bad_size] if bad_size else []
            if meta.spatial_dims != info.spatial_dims:
                problems.append(Problem(case.case_id, str(path), f"image is "
                                        f"{meta.spatial_dims}D, the dataset is "
                                        f"{info.spatial_dims}D"))
        else:
            mismatch = _geometry_problem(case.case_id, str(path), meta, ref, "channel")
            problems += [mismatch] if mismatch else []
        problems += _image_values_problems(case.case_id, str(path), image)
    if readable and channels != info.num_channels:
        problems.append(Problem(case.case_id, str(case.images[0]),
                                f"image has {channels} channels, dataset.json names "
                                f"{info.num_channels} {info.channel_names}"))
    return problems, ref


def _check_label(case: Case, info: DatasetInfo, ref: ImageMeta | None) -> list[Problem]:
    if case.label is None:
        return [Problem(case.case_id, str(case.images[0]), "case has no label")]
    path = str(case.label)
    try:
        labels, meta = read_label(case.label)
    except InputError as err:
        return [Problem(case.case_id, err.where or path, err.problem)]
    problems = []
    stored = peek_stored_shape(case.label)
    volumetric = split_file_ending(case.label)[1].lower() not in PIL_ENDINGS
    if volumetric and stored is not None and len(stored) > info.spatial_dims:
        problems.append(Problem(case.case_id, path, f"label map has {len(stored)} axes "
                                f"{stored}; a label map has {info.spatial_dims} spatial axes "
                                "and no channel axis"))
    if ref is not None:
        mismatch = _geometry_problem(case.case_id, path, meta, ref, "label")
        problems += [mismatch] if mismatch else []
    present = (np.flatnonzero(np.bincount(labels.ravel())) if labels.dtype == np.uint8
               else np.unique(labels))
    unknown = sorted(set(present.tolist()) - set(info.labels))
    if unknown:
        problems.append(Problem(case.case_id, path, f"label values {unknown} are not in "
                                                    f"dataset.json labels {sorted(info.labels)}"))
    return problems


def check_dataset(root: str | os.PathLike[str]) -> tuple[DatasetInfo | None, list[Problem]]:
    """Check a dataset thoroughly, reading every image and label.

    Returns:
        The dataset info (``None`` when the layout itself cannot be loaded) and every problem
        found: structural ones first, then per case in case order.
    """
    try:
        info, problems = scan_dataset(root)
    except InputError as err:
        return None, [Problem(None, err.where or str(root), err.problem)]
    if not problems and info.num_training is not None and info.num_training != len(info.cases):
        problems.append(Problem(None, str(info.root / "dataset.json"),
                                f"numTraining is {info.num_training} but {len(info.cases)} "
                                "cases were found"))
    for case in info.cases:
        case_problems, ref = _check_images(case, info)
        problems += case_problems
        if info.layout != "dicom":  # DICOM series folders are images only
            problems += _check_label(case, info, ref)
    return info, problems
