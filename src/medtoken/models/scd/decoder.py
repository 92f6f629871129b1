"""UNETR-style CNN decoder from token maps, for patch 4, 8 and 16 (MONAI UNETR blocks).

Level ``j`` (``j = 0..num_upsamples``) lives at ``roi / 2^j`` with ``F · 2^j`` channels. Level 0 is
a residual block on the image; levels ``1..num_upsamples-1`` are built from a token map at the grid
resolution ``roi / patch`` by transposed-convolution upsampling (``UnetrPrUpBlock``) or, when the
level *is* the grid resolution, a residual block; the bottleneck (last level) is the token map
itself, average-pooled once when ``2^num_upsamples = 2 · patch``. Then ``UnetrUpBlock`` stages
climb back to full resolution. This one class covers the upstream decoders:

- ``UNETR_decoder``: patch 16, ``num_upsamples=4``;
- ``UNETRx8_decoder``: patch 8, ``num_upsamples=3``;
- ``UNETRx8_decoderv2`` (= ``x4_decoderv2``): patch 8, ``num_upsamples=4``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import nn

from medtoken.layers.factory import pool_type

__all__ = ["UNETRDecoder"]

_KERNEL = 3  # convolution kernel of every residual block
_UP = 2  # kernel = stride of every transposed convolution


class UNETRDecoder(nn.Module):
    """UNETR decoder over ``num_upsamples - 1`` skip token maps and a bottleneck token map.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (level-0 skip).
        num_classes: output channels.
        embed_dim: channels of the token maps.
        patch_size: grid stride; a power of two with ``patch_size <= 2^num_upsamples <=
            2 · patch_size``.
        num_upsamples: x2 stages from the bottleneck to full resolution.
        feature_size: ``F``.
        norm_name: MONAI norm of the residual blocks.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, embed_dim: int,
                 patch_size: int, num_upsamples: int, feature_size: int = 16,
                 norm_name: str = "instance") -> None:
        super().__init__()
        if not patch_size <= 2**num_upsamples <= 2 * patch_size:
            raise ValueError(f"num_upsamples={num_upsamples} does not fit patch_size={patch_size}")
        sd, f = spatial_dims, feature_size
        self.encoder1 = UnetrBasicBlock(sd, in_channels, f, kernel_size=_KERNEL, stride=1,
                                        norm_name=norm_name, res_block=True)
        self.skips = nn.ModuleList()
        for level in range(1, num_upsamples):
            factor = patch_size // 2**level  # grid → level resolution
            if factor == 1:
                block: nn.Module = UnetrBasicBlock(sd, embed_dim, f * 2**level, kernel_size=_KERNEL,
                                                   stride=1, norm_name=norm_name, res_block=True)
            else:
                block = UnetrPrUpBlock(sd, embed_dim, f * 2**level,
                                       num_layer=factor.bit_length() - 2, kernel_size=_KERNEL,
                                       stride=1, upsample_kernel_size=_UP, norm_name=norm_name,
                                       conv_block=True, res_block=True)
            self.skips.append(block)
        pool = pool_type("avg", sd)
        self.bottleneck = (pool(kernel_size=3, stride=2, padding=1)
                           if 2**num_upsamples > patch_size else nn.Identity())
        self.ups = nn.ModuleList(
            UnetrUpBlock(sd, embed_dim if level == num_upsamples - 1 else f * 2**(level + 1),
                         f * 2**level, kernel_size=_KERNEL, upsample_kernel_size=_UP,
                         norm_name=norm_name, res_block=True)
            for level in reversed(range(num_upsamples)))
        self.out = UnetOutBlock(sd, f, num_classes)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor],
                bottleneck: torch.Tensor) -> torch.Tensor:
        """Decode.

        Args:
            x: ``(B, in_channels, *S)`` the input image.
            skips: ``num_upsamples - 1`` token maps ``(B, embed_dim, *G)``, shallow to deep.
            bottleneck: ``(B, embed_dim, *G)``.

        Returns:
            ``(B, num_classes, *S)`` logits.
        """
        feats = [self.encoder1(x)]  # level 0: (B, F, *S)
        feats += [blk(s) for blk, s in zip(self.skips, skips, strict=True)]  # (B, F 2^j, *S/2^j)
        y = self.bottleneck(bottleneck)  # (B, embed_dim, *S / 2^num_upsamples)
        for up, skip in zip(self.ups, reversed(feats), strict=True):
            y = up(y, skip)  # (B, F 2^j, *S / 2^j)
        return self.out(y)  # type: ignore[no-any-return]
