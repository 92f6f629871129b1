"""Whole-case prediction: MONAI sliding-window inference with Gaussian blending and mirror TTA.

Takes a ``predict_fn`` (any callable mapping ``(B, C, *roi)`` to logits), not a concrete model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import torch
from monai.inferers import sliding_window_inference

__all__ = ["SIGMA_SCALE", "mirror_axes_sets", "predict_probabilities"]

SIGMA_SCALE = 0.125  # Gaussian blending: sigma = SIGMA_SCALE * roi_size (nnU-Net's 1/8)


def mirror_axes_sets(spatial_dims: int) -> list[tuple[int, ...]]:
    """All subsets of spatial axes (as tensor dims of ``(B, C, *S)``) for mirror TTA."""
    axes = [2 + a for a in range(spatial_dims)]
    return [c for r in range(len(axes) + 1) for c in combinations(axes, r)]


@torch.inference_mode()
def predict_probabilities(predict_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                          roi_size: Sequence[int], overlap: float = 0.5, tta: bool = False,
                          sw_batch_size: int = 2,
                          accumulate_device: torch.device | None = None) -> torch.Tensor:
    """Softmax probabilities of a whole case.

    Args:
        predict_fn: maps ``(b, C, *roi_size)`` to logits ``(b, K, *roi_size)``.
        image: ``(1, C, *S)`` normalised image; smaller sizes are padded and cropped back by MONAI.
        roi_size: window size (the model's training patch).
        overlap: window overlap fraction (nnU-Net uses 0.5).
        tta: average over all mirrorings of the spatial axes (8 passes in 3D, 4 in 2D).
        sw_batch_size: windows per forward call.
        accumulate_device: where the whole-volume output is stitched (MONAI's ``device``;
            default: the image's device). Windows run on the image's device.

    Returns:
        ``(1, K, *S)`` probabilities.
    """
    spatial_dims = image.ndim - 2
    flips = mirror_axes_sets(spatial_dims) if tta else [()]
    total: torch.Tensor | None = None
    for axes in flips:
        x = torch.flip(image, axes) if axes else image
        logits = sliding_window_inference(x, roi_size=tuple(roi_size), sw_batch_size=sw_batch_size,
                                          predictor=predict_fn, overlap=overlap, mode="gaussian",
                                          sigma_scale=SIGMA_SCALE, padding_mode="constant",
                                          device=accumulate_device)
        assert isinstance(logits, torch.Tensor)
        probs = torch.softmax(logits.float(), dim=1)
        probs = torch.flip(probs, axes) if axes else probs
        total = probs if total is None else total + probs
    assert total is not None
    return total / len(flips)
