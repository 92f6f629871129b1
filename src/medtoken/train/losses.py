"""Segmentation losses of the training recipes, on logits ``(B, K, *S)`` and labels ``(B, 1, *S)``.

A model whose ``computes_segmentation_loss`` is set (nnU-Net's deep supervision,
:func:`medtoken.models.losses.deep_supervision_loss`) brings its whole segmentation loss in
``forward_with_aux``'s losses; for it the recipe's ``loss`` is not used (:func:`build_loss`
returns zero). The training loop, the memory probe and the benchmark's train step all take their
loss from :func:`build_loss`.

- ``dice_ce``: MONAI's ``DiceCELoss`` on the softmax (Dice and cross-entropy weighted 1:1; the
  ``loss_*`` fields of :class:`~medtoken.train.config.TrainConfig` set its Dice term).
- ``dice_focal_bce``: the TM-UNet release's ``0.8 (1 - Dice) + 0.2 focal``, with
  ``focal = 0.8 (1 - exp(-BCE))^2 BCE`` taken from the *batch-mean* BCE (not per pixel). The
  release is binary (one sigmoid channel); here each foreground class ``c`` is one-vs-rest on the
  softmax probability ``p_c`` and the per-class losses are averaged, which for ``K = 2`` is the
  release's loss exactly (``softmax(l)_1 = sigmoid(l_1 - l_0)``). BCE is computed from
  log-probabilities (stable), with PyTorch's clamp of the logs at -100.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.losses import DiceCELoss

from medtoken.train.config import TrainConfig

__all__ = ["DiceFocalBCELoss", "build_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOG_CLAMP = -100.0  # torch.nn.functional.binary_cross_entropy's clamp of log p and log(1 - p)


class DiceFocalBCELoss(torch.nn.Module):
    """``dice_weight (1 - Dice) + focal_weight * alpha (1 - exp(-BCE))^gamma BCE`` per class.

    Args:
        include_background: also score class 0 (one-vs-rest like the others).
        batch: one Dice over the whole batch (the release) instead of a mean over samples.
        smooth_nr, smooth_dr: Dice smoothing of numerator and denominator (release: 1, 1).
        dice_weight, focal_weight, alpha, gamma: the release's 0.8, 0.2, 0.8 and 2.
    """

    def __init__(self, include_background: bool = False, batch: bool = True,
                 smooth_nr: float = 1.0, smooth_dr: float = 1.0, dice_weight: float = 0.8,
                 focal_weight: float = 0.2, alpha: float = 0.8, gamma: float = 2.0) -> None:
        super().__init__()
        self.include_background, self.batch = include_background, batch
        self.smooth_nr, self.smooth_dr = smooth_nr, smooth_dr
        self.dice_weight, self.focal_weight = dice_weight, focal_weight
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, K, *S)``, ``target (B, 1, *S)`` integer labels -> scalar."""
        logits = logits.float()
        num_classes = logits.shape[1]
        log_z = torch.logsumexp(logits, dim=1)  # (B, *S)
        losses = []
        for c in range(0 if self.include_background else 1, num_classes):
            t = (target[:, 0] == c).float()  # (B, *S)
            log_p = logits[:, c] - log_z
            others = torch.cat([logits[:, :c], logits[:, c + 1:]], dim=1)
            log_1mp = torch.logsumexp(others, dim=1) - log_z  # log(1 - p_c), stable
            p = log_p.exp()
            bce = -(t * log_p.clamp(min=LOG_CLAMP)
                    + (1 - t) * log_1mp.clamp(min=LOG_CLAMP)).mean()
            focal = self.alpha * (1 - torch.exp(-bce)) ** self.gamma * bce
            dims = tuple(range(0 if self.batch else 1, p.ndim))
            dice = (2 * (p * t).sum(dims) + self.smooth_nr) / (p.sum(dims) + t.sum(dims)
                                                                + self.smooth_dr)
            losses.append(self.dice_weight * (1 - dice.mean()) + self.focal_weight * focal)
        return torch.stack(losses).mean()


def _zero_loss(logits: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
    return logits.new_zeros((), dtype=torch.float32)


def build_loss(cfg: TrainConfig, model: Any = None) -> LossFn:
    """The segmentation loss ``cfg.loss`` with its ``loss_*`` settings, or the model's own
    (zero here) when ``model.computes_segmentation_loss``."""
    if getattr(model, "computes_segmentation_loss", False):
        return _zero_loss
    if cfg.loss == "dice_focal_bce":
        return DiceFocalBCELoss(cfg.loss_include_background, cfg.loss_batch, cfg.loss_smooth_nr,
                                cfg.loss_smooth_dr)
    if cfg.loss == "dice_ce":
        return DiceCELoss(to_onehot_y=True, softmax=True,
                          include_background=cfg.loss_include_background,
                          squared_pred=cfg.loss_squared_pred, batch=cfg.loss_batch,
                          smooth_nr=cfg.loss_smooth_nr, smooth_dr=cfg.loss_smooth_dr)
    raise ValueError(f"unknown loss {cfg.loss!r}")


