"""Soft-top-k Token Pruning (STP): a score network and one pruning stage.

Zhou et al., "Token Sparsification for Faster Medical Image Segmentation", IPMI 2023,
arXiv:2303.06522. A stage scores the patch tokens (CLS and other prefix tokens are never scored or
pruned), keeps the top-k, and returns *both* sets with their original raster positions: the kept
tokens go on through the encoder, the pruned ones to the token assembly (MTA).

Training (``selection="gumbel"``): top-k of Gumbel-perturbed log-scores, with straight-through
multipliers. Every token is multiplied by the running product ``w`` of keep masks (exactly 1 in the
forward pass): kept tokens by ``w·m``, pruned ones by ``w·(1 − m)``, so that the segmentation loss
reaches every stage's score network through both sets. Inference: deterministic top-k, no
multipliers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from medtoken.tokens.indexing import gather_tokens, split_topk
from medtoken.tokens.topk import (
    Selection,
    gumbel_noise_like,
    keep_count,
    straight_through_topk,
)

__all__ = ["SELECTIONS", "PruneStep", "ScoreNet", "TokenPruner"]

SELECTIONS = ("gumbel", "topk", "random")


class PruneStep(NamedTuple):
    """Output of one pruning stage (``P`` prefix tokens, ``n`` patch tokens in, ``k`` kept).

    Attributes:
        tokens: ``(B, P + k, C)`` prefix tokens then kept tokens, in raster order.
        pos_idx: ``(B, k)`` original raster positions of the kept tokens, ascending.
        weights: ``(B, k)`` running straight-through multipliers of the kept tokens (value 1),
            or ``None`` outside training.
        pruned: ``(B, n - k, C)`` pruned tokens, in raster order.
        pruned_pos_idx: ``(B, n - k)`` their original positions, ascending.
    """

    tokens: torch.Tensor
    pos_idx: torch.Tensor
    weights: torch.Tensor | None
    pruned: torch.Tensor
    pruned_pos_idx: torch.Tensor


class ScoreNet(nn.Module):
    """Token scorer mixing each token with the global mean (DynamicViT-style ``MlpPredictor``).

    ``H = GELU(Linear(LN(X)))``; the first half of ``H``'s channels stays per-token, the second half
    is averaged over the tokens; an MLP ``C → C/2 → C/4 → 1`` gives a logit ``s`` and the score is
    ``log σ(s) ≤ 0``.

    Args:
        dim: token width ``C``; must be divisible by 4.
        norm_eps: LayerNorm epsilon (the STP+MTA release: PyTorch's default 1e-5, unlike the
            encoder's 1e-6).
    """

    def __init__(self, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"dim must be divisible by 4 for ScoreNet, got {dim}")
        self.in_proj = nn.Sequential(nn.LayerNorm(dim, eps=norm_eps), nn.Linear(dim, dim),
                                     nn.GELU())
        self.out = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim // 4),
                                 nn.GELU(), nn.Linear(dim // 4, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, n, C)`` patch tokens → ``(B, n)`` log-sigmoid scores."""
        h = self.in_proj(tokens)  # (B, n, C)
        local, glob = h.chunk(2, dim=-1)  # 2 x (B, n, C/2)
        glob = glob.mean(dim=1, keepdim=True).expand_as(glob)  # (B, n, C/2), mean of alive tokens
        logits = self.out(torch.cat([local, glob], dim=-1)).squeeze(-1)  # (B, n)
        return F.logsigmoid(logits)


class TokenPruner(nn.Module):
    """One STP stage: score, select the top-k, split into kept and pruned sets.

    Args:
        dim: token width ``C``.
        keep_ratio: fraction of the patch tokens kept (:func:`~medtoken.tokens.topk.keep_count`).
        selection: ``"gumbel"`` (STP), ``"topk"`` (deterministic top-k also in training, same
            straight-through gradient) or ``"random"`` (uniformly random selection; the score net
            is then unused, and eval mode draws from a generator seeded with ``seed``).
        temperature: ``τ`` of the straight-through softmax.
        num_prefix_tokens: leading tokens (CLS) passed through untouched.
        seed: seed of the fixed eval-mode draw of ``selection="random"``.
        score_norm_eps: the score network's LayerNorm epsilon.
    """

    def __init__(self, dim: int, keep_ratio: float, selection: str = "gumbel",
                 temperature: float = 1.0, num_prefix_tokens: int = 1, seed: int = 0,
                 score_norm_eps: float = 1e-5) -> None:
        super().__init__()
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got '{selection}'")
        self.keep_ratio = keep_ratio
        self.selection = selection
        self.temperature = temperature
        self.num_prefix_tokens = num_prefix_tokens
        self.seed = seed
        self.score_net = ScoreNet(dim, score_norm_eps)

    def _select(self, patches: torch.Tensor, k: int) -> Selection:
        """Kept and pruned indices of ``patches (B, n, C)`` (plus the ST mask in training)."""
        b, n, _ = patches.shape
        if self.selection == "random":
            generator = None
            if not self.training:  # a fixed draw keeps inference deterministic
                generator = torch.Generator(device=patches.device).manual_seed(self.seed)
            scores = torch.rand(b, n, generator=generator, device=patches.device)
            return Selection(*split_topk(scores, k, order="index", ties="topk"), None)
        log_scores = self.score_net(patches)  # (B, n)
        if log_scores.dtype not in (torch.float32, torch.float64):
            log_scores = log_scores.float()  # fp32 under autocast; float64 runs stay float64
        if not self.training:
            return Selection(*split_topk(log_scores, k, order="index", ties="topk"), None)
        noise = gumbel_noise_like(log_scores) if self.selection == "gumbel" else None
        return straight_through_topk(log_scores, k, self.temperature, noise)

    def forward(self, tokens: torch.Tensor, pos_idx: torch.Tensor,
                weights: torch.Tensor | None = None) -> PruneStep:
        """Prune the patch tokens of ``tokens``.

        Args:
            tokens: ``(B, P + n, C)`` prefix tokens then the alive patch tokens.
            pos_idx: ``(B, n)`` original raster positions of the alive patch tokens.
            weights: ``(B, n)`` running straight-through multipliers from earlier stages.

        Returns:
            A :class:`PruneStep`.
        """
        prefix = tokens[:, : self.num_prefix_tokens]  # (B, P, C)
        patches = tokens[:, self.num_prefix_tokens :]  # (B, n, C)
        sel = self._select(patches, keep_count(patches.shape[1], self.keep_ratio))
        kept = gather_tokens(patches, sel.keep_idx)  # (B, k, C)
        pruned = gather_tokens(patches, sel.prune_idx)  # (B, n - k, C)
        kept_weights = None
        if sel.mask is not None:
            prev = torch.ones_like(sel.mask) if weights is None else weights  # (B, n)
            kept_weights = (prev * sel.mask).gather(1, sel.keep_idx)  # (B, k), value 1
            pruned_weights = (prev * (1.0 - sel.mask)).gather(1, sel.prune_idx)  # (B, n-k), 1
            kept = kept * kept_weights.unsqueeze(-1).to(kept.dtype)
            pruned = pruned * pruned_weights.unsqueeze(-1).to(pruned.dtype)
        return PruneStep(
            tokens=torch.cat([prefix, kept], dim=1),  # (B, P + k, C)
            pos_idx=pos_idx.gather(1, sel.keep_idx),  # (B, k)
            weights=kept_weights,
            pruned=pruned,
            pruned_pos_idx=pos_idx.gather(1, sel.prune_idx),  # (B, n - k)
        )
