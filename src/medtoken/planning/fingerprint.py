"""Dataset fingerprint, as nnU-Net v2's ``DatasetFingerprintExtractor`` computes it.

Per case: the spacing and the shape after cropping to the bounding box of the nonzero voxels
(nnU-Net's ``crop_to_nonzero``), both in nnU-Net's axis order (see :mod:`medtoken.planning.axes`).
Per channel: statistics of foreground intensities (label > 0 inside the crop), sampled with
replacement ``int(10e7 // num_cases)`` per case with ``RandomState(1234)`` per case, exactly as
nnU-Net samples them, so the numbers agree with nnU-Net's ``dataset_fingerprint.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtoken.data.check import voxel_size_problem
from medtoken.data.datasets import Case, DatasetInfo
from medtoken.data.io import read_image, read_label
from medtoken.planning.axes import reader_writer_for, to_nnunet_axes
from medtoken.utils.errors import InputError

__all__ = ["INTENSITY_KEYS", "CaseFingerprint", "DatasetFingerprint", "extract_fingerprint",
           "nonzero_bbox"]

NUM_FOREGROUND_VOXELS = 10e7  # nnU-Net's total budget of sampled foreground intensities
FINGERPRINT_SEED = 1234
PERCENTILES = (0.5, 50.0, 99.5)
# key order of nnU-Net's foreground_intensity_properties_per_channel entries
INTENSITY_KEYS = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")


@dataclass(frozen=True)
class CaseFingerprint:
    """What the planner needs of one case (nnU-Net axis order ``(z, y, x)``)."""

    case_id: str
    spacing: tuple[float, ...]
    shape_after_crop: tuple[int, ...]
    relative_size_after_crop: float


@dataclass(frozen=True)
class DatasetFingerprint:
    """nnU-Net's ``dataset_fingerprint.json`` plus what the planner reads from ``dataset.json``.

    Attributes:
        cases: per-case spacing and cropped shape, sorted by case id.
        foreground_intensity_properties_per_channel: per channel, :data:`INTENSITY_KEYS` -> value.
        median_relative_size_after_cropping: median of cropped / original voxel counts.
        image_reader_writer: ``"SimpleITKIO"`` or ``"NaturalImage2DIO"``.
    """

    cases: tuple[CaseFingerprint, ...]
    foreground_intensity_properties_per_channel: tuple[dict[str, float], ...]
    median_relative_size_after_cropping: float
    image_reader_writer: str

    @property
    def spacings(self) -> np.ndarray:
        """``(N, 3)`` per-case spacings."""
        return np.array([c.spacing for c in self.cases], dtype=np.float64)

    @property
    def shapes_after_crop(self) -> np.ndarray:
        """``(N, 3)`` per-case shapes after cropping."""
        return np.array([c.shape_after_crop for c in self.cases], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """nnU-Net's ``dataset_fingerprint.json`` layout."""
        return {
            "spacings": [list(c.spacing) for c in self.cases],
            "shapes_after_crop": [list(c.shape_after_crop) for c in self.cases],
            "foreground_intensity_properties_per_channel": {
                str(i): dict(p)
                for i, p in enumerate(self.foreground_intensity_properties_per_channel)},
            "median_relative_size_after_cropping": self.median_relative_size_after_cropping,
        }


def nonzero_bbox(image: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the voxels that are nonzero in any channel of ``image (C, *S)``.

    nnU-Net fills holes in the mask first; filled holes lie inside the box, so the box is the same.
    An image without a nonzero voxel keeps its whole extent.
    """
    mask = np.any(image != 0, axis=0)  # (*S)
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(None))
    return tuple(box)


def _check_spacing(case: Case, spacing: tuple[float, ...] | None) -> None:
    """Refuse a spacing that is zero or not finite, as stored (nibabel reads a zero ``pixdim``
    as 1, with a warning: so this runs before the image is read) or as read."""
    for path in case.images:
        problem = voxel_size_problem(path, spacing)
        if problem is not None:
            raise InputError(path, f"case {case.case_id}: {problem}")


def _read_case(case: Case,
               num_channels: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], str]:
    """Image ``(C, z, y, x)``, labels ``(z, y, x)`` and spacing in nnU-Net's axis order, and the
    file ending."""
    if case.label is None:
        raise InputError(case.images[0], f"case {case.case_id}: no label file")
    _check_spacing(case, None)
    try:
        image, meta = read_image(case.images)  # (C, *S); refuses channels of different shapes
    except InputError as err:
        raise InputError(err.where, f"case {case.case_id}: {err.problem}") from None
    if image.shape[0] != num_channels:
        raise InputError(case.images[0], f"case {case.case_id}: image has {image.shape[0]} "
                                         f"channels, the dataset {num_channels}")
    labels, _ = read_label(case.label)  # (*S)
    if labels.shape != image.shape[1:]:
        raise InputError(case.label, f"case {case.case_id}: label shape {labels.shape} differs "
                                     f"from image shape {image.shape[1:]}")
    _check_spacing(case, meta.spacing)
    image_nn, spacing = to_nnunet_axes(image, meta.spacing, meta.file_ending)
    labels_nn, _ = to_nnunet_axes(labels[None], meta.spacing, meta.file_ending)
    return image_nn, labels_nn[0], spacing, meta.file_ending


def _analyze_case(case: Case, num_samples: int, seed: int,
                  out: np.ndarray) -> tuple[CaseFingerprint, bool, str]:
    """nnU-Net's ``analyze_case``: crop, then sample foreground intensities per channel.

    The samples go to ``out (C, num_samples)``; returns the case fingerprint, whether the case
    has a foreground voxel (else ``out`` is untouched) and the file ending.
    """
    image, labels, spacing, ending = _read_case(case, out.shape[0])  # (C, z, y, x), (z, y, x)
    box = nonzero_bbox(image)
    cropped, cropped_labels = image[(slice(None), *box)], labels[box]
    foreground = cropped_labels > 0
    has_foreground = bool(foreground.any())
    rng = np.random.RandomState(seed)
    for c, channel in enumerate(cropped if has_foreground else ()):
        pixels = channel[foreground]  # C order of nnU-Net's array, as nnU-Net draws from it
        out[c] = rng.choice(pixels, num_samples, replace=True)
    shape = tuple(int(s) for s in cropped.shape[1:])
    relative = float(np.prod(shape) / np.prod(image.shape[1:]))
    return CaseFingerprint(case.case_id, spacing, shape, relative), has_foreground, ending


def _intensity_properties(values: np.ndarray) -> dict[str, float]:
    """nnU-Net's statistics of ``values``; reorders ``values`` (percentiles in place)."""
    stats = {"mean": np.mean(values), "std": np.std(values), "min": np.min(values),
             "max": np.max(values)}  # before the in-place partition: the mean depends on order
    lo, median, hi = np.percentile(values, PERCENTILES, overwrite_input=True)
    stats.update({"median": median, "percentile_99_5": hi, "percentile_00_5": lo})
    return {k: float(stats[k]) for k in INTENSITY_KEYS}


def extract_fingerprint(info: DatasetInfo, case_ids: Sequence[str] | None = None, *,
                        num_foreground_voxels: float = NUM_FOREGROUND_VOXELS,
                        seed: int = FINGERPRINT_SEED) -> DatasetFingerprint:
    """The fingerprint of ``info``'s cases (all, or ``case_ids``), as nnU-Net computes it.

    Raises:
        InputError: naming the case, when a spacing is missing or zero, channels or the label
            differ in shape, a file is unreadable, or no case has a foreground voxel.
    """
    cases = [info.case(c) for c in (info.case_ids if case_ids is None else sorted(case_ids))]
    if not cases:
        raise InputError(info.root, "no cases to fingerprint")
    num_samples = int(num_foreground_voxels // len(cases))
    samples = np.empty((info.num_channels, len(cases) * num_samples), dtype=np.float32)
    results, filled = [], 0
    for case in cases:
        results.append(_analyze_case(case, num_samples, seed,
                                     samples[:, filled:filled + num_samples]))
        filled += num_samples if results[-1][1] else 0
    if filled == 0:
        raise InputError(info.root, "no case has a foreground voxel (label > 0); cannot compute "
                                    "foreground intensity statistics")
    values = samples[:, :filled]
    if filled < samples.shape[1]:  # nnU-Net concatenates an empty float64 list for such cases
        values = values.astype(np.float64)
    return DatasetFingerprint(
        cases=tuple(r[0] for r in results),
        foreground_intensity_properties_per_channel=tuple(_intensity_properties(v)
                                                          for v in values),
        median_relative_size_after_cropping=float(np.median([r[0].relative_size_after_crop
                                                             for r in results])),
        image_reader_writer=reader_writer_for(results[0][2]))
