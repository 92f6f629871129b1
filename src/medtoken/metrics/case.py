"""Per-case, per-class segmentation metrics: overlap counts, Dice, IoU, HD95 (mm) and NSD.

Overlap metrics follow nnU-Net v2 (``nnunetv2/evaluation/evaluate_predictions.py``): for each
label ``l`` the binary masks ``pred == l`` and ``ref == l`` give TP, FP, FN, TN,
``Dice = 2 TP / (2 TP + FP + FN)`` and ``IoU = TP / (TP + FP + FN)``.

Distance metrics are computed by MONAI (``monai.metrics.compute_hausdorff_distance`` with
``percentile=95`` and ``compute_surface_dice`` with ``class_thresholds=[tolerance]``), always
with the voxel spacing in mm, the Euclidean metric, symmetric distances and edge voxels as the
boundary (``use_subvoxels=False``). Axes of size 1 (a 2D slice stored as a depth-1 volume) are
dropped before the distances are computed, so such a slice scores like the 2D image it is;
the Dice/IoU counts do not depend on this.

Empty-mask policy (``EMPTY_POLICY``), per label:

- reference and prediction both empty: Dice, IoU, HD95 and NSD are NaN (as nnU-Net; NaN cases
  are left out of the ``np.nanmean`` class means);
- reference empty, prediction not (false positive), or prediction empty, reference not (missed
  structure): Dice 0, IoU 0, NSD 0 and HD95 = the image diagonal in mm,
  ``sqrt(sum((shape_i * spacing_i) ** 2))``, an upper bound of any distance in the image — the
  worst value rather than NaN, so such cases are never silently dropped (Metrics Reloaded
  assigns worst values too);
- ``empty_reference`` and ``empty_prediction`` (0/1) flag these cases in every result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice

__all__ = [
    "EMPTY_POLICY",
    "METRIC_NAMES",
    "OVERLAP_NAMES",
    "compute_case_metrics",
    "compute_overlap_metrics",
    "image_diagonal_mm",
]

HD_PERCENTILE = 95.0

EMPTY_POLICY = (
    "per label: reference and prediction both empty -> Dice, IoU, HD95_mm, NSD = NaN (left out "
    "of nanmean); exactly one of them empty -> Dice 0, IoU 0, NSD 0, HD95_mm = image diagonal "
    "in mm (worst value)"
)

METRIC_NAMES = (
    "Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref", "HD95_mm", "NSD",
    "empty_reference", "empty_prediction",
)
OVERLAP_NAMES = ("Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref")  # no distances


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image of ``shape`` voxels of size ``spacing`` mm."""
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True)))


def _overlap(pred_mask: np.ndarray, ref_mask: np.ndarray) -> dict[str, float]:
    """Confusion counts, Dice and IoU of two boolean masks of the same shape ``(*S)``."""
    tp = int(np.count_nonzero(pred_mask & ref_mask))
    fp = int(np.count_nonzero(pred_mask & ~ref_mask))
    fn = int(np.count_nonzero(~pred_mask & ref_mask))
    tn = int(pred_mask.size) - tp - fp - fn
    union = tp + fp + fn
    dice = 2 * tp / (2 * tp + fp + fn) if union > 0 else math.nan
    iou = tp / union if union > 0 else math.nan
    return {"Dice": dice, "IoU": iou, "TP": tp, "FP": fp, "FN": fn, "TN": tn,
            "n_pred": tp + fp, "n_ref": tp + fn}


def compute_overlap_metrics(pred: np.ndarray, ref: np.ndarray,
                            labels: Sequence[int]) -> dict[str, dict[str, float]]:
    """The overlap part of :func:`compute_case_metrics` (``OVERLAP_NAMES``), without distances.

    For decisions that only need Dice (post-processing); same definitions, NaN Dice/IoU for a
    label absent from both images.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    return {str(int(label)): _overlap(pred == label, ref == label) for label in labels}


def _drop_singleton_axes(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Remove axes of size 1 from both masks and from the spacing if two or more axes remain."""
    keep = [i for i, n in enumerate(pred_mask.shape) if n > 1]
    if len(keep) < 2:  # a line or a single voxel: MONAI needs a 2D or 3D image, keep all axes
        return pred_mask, ref_mask, tuple(float(s) for s in spacing)
    new_shape = tuple(pred_mask.shape[i] for i in keep)
    return (pred_mask.reshape(new_shape), ref_mask.reshape(new_shape),  # (*S) -> (*S')
            tuple(float(spacing[i]) for i in keep))


def _distances(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> tuple[float, float]:
    """HD95 (mm) and NSD at ``tolerance_mm`` by MONAI for two non-empty boolean masks ``(*S)``."""
    pred_mask, ref_mask, spacing = _drop_singleton_axes(pred_mask, ref_mask, spacing)
    y_pred = torch.from_numpy(pred_mask)[None, None].float()  # (*S) -> (1, 1, *S)
    y = torch.from_numpy(ref_mask)[None, None].float()  # (*S) -> (1, 1, *S)
    with warnings.catch_warnings():
        # NOTE: MONAI 1.6.1 passes its own deprecated `always_return_as_numpy` internally.
        warnings.filterwarnings("ignore", ".*always_return_as_numpy", FutureWarning)
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=True,
                                          distance_metric="euclidean", percentile=HD_PERCENTILE,
                                          spacing=list(spacing))
        nsd = compute_surface_dice(y_pred, y, class_thresholds=[tolerance_mm],
                                   include_background=True, distance_metric="euclidean",
                                   spacing=list(spacing), use_subvoxels=False)
    return float(hd95[0, 0]), float(nsd[0, 0])


def _check_inputs(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                  nsd_tolerance_mm: float) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    if ref.ndim not in (2, 3):
        raise ValueError(f"pred and ref must be 2D or 3D label maps (*S), got shape {ref.shape}")
    if len(spacing) != ref.ndim or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing={tuple(spacing)} must hold {ref.ndim} positive finite values "
                         f"(mm per axis of the {ref.ndim}D image)")
    if not (nsd_tolerance_mm >= 0 and math.isfinite(nsd_tolerance_mm)):
        raise ValueError(f"nsd_tolerance_mm={nsd_tolerance_mm} must be finite and >= 0")


def compute_case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    labels: Sequence[int],
    spacing: Sequence[float],
    nsd_tolerance_mm: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Metrics of one predicted label map against its reference, per label.

    See the module docstring for the formulas and the empty-mask policy.

    Args:
        pred: predicted integer label map ``(*S)``, 2D ``(H, W)`` or 3D ``(D, H, W)``.
        ref: reference label map of the same shape.
        labels: the labels to score (each one versus the rest).
        spacing: voxel size in mm per axis of ``(*S)``.
        nsd_tolerance_mm: tolerance τ of the normalized surface Dice, in mm.

    Returns:
        ``{str(label): {"Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref", "HD95_mm",
        "NSD", "empty_reference", "empty_prediction"}}``; counts and flags are ints, the rest
        floats (NaN where undefined).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    _check_inputs(pred, ref, spacing, nsd_tolerance_mm)
    diagonal = image_diagonal_mm(ref.shape, spacing)
    result: dict[str, dict[str, float]] = {}
    for label in labels:
        pred_mask, ref_mask = pred == label, ref == label
        metrics = _overlap(pred_mask, ref_mask)
        empty_pred, empty_ref = metrics["n_pred"] == 0, metrics["n_ref"] == 0
        if empty_pred and empty_ref:
            hd95, nsd = math.nan, math.nan
        elif empty_pred or empty_ref:
            hd95, nsd = diagonal, 0.0
        else:
            hd95, nsd = _distances(pred_mask, ref_mask, spacing, nsd_tolerance_mm)
        metrics.update(HD95_mm=hd95, NSD=nsd, empty_reference=int(empty_ref),
                       empty_prediction=int(empty_pred))
        result[str(int(label))] = metrics
    return result
