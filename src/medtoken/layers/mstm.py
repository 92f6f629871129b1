"""TM-UNet's MSTM block: raster scan, multi-scale pooling, a forward and a reverse mLSTM layer.

TM-UNet: Jiao et al., "TM-UNet: Token-Memory Enhanced Sequential Modeling for Efficient Medical
Image Segmentation", arXiv:2511.12270 (code: github.com/xq141839/TM-UNet). As released::

    x1  = x + sum_k (AvgPool_k(LN1(x)) - LN1(x))          k in pool_sizes (5, 9, 13)
    y   = DW(bwd(DW(fwd(LN2(x1)))))                        DW = depthwise conv -> BN -> ReLU
    out = x1 + y

Tokens are the feature map in raster (row-major) order, ``n = h * W + w`` (``(d * H + h) * W + w``
in 3D). The release pools over the (token, channel) plane of the ``(B, N, C)`` tensor
(``pool_mode="as_released"``); the paper describes spatial pooling (``pool_mode="spatial"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medtoken.layers.factory import batch_norm_type, conv_type
from medtoken.layers.mlstm import MLSTM_MODES, MLSTMLayer

__all__ = [
    "INIT_MODES",
    "POOL_MODES",
    "MSTMBlock",
    "MSTMConfig",
    "box_mean",
    "init_as_released",
    "multiscale_pool",
    "raster_map",
    "raster_tokens",
]

POOL_MODES = ("as_released", "spatial")
INIT_MODES = ("as_released", "vil")


def raster_tokens(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Feature map ``(B, C, *S)`` -> tokens ``(B, N, C)`` in raster order, and ``S``."""
    return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])  # (B, N, C)


def raster_map(tokens: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`raster_tokens`: ``(B, N, C)`` -> ``(B, C, *S)``.

    A view, not a copy: for contiguous tokens it is a channels-last map (channels the fastest
    axis), which convolutions take as it is and :func:`raster_tokens` turns back into tokens
    without a copy; ``.contiguous()`` gives the channels-first layout.
    """
    return tokens.transpose(1, 2).unflatten(2, spatial_shape)  # (B, C, *S)


def _box_means_along(x: torch.Tensor, dim: int,
                     sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Means over windows of each odd size in ``sizes`` along ``dim``, clipped at the ends.

    Nested windows share their partial sums, so all sizes together cost ``max(sizes) - 1``
    shifted additions (exact sums, unlike a cumulative sum; much faster than ``avg_pool`` on CPU).
    """
    length, reach = x.shape[dim], max(sizes) // 2
    padded = F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [reach, reach])  # zeros along dim
    position = torch.arange(length, device=x.device)
    view = [length if axis == dim else 1 for axis in range(x.dim())]
    running, means = x, {}
    for offset in range(reach + 1):
        if offset:
            running = (running + padded.narrow(dim, reach + offset, length)
                       + padded.narrow(dim, reach - offset, length))
        if 2 * offset + 1 in sizes:
            count = ((position + offset).clamp(max=length - 1)
                     - (position - offset).clamp(min=0) + 1)  # (A,) window size inside
            means[2 * offset + 1] = running / count.view(view).to(x.dtype)
    return [means[size] for size in sizes]


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size``-wide box around each element of the trailing axes of ``(B, C, *A)``.

    Stride 1, zero padding ``size // 2`` excluded from the mean (``AvgPool`` with
    ``count_include_pad=False``; unlike ``avg_pool3d`` axes shorter than the box are fine),
    computed separably: the mean over a box clipped to the tensor is the product of 1D means.
    """
    for axis in range(2, x.dim()):
        x = _box_means_along(x, axis, (size,))[0]
    return x


def multiscale_pool(tokens: torch.Tensor, spatial_shape: tuple[int, ...],
                    pool_sizes: tuple[int, ...], mode: str = "as_released") -> torch.Tensor:
    """The parameter-free multi-scale pooling term ``sum_k (AvgPool_k(x) - x)``.

    Args:
        tokens: ``(B, N, C)`` in raster order.
        spatial_shape: the grid ``S`` with ``prod(S) == N``.
        pool_sizes: odd box sizes.
        mode: ``"as_released"`` pools each sample over its (token, channel) plane, as the
            released code does; ``"spatial"`` pools each channel over the grid ``S``.

    Returns:
        ``(B, N, C)``.
    """
    if mode == "as_released":
        # one (N, C) image per sample, as the release's unbatched AvgPool2d call on (B, N, C)
        x = tokens.unsqueeze(1)  # (B, 1, N, C)
    elif mode == "spatial":
        x = raster_map(tokens, spatial_shape)  # (B, C, *S)
    else:
        raise ValueError(f"mode must be one of {POOL_MODES}, got {mode!r}")
    pooled = torch.zeros_like(x)
    for size, partial in zip(pool_sizes, _box_means_along(x, 2, pool_sizes), strict=True):
        for axis in range(3, x.dim()):
            partial = _box_means_along(partial, axis, (size,))[0]
        pooled = pooled + partial
    pooled = pooled.squeeze(1) if mode == "as_released" else raster_tokens(pooled)[0]  # (B,N,C)
    return pooled - len(pool_sizes) * tokens


def init_as_released(module: nn.Module) -> None:
    """The release's ``_init_weights``, applied to every submodule of ``module``.

    Linear: truncated normal, std 0.02 (cut at +-2), bias 0; LayerNorm: 1, 0; 2D/3D conv:
    normal with std sqrt(2 / fan_out), ``fan_out = prod(kernel) * C_out // groups``, bias 0.
    Conv1d (the mLSTM layer's causal conv) keeps PyTorch's default, as in the release.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
            fan_out = math.prod(m.kernel_size) * m.out_channels // m.groups
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class MSTMConfig:
    """Options of the MSTM blocks (defaults = the release).

    Attributes:
        mlstm_mode: mLSTM form, one of ``parallel`` (the release), ``chunkwise``, ``recurrent``;
            all give the same outputs.
        chunk_size: tokens per chunk of the chunkwise form.
        num_heads: mLSTM heads per layer (head dim = width / num_heads).
        qkv_block_size: block size of the block-diagonal q/k/v maps.
        conv_kernel_size: kernel of the causal depthwise conv inside each mLSTM layer.
        pool_sizes: box sizes of the multi-scale pooling branches (odd).
        pool_mode: ``as_released`` ((token, channel) plane) or ``spatial`` (the paper's intent).
        init: ``as_released`` (the release's re-initialisation: gate biases 0, linear std 0.02)
            or ``vil`` (Vision-LSTM's intended initialisation of the mLSTM layers).
        unused_dwconv: build the release's third depthwise-conv unit that is never called; it
            only makes the parameter count match the release.
        eps: mLSTM normaliser epsilon.
    """

    mlstm_mode: str = "chunkwise"
    chunk_size: int = 64
    num_heads: int = 4
    qkv_block_size: int = 4
    conv_kernel_size: int = 4
    pool_sizes: tuple[int, ...] = (5, 9, 13)
    pool_mode: str = "as_released"
    init: str = "as_released"
    unused_dwconv: bool = True
    eps: float = 1e-6

    def __post_init__(self) -> None:
        for name, valid in (("mlstm_mode", MLSTM_MODES), ("pool_mode", POOL_MODES),
                            ("init", INIT_MODES)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}")
        for name in ("chunk_size", "num_heads", "qkv_block_size", "conv_kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.pool_sizes or any(k < 1 or k % 2 == 0 for k in self.pool_sizes):
            raise ValueError(f"pool_sizes must be non-empty odd sizes >= 1, got "
                             f"{self.pool_sizes}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")

    def variant_notes(self) -> dict[str, Any]:
        """What an export of MSTM blocks bakes in: the mLSTM form (and its chunk size)."""
        notes: dict[str, Any] = {"mlstm_mode": self.mlstm_mode}
        if self.mlstm_mode == "chunkwise":
            notes["chunk_size"] = self.chunk_size
        return notes

    def check_width(self, dim: int, where: str) -> None:
        """Raise ValueError unless a block of width ``dim`` is possible (``where`` names it)."""
        for name in ("num_heads", "qkv_block_size"):
            if dim % getattr(self, name):
                raise ValueError(f"{where} ({dim}) must be divisible by mstm.{name} "
                                 f"({getattr(self, name)})")


class DWConvUnit(nn.Module):
    """Tokens -> grid -> 3^n depthwise conv -> BatchNorm -> ReLU -> tokens."""

    def __init__(self, dim: int, spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(dim, dim, 3, padding=1, groups=dim)
        self.norm = batch_norm_type(spatial_dims)(dim)

    def forward(self, tokens: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
        grid = raster_map(tokens, spatial_shape)  # (B, C, *S)
        return raster_tokens(F.relu(self.norm(self.conv(grid))))[0]  # (B, N, C)


class MSTMBlock(nn.Module):
    """One MSTM block of width ``dim`` on a ``spatial_dims``-D grid (see the module docstring)."""

    def __init__(self, dim: int, spatial_dims: int, config: MSTMConfig) -> None:
        super().__init__()
        config.check_width(dim, "MSTM width")
        self.pool_sizes, self.pool_mode = config.pool_sizes, config.pool_mode
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fwd, self.bwd = (
            MLSTMLayer(dim, config.num_heads, config.qkv_block_size, config.conv_kernel_size,
                       reverse=reverse, mode=config.mlstm_mode, chunk_size=config.chunk_size,
                       eps=config.eps)
            for reverse in (False, True))
        self.dw_fwd = DWConvUnit(dim, spatial_dims)
        self.dw_bwd = DWConvUnit(dim, spatial_dims)
        # NOTE: the release builds a third unit and never calls it (parameters count, no grads)
        self.dw_unused = DWConvUnit(dim, spatial_dims) if config.unused_dwconv else None
        if config.init == "as_released":
            init_as_released(self)  # overwrites the mLSTM layers' own (ViL) initialisation
        else:
            for unit in (self.dw_fwd, self.dw_bwd, self.dw_unused):
                if unit is not None:
                    init_as_released(unit)

    def forward(self, tokens: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
        """``(B, N, C)`` tokens on the grid ``spatial_shape`` -> ``(B, N, C)``."""
        x = tokens + multiscale_pool(self.norm1(tokens), spatial_shape, self.pool_sizes,
                                     self.pool_mode)
        y = self.dw_fwd(self.fwd(self.norm2(x)), spatial_shape)
        y = self.dw_bwd(self.bwd(y), spatial_shape)
        return x + y
