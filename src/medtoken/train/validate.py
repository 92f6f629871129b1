"""Validation during training: whole cases, sliding-window inference, Dice per class.

Under ``torchrun`` each rank predicts its share of the cases (``cases[rank::world_size]``) and
the per-case scores are gathered in the original case order, so every rank gets the numbers a
single process would compute for the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medtoken.inference.sliding_window import predict_probabilities
from medtoken.train.data import LoadedCase
from medtoken.train.distributed import SINGLE, DistInfo, gather_split

__all__ = ["case_dice", "dice_per_class", "validate"]


def dice_per_class(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of classes ``1..num_classes-1``; NaN where both masks are empty (nnU-Net's rule)."""
    scores = []
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        denom = int(p.sum()) + int(r.sum())
        scores.append(float("nan") if denom == 0 else 2.0 * int((p & r).sum()) / denom)
    return scores


def case_dice(model: Any, cases: Sequence[LoadedCase], roi_size: Sequence[int],
              overlap: float, device: torch.device) -> list[list[float]]:
    """Per case, the Dice of classes ``1..K-1`` (see :func:`dice_per_class`); eval mode."""
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
    return per_case


def validate(model: Any, cases: Sequence[LoadedCase], roi_size: Sequence[int],
             overlap: float, device: torch.device, dist: DistInfo = SINGLE) -> list[float]:
    """Mean Dice per foreground class over all validation cases (NaN-aware mean).

    Args:
        cases: this rank's share of the validation cases (all of them on one process); every
            rank must call this, also one whose share is empty.

    Returns:
        one value per foreground class (classes 1..K-1), identical on every rank.
    """
    per_case = gather_split(case_dice(model, cases, roi_size, overlap, device), dist)
    if not per_case:
        return []
    with np.errstate(all="ignore"):
        return [float(v) for v in np.nanmean(np.array(per_case, dtype=float), axis=0)]
