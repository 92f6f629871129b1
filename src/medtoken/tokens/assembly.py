"""Putting token sets back on the grid: scatter, and Multi-layer Token Assembly (MTA).

Zhou et al., "Token Sparsification for Faster Medical Image Segmentation", IPMI 2023,
arXiv:2303.06522, §MTA (``FusionNet`` in the official code). The pruned tokens of every STP stage
and the final kept tokens each get their own norm, projection and layer embedding, are scattered
back to their original raster positions, get a fixed sin-cos positional embedding, pass through a
few Transformer blocks and are projected back to the encoder width as a dense token map.

The ablation ``mode="mask"`` is the MIM-style completion (``CompletionNet``): only the final kept
set is used and every other position holds one learnable mask token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medtoken.layers.pos_embed import sincos_pos_embed
from medtoken.layers.transformer import TransformerBlock
from medtoken.tokens.indexing import scatter_tokens

__all__ = ["ASSEMBLY_MODES", "TokenAssembly"]

ASSEMBLY_MODES = ("mta", "mask")


class TokenAssembly(nn.Module):
    """MTA (``mode="mta"``) or mask-token completion (``mode="mask"``) to a dense token map.

    Args:
        in_dim: encoder width ``C``.
        embed_dim: assembly width ``C_c``; divisible by ``num_heads`` and ``2 * len(grid_size)``.
        depth: Transformer blocks over all ``L`` (+ prefix) tokens.
        num_heads: attention heads of those blocks.
        grid_size: the patch grid ``(H', W'[, D'])``, ``L = prod(grid_size)``.
        num_sources: token sets given to ``forward``: pruned sets of each stage, then the final
            kept set (``mode="mask"`` reads only the last one).
        num_prefix_tokens: prefix (CLS) tokens leading the final set; they join the attention
            with a zero positional embedding and are dropped at the output.
        mode: ``"mta"`` or ``"mask"``.
        mlp_ratio: MLP width of the blocks.
        norm_eps: LayerNorm epsilon.
    """

    pos_embed: torch.Tensor

    def __init__(self, in_dim: int, embed_dim: int, depth: int, num_heads: int,
                 grid_size: tuple[int, ...], num_sources: int, num_prefix_tokens: int = 1,
                 mode: str = "mta", mlp_ratio: float = 4.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        if mode not in ASSEMBLY_MODES:
            raise ValueError(f"mode must be one of {ASSEMBLY_MODES}, got '{mode}'")
        self.mode = mode
        self.embed_dim = embed_dim
        self.num_prefix_tokens = num_prefix_tokens
        self.num_positions = math.prod(grid_size)
        used = num_sources if mode == "mta" else 1
        # Pruned sets get their own LayerNorm (the encoder's "mid norms"); the final kept set was
        # normed by the encoder's final norm, except in mask mode (CompletionNet's own input norm).
        self.norms = nn.ModuleList(
            nn.LayerNorm(in_dim, eps=norm_eps) if (j < used - 1 or mode == "mask")
            else nn.Identity() for j in range(used))
        self.projs = nn.ModuleList(nn.Linear(in_dim, embed_dim) for _ in range(used))
        if mode == "mta":
            self.layer_embed = nn.Parameter(torch.zeros(used, embed_dim))  # one per source
        else:
            self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        pos = sincos_pos_embed(grid_size, embed_dim, dtype=torch.float32)  # (L, C_c) as released
        pos = torch.cat([pos.new_zeros(num_prefix_tokens, embed_dim), pos])  # (P + L, C_c)
        self.register_buffer("pos_embed", pos.unsqueeze(0), persistent=False)  # (1, P + L, C_c)
        self.blocks = nn.Sequential(*(TransformerBlock(embed_dim, num_heads, mlp_ratio=mlp_ratio,
                                                       norm_eps=norm_eps) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.out_proj = nn.Linear(embed_dim, in_dim)

    def forward(self, sets: Sequence[torch.Tensor], positions: Sequence[torch.Tensor]
                ) -> torch.Tensor:
        """Assemble the dense token map.

        Args:
            sets: ``num_sources`` tensors ``(B, n_j, C)``; the last one is the final kept set
                ``(B, P + n_last, C)`` with its prefix tokens first.
            positions: ``(B, n_j)`` raster positions of the patch tokens of each set.

        Returns:
            ``(B, L, C)`` in raster order (prefix tokens dropped).
        """
        p = self.num_prefix_tokens
        if self.mode == "mask":
            sets, positions = sets[-1:], positions[-1:]
        projected = [proj(norm(s)) for s, norm, proj in zip(sets, self.norms, self.projs,
                                                            strict=True)]  # (B, n_j, C_c)
        if self.mode == "mta":
            projected = [t + e for t, e in zip(projected, self.layer_embed, strict=True)]
        prefix = projected[-1][:, :p]  # (B, P, C_c)
        projected[-1] = projected[-1][:, p:]  # (B, n_last, C_c)
        b, c = prefix.shape[0], self.embed_dim
        if self.mode == "mta":
            base = prefix.new_zeros(b, self.num_positions, c)  # (B, L, C_c)
        else:
            base = self.mask_token.to(prefix.dtype).expand(b, self.num_positions, c)
        x = scatter_tokens(base, projected, positions)  # (B, L, C_c)
        x = torch.cat([prefix, x], dim=1) + self.pos_embed  # (B, P + L, C_c)
        x = self.norm(self.blocks(x))
        return self.out_proj(x[:, p:])  # type: ignore[no-any-return]
