"""Validation during training: whole cases, sliding-window inference, Dice per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medtoken.inference.sliding_window import predict_probabilities
from medtoken.train.data import LoadedCase

__all__ = ["dice_per_class", "validate"]


def dice_per_class(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of classes ``1..num_classes-1``; NaN where both masks are empty (nnU-Net's rule)."""
    scores = []
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        denom = int(p.sum()) + int(r.sum())
        scores.append(float("nan") if denom == 0 else 2.0 * int((p & r).sum()) / denom)
    return scores


def validate(model: Any, cases: Sequence[LoadedCase], roi_size: Sequence[int],
             overlap: float, device: torch.device) -> list[float]:
    """Mean Dice per foreground class over ``cases`` (NaN-aware mean).

    Returns:
        one value per foreground class (classes 1..K-1).
    """
    was_training = model.training
    model.eval()
    per_case = []
    for case in cases:
        x = torch.from_numpy(case.image)[None].to(device)  # (1, C, *S)
        probs = predict_probabilities(model, x, roi_size, overlap=overlap)
        pred = probs[0].argmax(0).cpu()
        ref = torch.from_numpy(case.label[0]).long()
        per_case.append(dice_per_class(pred, ref, model.num_classes))
    model.train(was_training)
    if not per_case:
        return []
    with np.errstate(all="ignore"):
        return [float(v) for v in np.nanmean(np.array(per_case, dtype=float), axis=0)]
