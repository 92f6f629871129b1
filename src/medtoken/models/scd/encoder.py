"""ViT encoder for 2D/3D patches with optional STP pruning stages.

Patch embedding (a strided convolution, tokens row-major over the grid axes), an optional CLS token,
a learnable positional embedding added once, pre-norm blocks with linearly rising stochastic depth,
and :class:`~medtoken.tokens.pruning.TokenPruner` stages after the configured blocks. The same
blocks run in the dense and pruned paths; pruning only shortens the sequence.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from medtoken.layers.factory import conv_type
from medtoken.layers.transformer import TransformerBlock
from medtoken.models.scd.config import PruningConfig, ViTConfig
from medtoken.tokens.pruning import TokenPruner

__all__ = ["EncoderOutput", "ViTEncoder"]

_INIT_STD = 0.02  # truncated-normal std of linear weights and the positional embedding (ViT)
_CLS_INIT_STD = 1e-6  # the upstream CLS-token init
_NORM_EPS = 1e-6


class EncoderOutput(NamedTuple):
    """What :class:`ViTEncoder` returns (``P`` prefix tokens, ``k`` final kept patch tokens).

    Attributes:
        tokens: ``(B, P + k, C)`` final kept set after the final LayerNorm (CLS first).
        pos_idx: ``(B, k)`` raster positions of its patch tokens, ascending.
        pruned: per pruning stage, ``(B, n_s - k_s, C)`` tokens pruned there (not normed).
        pruned_pos_idx: per stage, ``(B, n_s - k_s)`` their raster positions, ascending.
        kept_pos_idx: per stage, ``(B, k_s)`` raster positions kept there, ascending.
        hidden: per entry of ``skip_blocks``, ``(B, L, C)`` patch tokens after that block (dense
            encoders only; no norm, as in MONAI's UNETR).
    """

    tokens: torch.Tensor
    pos_idx: torch.Tensor
    pruned: list[torch.Tensor]
    pruned_pos_idx: list[torch.Tensor]
    kept_pos_idx: list[torch.Tensor]
    hidden: list[torch.Tensor]


class ViTEncoder(nn.Module):
    """ViT with STP stages.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        roi_size: the (fixed) input size; the learnable positional embedding is built for it.
        vit: encoder sizes.
        pruning: pruning stages (``prune_after=()`` for a dense encoder).
        skip_blocks: blocks whose patch tokens are returned in ``hidden``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, roi_size: tuple[int, ...],
                 vit: ViTConfig, pruning: PruningConfig,
                 skip_blocks: tuple[int, ...] = ()) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        dim = vit.embed_dim
        self.grid_size = tuple(s // vit.patch_size for s in roi_size)
        self.num_patches = math.prod(self.grid_size)
        self.num_prefix_tokens = int(vit.use_cls_token)
        self.skip_blocks = skip_blocks
        self.patch_embed = conv(in_channels, dim, kernel_size=vit.patch_size, stride=vit.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if vit.use_cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.num_patches,
                                                  dim))
        rates = [vit.drop_path_rate * i / max(vit.depth - 1, 1) for i in range(vit.depth)]
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, vit.num_heads, mlp_ratio=vit.mlp_ratio, drop_path=r,
                             norm_eps=_NORM_EPS) for r in rates)
        self.stage_of_block = {b: s for s, b in enumerate(pruning.prune_after)}
        self.pruners = nn.ModuleList(
            TokenPruner(dim, pruning.keep_ratio, selection=pruning.method,
                        temperature=pruning.temperature,
                        num_prefix_tokens=self.num_prefix_tokens, seed=pruning.seed,
                        score_norm_eps=pruning.score_norm_eps)
            for _ in pruning.prune_after)
        self.norm = nn.LayerNorm(dim, eps=_NORM_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=_INIT_STD)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=_CLS_INIT_STD)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=_INIT_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` → ``(B, P + L, C)`` tokens with positional embedding."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, L, C), row-major grid
        if self.cls_token is not None:
            cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, C)
            tokens = torch.cat([cls, tokens], dim=1)  # (B, 1 + L, C)
        return tokens + self.pos_embed  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """Encode ``x (B, in_channels, *roi_size)``; see :class:`EncoderOutput`."""
        tokens = self.embed(x)  # (B, P + L, C)
        b, p = tokens.shape[0], self.num_prefix_tokens
        pos_idx = torch.arange(self.num_patches, device=x.device).expand(b, -1)  # (B, L)
        weights: torch.Tensor | None = None  # running straight-through multipliers (B, n)
        pruned: list[torch.Tensor] = []
        pruned_pos_idx: list[torch.Tensor] = []
        kept_pos_idx: list[torch.Tensor] = []
        hidden: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)  # (B, P + n, C)
            if i in self.skip_blocks:
                hidden.append(tokens[:, p:])  # (B, L, C)
            if i in self.stage_of_block:
                step = self.pruners[self.stage_of_block[i]](tokens, pos_idx, weights)
                tokens, pos_idx, weights = step.tokens, step.pos_idx, step.weights
                pruned.append(step.pruned)
                pruned_pos_idx.append(step.pruned_pos_idx)
                kept_pos_idx.append(pos_idx)
        return EncoderOutput(self.norm(tokens), pos_idx, pruned, pruned_pos_idx, kept_pos_idx,
                             hidden)
