"""TokenSeg encoder: a residual CNN pyramid (strides 2..2**L) and its cell tokenizer.

Blocks are MONAI's (``Convolution``, ``UnetResBlock``) with InstanceNorm (affine) and
LeakyReLU(0.01), as nnU-Net uses.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UnetResBlock
from torch import nn

from medtoken.layers.factory import pool_fn

__all__ = ["ACT", "NORM", "CellTokenizer", "HierarchicalEncoder"]

NORM = ("INSTANCE", {"affine": True})
ACT = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})


class HierarchicalEncoder(nn.Module):
    """``L`` stages, each a stride-2 3x3 convolution and one residual block (two 3x3 convs).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        channels: width of each level ``l = 1..L`` (stride ``2**l``).
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.stages = nn.ModuleList(
            nn.Sequential(
                Convolution(spatial_dims, c_in, c_out, strides=2, kernel_size=3, norm=NORM,
                            act=ACT),
                UnetResBlock(spatial_dims, c_out, c_out, kernel_size=3, stride=1,
                             norm_name=NORM, act_name=ACT),
            )
            for c_in, c_out in itertools.pairwise(widths)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, in_channels, *S)`` → ``[F_1 .. F_L]``, ``F_l`` of shape ``(B, C_l, *S / 2**l)``."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class CellTokenizer(nn.Module):
    """Pool every cell of every level into one token: ``t = LN(W_l pool(F_l, cell) + b_l)``.

    Args:
        level_channels: ``C_l`` of each level.
        cell_grids: the cell grid of each level.
        embed_dim: token width C.
        pool: ``"avg"`` or ``"max"``.
    """

    def __init__(self, level_channels: Sequence[int], cell_grids: Sequence[Sequence[int]],
                 embed_dim: int, pool: str = "avg") -> None:
        super().__init__()
        self.cell_grids = [tuple(g) for g in cell_grids]
        self.pool = pool
        self.proj = nn.ModuleList(nn.Linear(c, embed_dim) for c in level_channels)
        self.norm = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in level_channels)

    def _pool(self, x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        cell = [s // g for s, g in zip(x.shape[2:], grid, strict=True)]  # exact tiling
        return pool_fn("max" if self.pool == "max" else "avg", len(grid))(x, cell)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[F_1 .. F_L]`` → candidate tokens ``(B, N, C)``, level by level, cells row-major."""
        tokens = []
        for x, grid, proj, norm in zip(features, self.cell_grids, self.proj, self.norm,
                                       strict=True):
            pooled = self._pool(x, grid).flatten(2).transpose(1, 2)  # (B, n_l, C_l)
            tokens.append(norm(proj(pooled)))  # (B, n_l, C)
        return torch.cat(tokens, dim=1)  # (B, N, C)
