"""``medtoken.predict``: predict one image (array or file) from Python, as ``medtoken predict``
does: the same loading, options and :func:`~medtoken.inference.predict.predict_array`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoken.data.io import read_image
from medtoken.inference.ensemble import check_members_agree, load_members
from medtoken.inference.options import PredictOptions
from medtoken.inference.predict import predict_array, prepare_members
from medtoken.models.checkpoint import LoadedModel
from medtoken.utils.device import resolve_device
from medtoken.utils.errors import InputError

__all__ = ["predict"]

ModelLike = str | os.PathLike[str] | LoadedModel


def _members(model_or_run: ModelLike | Sequence[ModelLike], device: torch.device,
             export_device: torch.device | None) -> list[LoadedModel]:
    items = [model_or_run] if isinstance(model_or_run, str | os.PathLike | LoadedModel) \
        else list(model_or_run)
    if not items:
        raise InputError("model_or_run", "no model given")
    loaded = [m for m in items if isinstance(m, LoadedModel)]
    paths = [m for m in items if not isinstance(m, LoadedModel)]
    members = loaded + (load_members(paths, device, export_device=export_device)
                        if paths else [])
    check_members_agree(members)
    return members


def _as_image(image: np.ndarray, spatial_dims: int, channels: int) -> np.ndarray:
    """``(C, *S)``; a single-channel ``(*S)`` gets its channel axis."""
    array = np.asarray(image)
    if array.ndim == spatial_dims and channels == 1:
        array = array[None]
    if array.ndim != spatial_dims + 1 or array.shape[0] != channels:
        raise InputError("image", f"shape {array.shape} is not (C={channels}, "
                         f"{spatial_dims} spatial axes) for this model")
    return array


def predict(model_or_run: ModelLike | Sequence[ModelLike],
            image: np.ndarray | str | os.PathLike[str],
            spacing: Sequence[float] | None = None, *, device: str = "auto",
            return_probabilities: bool = False, **options: Any
            ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Segment one image with a trained model or an ensemble.

    Args:
        model_or_run: a run folder, checkpoint, exported model, a folder of ``fold_N`` runs, a
            :class:`~medtoken.models.checkpoint.LoadedModel`, or a list of these (an ensemble).
        image: ``(C, *S)`` array (``(*S)`` for one channel) in the axis order medtoken's readers
            give: a NIfTI volume stored as ``(X, Y, Z)`` is ``(C, X, Y, Z)``, a PNG of H rows
            and W columns ``(C, H, W)``; or a path to an image file (read that way).
        spacing: the image's own voxel size, mm per spatial axis of an array (a path gives its
            own). A model trained at a target spacing (an nnunet plan's) predicts the image
            resampled to it and returns labels in the image's shape; an array without
            ``spacing`` is predicted on its own grid.
        device: ``auto``, ``cpu`` or ``cuda`` for the windows (exported models: CPU unless
            told).
        return_probabilities: also return the probabilities ``(K, *S)``.
        **options: any :class:`~medtoken.inference.options.PredictOptions` field (``overlap``,
            ``tta``, ``stitching``, ``accumulate_dtype``, ``accumulate_device``,
            ``batch_size``, ``probabilities_dtype``, ``force_memory``, ``progress``,
            ``compile``, and ``target_spacing``: ``"plan"`` (default), ``"native"`` or
            ``"X,Y,Z"``, the grid the network sees, like ``predict --spacing``).

    Returns:
        Labels ``(*S)`` (uint8 up to 256 classes), or ``(labels, probabilities)``.

    Raises:
        InputError: a model that does not load, members that differ, an image of the wrong
            shape, a bad option, or a case that does not fit in memory.
    """
    window_device = resolve_device(device)
    members = _members(model_or_run, window_device,
                       None if device == "auto" else window_device)
    model = members[0].model
    image_spacing = spacing
    if isinstance(image, str | os.PathLike):
        array, meta = read_image(Path(image))
        where = str(image)
        image_spacing = image_spacing or meta.spacing
        if meta.spatial_dims != model.spatial_dims:
            raise InputError(image, f"is {meta.spatial_dims}D; the model is "
                             f"{model.spatial_dims}D")
    else:
        array, where = image, "image"
    array = _as_image(array, model.spatial_dims, model.in_channels)
    if spacing is not None and (len(spacing) != model.spatial_dims
                                or any(float(s) <= 0 for s in spacing)):
        raise InputError("spacing", f"needs {model.spatial_dims} positive values, got "
                         f"{tuple(spacing)}")
    opts = PredictOptions(save_probabilities=return_probabilities, **options)
    labels, probabilities = predict_array(prepare_members(members, opts), array, opts, where=where,
                                          image_spacing=image_spacing)
    if return_probabilities:
        assert probabilities is not None
        return labels, probabilities
    return labels
