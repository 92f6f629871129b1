"""Top-k token selection: keep counts, Gumbel perturbation, hard top-k, straight-through masks.

Pure tensor functions used by :class:`medtoken.tokens.pruning.TokenPruner` (STP, Zhou et al.,
"Token Sparsification for Faster Medical Image Segmentation", IPMI 2023, arXiv:2303.06522).

Selection returns *index tensors* (sorted, so kept tokens stay in raster order) rather than boolean
masks; the hard split itself is the shared :func:`~medtoken.tokens.indexing.split_topk` (with
``order="index"``, re-exported here).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from medtoken.tokens.indexing import split_topk

__all__ = [
    "Selection",
    "gumbel_noise_like",
    "keep_count",
    "straight_through_mask",
    "straight_through_topk",
]


class Selection(NamedTuple):
    """Result of a top-k split of ``n`` tokens into ``k`` kept and ``n - k`` pruned.

    Attributes:
        keep_idx: ``(B, k)`` indices into the current sequence, ascending.
        prune_idx: ``(B, n - k)`` indices into the current sequence, ascending.
        mask: ``(B, n)`` straight-through keep mask (forward value exactly 1 at kept and 0 at
            pruned tokens, gradient of the tempered softmax), or ``None`` when no gradient is
            wanted (inference, random selection).
    """

    keep_idx: torch.Tensor
    prune_idx: torch.Tensor
    mask: torch.Tensor | None


def keep_count(num_tokens: int, keep_ratio: float) -> int:
    """Tokens kept out of ``num_tokens``: the paper's rule ``floor(n · (1 − ρ))`` in float64.

    The paper (and its code, ``tp_ratio``) specifies the *prune* ratio ``ρ = 1 − keep_ratio``.
    To reproduce its counts exactly the product is taken with ``1 − ρ`` as the code computes it:
    ``1 − 0.9 = 0.09999999999999998``, so ``n = 10, keep_ratio = 0.1`` keeps 0 tokens, not 1.

    Args:
        num_tokens: tokens entering the stage (CLS excluded).
        keep_ratio: fraction kept, in ``(0, 1]``.

    Returns:
        The number of kept tokens, in ``[0, num_tokens]``.
    """
    prune_ratio = 1.0 - keep_ratio  # the paper's ρ
    return math.floor(num_tokens * (1.0 - prune_ratio))


def gumbel_noise_like(scores: torch.Tensor, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """Standard Gumbel noise ``g = −log(E)``, ``E ~ Exp(1)``, shaped like ``scores``.

    An ``E`` of exactly 0 would give ``g = +inf``; such entries are replaced by 0 (as upstream).

    Returns:
        Noise with the shape, dtype and device of ``scores``.
    """
    noise = -torch.empty_like(scores).exponential_(generator=generator).log()
    return torch.where(torch.isinf(noise), torch.zeros_like(noise), noise)


def straight_through_mask(soft: torch.Tensor, keep_idx: torch.Tensor) -> torch.Tensor:
    """Hard 0/1 keep mask with the gradient of ``soft`` (straight-through estimator).

    ``hard + (soft − stopgrad(soft))``: the correction term is exactly zero in the forward pass,
    so the forward value is exactly the hard mask (1.0 or 0.0, no rounding), and
    ``∂mask/∂soft = I``.

    Args:
        soft: ``(B, n)`` relaxed weights (e.g. a tempered softmax of the scores).
        keep_idx: ``(B, k)`` kept positions.

    Returns:
        ``(B, n)``.
    """
    hard = torch.zeros_like(soft).scatter(1, keep_idx, 1.0)  # (B, n) one at kept positions
    return hard + (soft - soft.detach())


def straight_through_topk(log_scores: torch.Tensor, k: int, temperature: float = 1.0,
                          noise: torch.Tensor | None = None) -> Selection:
    """Training-time STP selection: top-k of perturbed scores with a straight-through mask.

    With ``u = log_scores + noise`` (Gumbel noise: the Gumbel-top-k trick, i.e. ``k`` draws without
    replacement from ``softmax(log_scores)``), the kept set is the top-k of ``u`` and the mask's
    gradient is that of ``y = softmax(u / τ)``: ``∂y/∂u = (1/τ)(diag(y) − y yᵀ)``.

    Args:
        log_scores: ``(B, n)`` token scores (STP: log-sigmoid of the score network's logits).
        k: tokens to keep.
        temperature: ``τ > 0`` of the relaxation.
        noise: ``(B, n)`` perturbation (e.g. :func:`gumbel_noise_like`); ``None`` gives the
            deterministic top-k with the same straight-through gradient.

    Returns:
        A :class:`Selection` with ``mask`` set.
    """
    perturbed = log_scores if noise is None else log_scores + noise  # (B, n)
    keep_idx, prune_idx = split_topk(perturbed.detach(), k, order="index", ties="topk")
    soft = torch.softmax(perturbed / temperature, dim=1)  # (B, n), one softmax per sample
    return Selection(keep_idx, prune_idx, straight_through_mask(soft, keep_idx))
