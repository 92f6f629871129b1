"""Index plumbing shared by every token family: top-k splits, gathers and scatters.

One spelling of each, used by SCD (:mod:`~medtoken.tokens.pruning`,
:mod:`~medtoken.tokens.topk`, :mod:`~medtoken.tokens.assembly`) and TokenSeg
(:mod:`~medtoken.tokens.selection`, :mod:`medtoken.models.tokenseg`).

Layouts: scores ``(B, N)``, tokens ``(B, N, C)``, indices ``(B, K)`` (int64, into the ``N`` axis).
Selections are *index tensors*, not boolean masks: gathers with index tensors avoid ``nonzero``
and boolean indexing, and every sample in a batch keeps the same number of tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["ORDERS", "TIES", "gather_tokens", "scatter_tokens", "split_topk"]

ORDERS = ("score", "index")
Order = Literal["score", "index"]
TIES = ("stable", "topk")
Ties = Literal["stable", "topk"]


def split_topk(scores: torch.Tensor, k: int, order: Order = "index",
               ties: Ties = "stable") -> tuple[torch.Tensor, torch.Tensor]:
    """Hard top-k split: the ``k`` highest scores of every row and the rest.

    Args:
        scores: ``(B, N)``; larger is kept (not differentiated through).
        k: tokens to keep, ``0 <= k <= N``.
        order: ``"score"``: both index sets highest score first; ``"index"``: both ascending
            (raster order preserved).
        ties: how equal scores at the cut are broken: ``"stable"``, the lower index is kept;
            ``"topk"``, as ``torch.topk`` keeps them (the STP+MTA release, so SCD).
            Only the kept *set* depends on it; with ``order="score"`` the rest's tie order is
            unspecified under ``"topk"``.

    Returns:
        ``(keep_idx (B, k), rest_idx (B, N - k))``, disjoint and together a permutation of
        ``0..N-1`` in every row.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got '{order}'")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got '{ties}'")
    if not 0 <= k <= scores.shape[-1]:
        raise ValueError(f"k must be in [0, {scores.shape[-1]}], got {k}")
    detached = scores.detach()
    if ties == "topk":
        keep_idx, rest_idx = _split_like_topk(detached, k)
    else:
        ranked = torch.sort(detached, dim=-1, descending=True, stable=True).indices  # (B, N)
        keep_idx, rest_idx = ranked[:, :k], ranked[:, k:]
    if order == "index":
        keep_idx, rest_idx = keep_idx.sort(dim=-1).values, rest_idx.sort(dim=-1).values
    return keep_idx, rest_idx


def _split_like_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk``'s kept set (best first) and the rest (best first), without a stable sort
    (which the TorchScript-based ONNX exporter rejects)."""
    n = scores.shape[-1]
    keep_idx = torch.topk(scores, k, dim=-1, largest=True, sorted=True).indices  # (B, k)
    kept = torch.zeros_like(scores, dtype=torch.long).scatter(1, keep_idx, 1)  # (B, N) 0/1
    keys = kept * n + torch.arange(n, device=scores.device)  # distinct: the rest first, ascending
    rest_idx = keys.argsort(dim=-1)[:, : n - k]  # (B, N - k) ascending
    by_score = scores.gather(1, rest_idx).argsort(dim=-1, descending=True)  # (B, N - k)
    return keep_idx, rest_idx.gather(1, by_score)


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pick tokens by index, optionally gated by a per-token weight.

    Gating ``z_j = s_{i_j} u_{i_j}`` is what lets a learned score receive gradients through a
    hard top-K (TokenSeg).

    Args:
        tokens: ``(B, N, C)``.
        idx: ``(B, K)``.
        weights: ``(B, N)`` or ``None``.

    Returns:
        ``(B, K, C)``.
    """
    picked = tokens.gather(1, idx[..., None].expand(-1, -1, tokens.shape[-1]))  # (B, K, C)
    if weights is not None:
        picked = picked * weights.gather(1, idx)[..., None].to(picked.dtype)  # (B, K, 1) gate
    return picked


def scatter_tokens(base: torch.Tensor, sets: Sequence[torch.Tensor],
                   positions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Write every token set back at its positions of ``base`` (the inverse of a gather).

    Differentiable with respect to the set tokens (positions not written keep ``base``).

    Args:
        base: ``(B, L, C)`` background (zeros, or a mask token expanded).
        sets: token sets ``(B, n_j, C)``.
        positions: ``(B, n_j)`` positions in ``0..L-1`` of each set; all distinct within a row.

    Returns:
        ``(B, L, C)`` with ``out[b, positions[j][b, i]] = sets[j][b, i]``.
    """
    tokens = torch.cat(list(sets), dim=1)  # (B, sum n_j, C)
    idx = torch.cat(list(positions), dim=1)  # (B, sum n_j)
    idx = idx.unsqueeze(-1).expand(-1, -1, base.shape[-1])  # (B, sum n_j, C)
    return base.scatter(1, idx, tokens.to(base.dtype))  # (B, L, C)
