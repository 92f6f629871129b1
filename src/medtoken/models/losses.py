"""Segmentation losses: the training loop's DiceCE and nnU-Net's deep-supervision loss.

nnU-Net v2 (``nnUNetTrainer._build_loss``) trains with ``DC_and_CE_loss``: cross-entropy plus
``MemoryEfficientSoftDiceLoss`` (softmax, no background, smooth 1e-5, batch Dice per the plan),
weights 1 and 1, at each decoder resolution of the deep-supervision outputs. Resolution ``i``
(0 = full) weighs ``1/2**i``; the lowest weighs 0; the weights are normalised to sum to 1. The
target of resolution ``i`` is the label map resized by nearest neighbour (``nearest-exact``) with
the per-axis scale ``1/prod(strides[:i+1])`` (``DownsampleSegForDSTransform``).

Under DDP with batch Dice the Dice terms are summed over all ranks before the ratio, as nnU-Net
does (``AllGatherGrad``; here ``torch.distributed.nn.functional.all_reduce``, whose backward sums
the gradients the same way), so the loss is that of the global batch: the DDP training step runs
the forward inside :func:`batch_dice_over_ranks`. Difference from nnU-Net: the zero-weight
lowest resolution is multiplied by 0 instead of skipped, so that its output layer receives a
(zero) gradient and DDP needs no search for unused parameters (nnU-Net sets that weight to 1e-6
under DDP for the same reason).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

__all__ = [
    "batch_dice_over_ranks",
    "deep_supervision_loss",
    "deep_supervision_scales",
    "deep_supervision_weights",
    "dice_ce_loss",
    "downsample_target",
    "soft_dice_loss",
]

DICE_SMOOTH = 1e-5


_OVER_RANKS: ContextVar[bool] = ContextVar("batch_dice_over_ranks", default=False)


@contextmanager
def batch_dice_over_ranks() -> Iterator[None]:
    """Inside, batch Dice terms are summed over the ranks of the process group (the DDP
    training step, where every rank runs the same forward); outside (a memory probe on rank 0
    alone, single-process runs) each process pools its own batch."""
    token = _OVER_RANKS.set(True)
    try:
        yield
    finally:
        _OVER_RANKS.reset(token)


def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks of the default process group (autograd-aware) inside
    :func:`batch_dice_over_ranks`; ``t`` itself otherwise or without a group of several."""
    import torch.distributed as dist

    # the process group first: single-process runs (compiled ones too) never read the flag
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
            and _OVER_RANKS.get()):
        return t
    if not t.requires_grad:
        t = t.clone()
        dist.all_reduce(t)
        return t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool,
                   smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """nnU-Net's ``MemoryEfficientSoftDiceLoss`` with softmax and ``do_bg=False``.

    Args:
        logits: ``(B, K, *S)``.
        target: integer labels ``(B, 1, *S)``.
        batch_dice: sum the terms over the batch before the ratio (else per sample); under
            DDP over the global batch of all ranks.

    Returns:
        ``-mean(dice)`` over foreground classes (and samples without ``batch_dice``).
    """
    probs = torch.softmax(logits, 1)[:, 1:]  # (B, K-1, *S)
    axes = tuple(range(2, logits.ndim))
    with torch.no_grad():
        onehot = torch.zeros_like(logits, dtype=torch.bool)
        onehot.scatter_(1, target.long(), True)
        onehot = onehot[:, 1:]
        sum_gt = onehot.sum(axes)  # (B, K-1)
    intersect = (probs * onehot).sum(axes)
    sum_pred = probs.sum(axes)
    if batch_dice:
        intersect, sum_pred, sum_gt = (_sum_over_ranks(t.sum(0))
                                       for t in (intersect, sum_pred, sum_gt))
    dice = (2 * intersect + smooth) / torch.clip(sum_gt + sum_pred + smooth, 1e-8)
    return -dice.mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool) -> torch.Tensor:
    """nnU-Net's ``DC_and_CE_loss``: ``CE + soft Dice`` (weights 1, 1) on ``(B, K, *S)``."""
    ce = F.cross_entropy(logits, target[:, 0].long())
    return ce + soft_dice_loss(logits, target, batch_dice)


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
    """Per decoder output (full resolution first), the scale of each axis: nnU-Net's
    ``1 / cumprod(strides)`` without the bottleneck (``n_stages - 1`` entries)."""
    scales, product = [], [1] * len(strides[0])
    for stride in strides[:-1]:
        product = [p * s for p, s in zip(product, stride, strict=True)]
        scales.append(tuple(1.0 / p for p in product))
    return scales


def deep_supervision_weights(n: int) -> list[float]:
    """``1/2**i`` for ``i < n``, the last set to 0, normalised to sum 1 (a single output: 1)."""
    if n == 1:
        return [1.0]
    raw = [1.0 / 2**i for i in range(n - 1)] + [0.0]
    total = sum(raw)
    return [w / total for w in raw]


def downsample_target(target: torch.Tensor, scale: Sequence[float]) -> torch.Tensor:
    """``(B, 1, *S)`` labels resized to ``round(S * scale)`` by ``nearest-exact`` (nnU-Net's
    ``DownsampleSegForDSTransform``); returned as is when every scale is 1."""
    if all(s == 1 for s in scale):
        return target
    shape = [round(n * s) for n, s in zip(target.shape[2:], scale, strict=True)]
    resized = F.interpolate(target.float(), size=shape, mode="nearest-exact")
    return resized.to(target.dtype)


def deep_supervision_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor,
                          scales: Sequence[Sequence[float]], batch_dice: bool) -> torch.Tensor:
    """nnU-Net's weighted ``DC_and_CE_loss`` over the decoder outputs.

    Args:
        outputs: logits per resolution, full resolution first, ``(B, K, *S_i)``.
        target: integer labels ``(B, 1, *S)`` at full resolution.
        scales: per output, the per-axis scale of its resolution (``deep_supervision_scales``).
        batch_dice: see :func:`soft_dice_loss`.
    """
    if len(outputs) != len(scales):
        raise ValueError(f"{len(outputs)} outputs but {len(scales)} scales")
    weights = deep_supervision_weights(len(outputs))
    terms = [w * dice_ce_loss(o, downsample_target(target, s), batch_dice)
             for w, o, s in zip(weights, outputs, scales, strict=True)]
    return torch.stack(terms).sum()
