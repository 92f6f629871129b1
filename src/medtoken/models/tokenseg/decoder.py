"""TokenSeg sparse-to-dense decoder: token reprojection, skip fusion, progressive upsampling.

Per level ``l`` the reprojected token grid ``[Z_l; O_l]`` (tokens or the mask embedding, plus the
occupancy channel) is fused with the dense encoder feature ``F_l``:
``A_l = act(norm(W_t up(Z_l; O_l) + W_f F_l))``. The 1x1 projection ``W_t`` is applied on the token
grid *before* the nearest-neighbour broadcast (the two commute), so the ``C + 1`` channels are
never materialised at level resolution. Then, coarse to fine,
``X_l = ResBlock([ConvT(X_{l+1}); A_l])`` and at full resolution
``X_0 = ResBlock([ConvT(X_1); stem(image)])``, and a 1x1 head gives the logits.

``mode="sparse"`` stops the dense path at level ``s = refine_levels + 1``, upsamples the logits of
a coarse 1x1 head from there, and runs the finer stages only on crops of the refined cells
of the level-1 cell grid (with ``refine_halo`` voxels of context), pasting their logits back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn

from medtoken.layers.factory import conv_transpose_type, conv_type, linear_mode
from medtoken.models.tokenseg.cells import crop_cells, paste_cells, trim
from medtoken.models.tokenseg.encoder import ACT, NORM

__all__ = ["SparseToDenseDecoder", "TokenFusion"]


class TokenFusion(nn.Module):
    """Fuse a reprojected token grid with a same-level skip feature (1x1 convs, norm, act).

    Args:
        spatial_dims: 2 or 3.
        embed_dim: token width C (the grid has ``C + 1`` channels with occupancy).
        channels: the level's width ``C_l``.
    """

    def __init__(self, spatial_dims: int, embed_dim: int, channels: int) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.token_proj = conv(embed_dim + 1, channels, kernel_size=1)
        self.skip_proj = conv(channels, channels, kernel_size=1, bias=False)
        self.norm = get_norm_layer(NORM, spatial_dims, channels)
        self.act = get_act_layer(ACT)

    def forward(self, token_grid: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(B, C + 1, *grid)`` and ``(B, C_l, *S_l)`` → ``(B, C_l, *S_l)``."""
        t = self.token_proj(token_grid)  # (B, C_l, *grid)
        t = F.interpolate(t, size=skip.shape[2:], mode="nearest")  # each token fills its cell
        return self.act(self.norm(t + self.skip_proj(skip)))  # type: ignore[no-any-return]


class SparseToDenseDecoder(nn.Module):
    """Dense or sparse decoder from the token grids and skips to full-resolution logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (the full-resolution stem reads the image).
        channels: ``(C_0, C_1, .., C_L)``: stem width, then each level's width.
        embed_dim: token width C.
        num_classes: output channels.
        refine_grid: sparse mode: the cell grid whose cells are refined (the level-1 grid).
        refine_levels: sparse mode: levels decoded on crops; ``0`` selects the dense decoder.
        refine_halo: sparse mode: context voxels carried between sparse stages.
        refine_chunk: sparse mode: cells decoded together.
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int],
                 embed_dim: int, num_classes: int, refine_grid: Sequence[int] = (),
                 refine_levels: int = 0, refine_halo: int = 1, refine_chunk: int = 4) -> None:
        super().__init__()
        conv, convt = conv_type(spatial_dims), conv_transpose_type(spatial_dims)
        levels = len(channels) - 1
        self.fusions = nn.ModuleList(TokenFusion(spatial_dims, embed_dim, channels[lv])
                                     for lv in range(1, levels + 1))  # fusions[l - 1]: level l
        # ups[l]: level l + 1 → l; blocks[l]: ResBlock at level l (l = 0 is full resolution)
        self.ups = nn.ModuleList(convt(channels[lv + 1], channels[lv], kernel_size=2, stride=2)
                                 for lv in range(levels))
        self.blocks = nn.ModuleList(
            UnetResBlock(spatial_dims, 2 * channels[lv], channels[lv], kernel_size=3, stride=1,
                         norm_name=NORM, act_name=ACT) for lv in range(levels))
        self.stem = UnetResBlock(spatial_dims, in_channels, channels[0], kernel_size=3, stride=1,
                                 norm_name=NORM, act_name=ACT)
        self.head = conv(channels[0], num_classes, kernel_size=1)
        self.refine_grid = tuple(refine_grid)
        self.refine_halo = refine_halo
        self.refine_chunk = refine_chunk
        self.coarse_level = refine_levels + 1 if refine_levels else 0
        self.coarse_head = (conv(channels[self.coarse_level], num_classes, kernel_size=1)
                            if refine_levels else None)

    def _stage(self, level: int, x: torch.Tensor, skip: torch.Tensor,
               margin: int = 0) -> torch.Tensor:
        """``X_level = ResBlock([ConvT(X_{level+1}); skip])``; ``margin`` is trimmed after ConvT."""
        up = trim(self.ups[level](x), margin)
        return self.blocks[level](torch.cat([up, skip], dim=1))  # type: ignore[no-any-return]

    def forward(self, image: torch.Tensor, features: Sequence[torch.Tensor],
                token_grids: Sequence[torch.Tensor],
                refine_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Decode to logits.

        Args:
            image: ``(B, in_channels, *S)``.
            features: ``[F_1 .. F_L]`` from the encoder.
            token_grids: ``[(B, C + 1, *grid_l)]`` per level: reprojected tokens and occupancy.
            refine_idx: sparse mode: ``(B, R)`` distinct cells of ``refine_grid`` to refine.

        Returns:
            ``(B, num_classes, *S)`` logits.
        """
        fused = [f(g, x) for f, g, x in zip(self.fusions, token_grids, features, strict=True)]
        x = fused[-1]  # X_L = A_L
        last_dense = self.coarse_level or 1  # dense levels L-1 .. last_dense (then level 0)
        for level in range(len(fused) - 1, last_dense - 1, -1):
            x = self._stage(level, x, fused[level - 1])
        if self.coarse_head is None:
            return self.head(self._stage(0, x, self.stem(image)))  # type: ignore[no-any-return]
        if refine_idx is None:
            raise ValueError("the sparse decoder needs refine_idx")
        return self._refine(image, x, fused, refine_idx)

    def _refine(self, image: torch.Tensor, x: torch.Tensor, fused: Sequence[torch.Tensor],
                refine_idx: torch.Tensor) -> torch.Tensor:
        """Coarse logits everywhere, full-resolution decoding inside the refined cells.

        Cells are decoded ``refine_chunk`` at a time, which bounds the peak memory of inference.
        """
        assert self.coarse_head is not None
        mode = linear_mode(image.dim() - 2)
        logits = F.interpolate(self.coarse_head(x), size=image.shape[2:], mode=mode,
                               align_corners=False)  # (B, K, *S)
        for cells in refine_idx.split(self.refine_chunk, dim=1):  # (B, r) each
            fine = self._decode_cells(image, x, fused, cells)  # (B * r, K, *cell_0)
            logits = paste_cells(logits, fine, self.refine_grid, cells)
        return logits

    def _decode_cells(self, image: torch.Tensor, x: torch.Tensor, fused: Sequence[torch.Tensor],
                      cells: torch.Tensor) -> torch.Tensor:
        """Finer levels on crops of ``cells (B, r)``; returns logits ``(B * r, K, *cell)``."""
        halo, grid = self.refine_halo, self.refine_grid
        crop = crop_cells(x, grid, cells, halo)  # (B * r, C_s, *(cell_s + 2 halo))
        for level in range(self.coarse_level - 1, -1, -1):
            source = fused[level - 1] if level else image
            skip = crop_cells(source, grid, cells, halo)  # (B * r, C, *(cell_l + 2 halo))
            # ConvT doubles the halo to 2 * halo; trim it back so each stage sees `halo` voxels
            crop = self._stage(level, crop, self.stem(skip) if level == 0 else skip, halo)
        return self.head(trim(crop, halo))  # type: ignore[no-any-return]
