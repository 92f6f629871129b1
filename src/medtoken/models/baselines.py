"""Dense baselines from MONAI: U-Net, nnU-Net-style DynUNet and UNETR.

These are the models users compare against. They are MONAI's own classes, wrapped so that they
follow the medtoken model contract (one frozen config, a registered preset, ``forward`` → logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from monai.networks.blocks.transformerblock import TransformerBlock
from monai.networks.nets import UNETR, DynUNet, UNet

from medtoken.models.base import ModelConfig, SegmentationModel
from medtoken.registry import register_family, register_preset

__all__ = [
    "DynUNetConfig",
    "MonaiUNETRConfig",
    "UNetConfig",
    "nnunet_plan",
]


# --------------------------------------------------------------------------------------------
# MONAI UNet


@dataclass(frozen=True)
class UNetConfig(ModelConfig):
    """MONAI ``UNet``: residual units, strided convolutions down, transposed convolutions up."""

    family: ClassVar[str] = "unet"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 2
    norm: str = "instance"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channels) < 2:
            raise ValueError(f"channels needs at least 2 entries, got {self.channels}")


@register_family
class MonaiUNet(SegmentationModel):
    """MONAI ``UNet`` under the medtoken contract."""

    config_class = UNetConfig

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        self.net = UNet(
            spatial_dims=config.spatial_dims,
            in_channels=config.in_channels,
            out_channels=config.num_classes,
            channels=config.channels,
            strides=(2,) * (len(config.channels) - 1),
            num_res_units=config.num_res_units,
            norm=config.norm,
            dropout=config.dropout,
        )

    config: UNetConfig

    @property
    def input_multiple(self) -> tuple[int, ...]:
        return (2 ** (len(self.config.channels) - 1),) * self.spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# nnU-Net-style DynUNet


def nnunet_plan(roi_size: tuple[int, ...], spacing: tuple[float, ...], min_feature_size: int = 4,
                max_stages: int = 6) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Kernel sizes and strides the way nnU-Net's planner derives them for a patch.

    Each stage halves every axis whose feature map stays >= ``min_feature_size`` voxels and whose
    spacing is at most twice the finest spacing (nnU-Net's anisotropy rule); an axis that is
    much coarser than the finest one gets kernel 1 until the others catch up.

    Returns:
        ``(kernel_sizes, strides)``, one tuple per stage; the first stride is all ones.
    """
    dims = len(roi_size)
    size = list(roi_size)
    current_spacing = list(spacing)
    kernels: list[tuple[int, ...]] = []
    strides: list[tuple[int, ...]] = [(1,) * dims]
    for _ in range(max_stages - 1):
        finest = min(current_spacing)
        pool = [
            size[a] // 2 >= min_feature_size and current_spacing[a] <= 2 * finest
            and size[a] % 2 == 0
            for a in range(dims)
        ]
        kernels.append(tuple(3 if current_spacing[a] <= 2 * finest else 1 for a in range(dims)))
        if not any(pool):
            break
        strides.append(tuple(2 if p else 1 for p in pool))
        for a in range(dims):
            if pool[a]:
                size[a] //= 2
                current_spacing[a] *= 2
    kernels = kernels[: len(strides)]
    while len(kernels) < len(strides):
        kernels.append((3,) * dims)
    return kernels, strides


@dataclass(frozen=True)
class DynUNetConfig(ModelConfig):
    """MONAI ``DynUNet`` planned as nnU-Net's 3d_fullres would be for ``roi_size``/``spacing``."""

    family: ClassVar[str] = "dynunet"
    dataset_facts: ClassVar[tuple[str, ...]] = ("spacing",)  # the plan follows the spacing
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    base_filters: int = 32
    max_filters: int = 320
    max_stages: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.spacing) != self.spatial_dims:
            raise ValueError(f"spacing must have {self.spatial_dims} entries, got {self.spacing}")


@register_family
class MonaiDynUNet(SegmentationModel):
    """MONAI ``DynUNet`` with nnU-Net's plan for the configured patch (no deep supervision)."""

    config_class = DynUNetConfig

    def __init__(self, config: DynUNetConfig) -> None:
        super().__init__(config)
        kernels, strides = nnunet_plan(config.roi_size, config.spacing,
                                       max_stages=config.max_stages)
        self.strides = strides
        filters = [min(config.base_filters * 2**i, config.max_filters) for i in range(len(strides))]
        self.net = DynUNet(
            spatial_dims=config.spatial_dims,
            in_channels=config.in_channels,
            out_channels=config.num_classes,
            kernel_size=kernels,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=filters,
            norm_name=("INSTANCE", {"affine": True}),
            act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
            deep_supervision=False,
            res_block=False,
        )

    @property
    def input_multiple(self) -> tuple[int, ...]:
        return tuple(math.prod(s[a] for s in self.strides) for a in range(self.spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# MONAI UNETR (reference for speed)


@dataclass(frozen=True)
class MonaiUNETRConfig(ModelConfig):
    """MONAI ``UNETR`` (ViT-B, patch 16, fixed input size = ``roi_size``)."""

    family: ClassVar[str] = "monai_unetr"
    feature_size: int = 16
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_heads: int = 12

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(s % 16 for s in self.roi_size):
            raise ValueError(f"roi_size must be divisible by 16 for UNETR, got {self.roi_size}")


@register_family
class MonaiUNETR(SegmentationModel):
    """MONAI ``UNETR`` under the medtoken contract."""

    config_class = MonaiUNETRConfig
    activation_checkpoint_blocks = (TransformerBlock,)

    def __init__(self, config: MonaiUNETRConfig) -> None:
        super().__init__(config)
        self.net = UNETR(
            in_channels=config.in_channels,
            out_channels=config.num_classes,
            img_size=config.roi_size,
            feature_size=config.feature_size,
            hidden_size=config.hidden_size,
            mlp_dim=config.mlp_dim,
            num_heads=config.num_heads,
            proj_type="perceptron",
            norm_name="instance",
            res_block=True,
            spatial_dims=config.spatial_dims,
        )

    @property
    def input_multiple(self) -> tuple[int, ...]:
        return (16,) * self.spatial_dims

    @property
    def fixed_input_size(self) -> tuple[int, ...]:
        return self.config.roi_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# presets


@register_preset
def unet3d() -> UNetConfig:
    """3D MONAI UNet, 16-128 channels, 3 downsamplings (CPU-friendly; Hippocampus-sized)."""
    return UNetConfig(spatial_dims=3, roi_size=(40, 56, 40), channels=(16, 32, 64, 128))


@register_preset
def unet2d() -> UNetConfig:
    """2D MONAI UNet, 16-256 channels, 4 downsamplings (BUSI-sized, 256x256)."""
    return UNetConfig(spatial_dims=2, roi_size=(256, 256), channels=(16, 32, 64, 128, 256))


@register_preset
def dynunet3d() -> DynUNetConfig:
    """nnU-Net 3d_fullres-style DynUNet; the plan follows ``roi_size`` and ``spacing``."""
    return DynUNetConfig(spatial_dims=3, roi_size=(64, 160, 160))


@register_preset
def monai_unetr3d() -> MonaiUNETRConfig:
    """MONAI UNETR at 96^3 (the BTCV tutorial configuration), the field's speed reference."""
    return MonaiUNETRConfig(spatial_dims=3, roi_size=(96, 96, 96))
