"""The 2D or 3D form of a layer, picked in one place from ``spatial_dims``.

Module classes come from MONAI's factories (:mod:`monai.networks.layers.factories`: ``Conv``,
``Norm``, ``Pool``), typed here so that callers keep PyTorch's signatures; the functional forms
(pooling, convolution) come from :mod:`torch.nn.functional`, :func:`linear_mode` names the
(bi/tri)linear interpolation mode and :func:`channels_last_format` the channels-last layout.
They return the very classes ``nn.Conv2d``, ``nn.Conv3d``, ..., so modules built through them
have the same state-dict keys as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

__all__ = [
    "SPATIAL_DIMS",
    "batch_norm_type",
    "channels_last_format",
    "conv_fn",
    "conv_transpose_type",
    "conv_type",
    "instance_norm_type",
    "linear_mode",
    "pool_fn",
    "pool_type",
]

SPATIAL_DIMS = (2, 3)
PoolKind = Literal["avg", "max"]


def _check(spatial_dims: int) -> int:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return spatial_dims


def _check_kind(kind: str) -> str:
    if kind not in ("avg", "max"):
        raise ValueError(f"pool kind must be 'avg' or 'max', got '{kind}'")
    return kind


def conv_type(spatial_dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return cast("type[nn.Conv2d] | type[nn.Conv3d]", Conv[Conv.CONV, _check(spatial_dims)])


def conv_transpose_type(spatial_dims: int
                        ) -> type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    return cast("type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]",
                Conv[Conv.CONVTRANS, _check(spatial_dims)])


def batch_norm_type(spatial_dims: int) -> type[nn.BatchNorm2d] | type[nn.BatchNorm3d]:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    return cast("type[nn.BatchNorm2d] | type[nn.BatchNorm3d]",
                Norm[Norm.BATCH, _check(spatial_dims)])


def instance_norm_type(spatial_dims: int
                       ) -> type[nn.InstanceNorm2d] | type[nn.InstanceNorm3d]:
    """``nn.InstanceNorm2d`` or ``nn.InstanceNorm3d``."""
    return cast("type[nn.InstanceNorm2d] | type[nn.InstanceNorm3d]",
                Norm[Norm.INSTANCE, _check(spatial_dims)])


def pool_type(kind: PoolKind, spatial_dims: int) -> (
        type[nn.AvgPool2d] | type[nn.AvgPool3d] | type[nn.MaxPool2d] | type[nn.MaxPool3d]):
    """``nn.AvgPool{2,3}d`` (``kind="avg"``) or ``nn.MaxPool{2,3}d`` (``kind="max"``)."""
    name = {"avg": Pool.AVG, "max": Pool.MAX}[_check_kind(kind)]
    return cast("type[nn.AvgPool2d] | type[nn.AvgPool3d] | type[nn.MaxPool2d] | "
                "type[nn.MaxPool3d]", Pool[name, _check(spatial_dims)])


def pool_fn(kind: PoolKind, spatial_dims: int) -> Callable[..., torch.Tensor]:
    """``F.avg_pool{2,3}d`` or ``F.max_pool{2,3}d``."""
    table: dict[tuple[str, int], Callable[..., torch.Tensor]] = {
        ("avg", 2): F.avg_pool2d, ("avg", 3): F.avg_pool3d,
        ("max", 2): F.max_pool2d, ("max", 3): F.max_pool3d}
    return table[_check_kind(kind), _check(spatial_dims)]


def conv_fn(spatial_dims: int) -> Callable[..., torch.Tensor]:
    """``F.conv2d`` or ``F.conv3d``."""
    return F.conv2d if _check(spatial_dims) == 2 else F.conv3d


def channels_last_format(spatial_dims: int) -> torch.memory_format:
    """``torch.channels_last`` (2D) or ``torch.channels_last_3d`` (3D)."""
    return torch.channels_last if _check(spatial_dims) == 2 else torch.channels_last_3d


def linear_mode(spatial_dims: int) -> str:
    """The ``F.interpolate`` mode of linear interpolation: ``"bilinear"`` or ``"trilinear"``."""
    return "bilinear" if _check(spatial_dims) == 2 else "trilinear"
