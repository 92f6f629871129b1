"""Resampling to a target spacing and back, ported from nnU-Net v2's default resampling.

``nnunetv2/preprocessing/resampling/default_resampling.py`` (``resample_data_or_seg``) and
batchgenerators' ``resize_segmentation``, with ``skimage.transform.resize`` (``mode="edge"``,
``anti_aliasing=False``, ``clip=True``) written as the ``scipy.ndimage.zoom`` call it makes
(``grid_mode=True``, ``mode="nearest"``), so that neither nnunetv2 nor scikit-image is needed:

- images: order 3;
- label maps: order 1 on each label's mask, a voxel takes the label whose mask is >= 0.5;
- predicted probabilities (going back to an input's geometry): order 1, then argmax;
- *separate z*: when the spacing (the current one, else the target) is anisotropic (largest /
  smallest spacing > 3) along exactly one axis, each slice across that axis is resized in 2D
  with the order above and the anisotropic axis with order 0 (nearest).

An array whose new shape equals its shape is returned as it is (nnU-Net's rule), so data already
at its target spacing is not resampled at all. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medtoken.utils.errors import InputError

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "new_shape_for",
    "parse_spacing",
    "resample_image",
    "resample_label",
    "resample_probabilities",
    "resize_array",
    "separate_z_axis",
]

ANISOTROPY_THRESHOLD = 3.0  # nnU-Net's ANISO_THRESHOLD


def new_shape_for(shape: Sequence[int], spacing: Sequence[float],
                  target_spacing: Sequence[float] | np.ndarray) -> tuple[int, ...]:
    """``round(shape * spacing / target_spacing)`` per axis (nnU-Net's ``compute_new_shape``)."""
    return tuple(round(float(s) / float(t) * int(n))
                 for n, s, t in zip(shape, spacing, target_spacing, strict=True))


def _anisotropic_axis(spacing: Sequence[float]) -> int | None:
    """The single axis with the largest spacing when max/min > the threshold, else ``None``."""
    sp = np.asarray(spacing, dtype=np.float64)
    if len(sp) != 3 or sp.max() / sp.min() <= ANISOTROPY_THRESHOLD:
        return None
    axes = np.where(sp.max() / sp == 1)[0]
    return int(axes[0]) if len(axes) == 1 else None


def separate_z_axis(current: Sequence[float], target: Sequence[float]) -> int | None:
    """nnU-Net's ``determine_do_sep_z_and_axis`` (``force_separate_z=None``): the axis to
    resample with order 0, judged on the current spacing first, else on the target."""
    sp = np.asarray(current, dtype=np.float64)
    if len(sp) == 3 and sp.max() / sp.min() > ANISOTROPY_THRESHOLD:
        return _anisotropic_axis(current)
    return _anisotropic_axis(target)


def resize_array(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(array, shape, order, mode="edge", anti_aliasing=False)``."""
    x = array.astype(np.float64)
    zoom = [n / s for n, s in zip(shape, x.shape, strict=True)]
    out = ndimage.zoom(x, zoom, order=order, mode="nearest", grid_mode=True)
    if order > 0:
        np.clip(out, x.min(), x.max(), out=out)
    return out


def _resize_label(label: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """batchgenerators' ``resize_segmentation``: per-label masks, ``>= 0.5`` wins (later labels
    overwrite earlier ones); order 0 resizes the labels directly."""
    if order == 0:
        return resize_array(label, shape, 0).astype(label.dtype)
    out = np.zeros(tuple(shape), dtype=label.dtype)
    for value in np.unique(label):
        out[resize_array(label == value, shape, order) >= 0.5] = value
    return out


def _resize_z(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Order-0 resize to ``shape`` (only the anisotropic axis changes), as nnU-Net maps it."""
    coords = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float64)
    for a in range(volume.ndim):
        coords[a] = volume.shape[a] / shape[a] * (coords[a] + 0.5) - 0.5
    return ndimage.map_coordinates(volume, coords, order=0, mode="nearest")


def _resample_channel(x: np.ndarray, shape: tuple[int, ...], is_seg: bool, order: int,
                      axis: int | None) -> np.ndarray:
    """One channel ``(*S)`` to ``shape``; in-plane first, then order 0 along ``axis``."""
    resize = _resize_label if is_seg else resize_array
    if axis is None:
        return resize(x, shape, order)
    plane_shape = tuple(n for a, n in enumerate(shape) if a != axis)
    stacked = np.stack([resize(np.take(x, i, axis=axis), plane_shape, order)
                        for i in range(x.shape[axis])], axis=axis)  # in-plane resized
    if x.shape[axis] == shape[axis]:
        return stacked
    return _resize_z(stacked, shape)


def _resample(data: np.ndarray, shape: tuple[int, ...], current: Sequence[float],
              target: Sequence[float], is_seg: bool, order: int) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg`` of ``data (C, *S)`` to ``(C, *shape)``."""
    if tuple(data.shape[1:]) == tuple(shape):
        return data
    axis = separate_z_axis(current, target)
    out = np.empty((data.shape[0], *shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        out[c] = _resample_channel(data[c], shape, is_seg, order, axis)
    return out


def resample_image(image: np.ndarray, spacing: Sequence[float],
                   target_spacing: Sequence[float]) -> np.ndarray:
    """``image (C, *S)`` at ``spacing`` -> ``(C, *S')`` at ``target_spacing`` (order 3)."""
    shape = new_shape_for(image.shape[1:], spacing, target_spacing)
    return _resample(image, shape, spacing, target_spacing, is_seg=False, order=3)


def resample_label(label: np.ndarray, spacing: Sequence[float],
                   target_spacing: Sequence[float]) -> np.ndarray:
    """Labels ``(1, *S)`` -> ``(1, *S')`` at ``target_spacing`` (order 1 per label mask)."""
    shape = new_shape_for(label.shape[1:], spacing, target_spacing)
    return _resample(label, shape, spacing, target_spacing, is_seg=True, order=1)


def resample_probabilities(probs: np.ndarray, shape: Sequence[int], spacing: Sequence[float],
                           target_spacing: Sequence[float]) -> np.ndarray:
    """Class probabilities ``(K, *S)`` at ``spacing`` -> ``(K, *shape)`` (order 1): what nnU-Net
    does to a prediction before the argmax that gives the labels in the input's geometry."""
    return _resample(probs, tuple(int(n) for n in shape), spacing, target_spacing,
                     is_seg=False, order=1)


def parse_spacing(option: str, spatial_dims: int,
                  words: Sequence[str] = ("auto", "plan", "native")) -> str | tuple[float, ...]:
    """``--spacing``: one of ``words`` (``train``: ``auto``, ``plan``, ``native``; ``predict``
    has no ``auto``), or ``X,Y,Z`` (mm per array axis) returned as a tuple of ``spatial_dims``
    positive numbers."""
    if option in words:
        return option
    try:
        values = tuple(float(v) for v in option.split(","))
    except ValueError:
        values = ()
    if len(values) != spatial_dims or not all(v > 0 for v in values):
        raise InputError("--spacing", f"expected {', '.join(words)} or {spatial_dims} positive "
                         f"comma-separated numbers, got '{option}'")
    return values
