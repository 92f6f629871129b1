"""Benchmark probes: one layer wrapped as a segmentation model for ``medtoken benchmark``.

A probe is a 1x1 stem (``in_channels -> dim``), the layer under test at full input resolution, and
a 1x1 head. Stem and head cost ``O(N * dim)``; the layer is what grows with the number of tokens
``N`` (the input's voxel count), so a sweep over the input size is the layer's scaling curve::

    medtoken benchmark --models mstm_layer,mstm_layer:mstm.mlstm_mode=parallel \\
        --input-size 1,64,32,32 --sweep roi_size=[32,32],[32,64],[64,64],[64,128],[128,128]

Probes are registered like every model (``medtoken models`` lists them) but are not meant to be
trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from medtoken.layers.factory import conv_type
from medtoken.layers.mstm import MSTMBlock, MSTMConfig, raster_map, raster_tokens
from medtoken.models.base import ModelConfig, SegmentationModel
from medtoken.registry import register_family, register_preset

__all__ = ["MSTMLayerProbe", "MSTMLayerProbeConfig"]

@dataclass(frozen=True)
class MSTMLayerProbeConfig(ModelConfig):
    """One MSTM block (forward + reverse mLSTM, pooling, norms) of width ``dim``.

    Attributes:
        dim: token width of the block (TM-UNet's deepest stages use 128-256).
        mstm: the block's options; ``mstm.mlstm_mode`` picks parallel / chunkwise / recurrent.
    """

    family: ClassVar[str] = "mstm_layer"
    dim: int = 64
    mstm: MSTMConfig = field(default_factory=lambda: MSTMConfig(unused_dwconv=False))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        self.mstm.check_width(self.dim, "dim")

    def variant_notes(self) -> dict[str, Any]:
        """The mLSTM form an export bakes in."""
        return self.mstm.variant_notes()


@register_family
class MSTMLayerProbe(SegmentationModel):
    """Stem -> one :class:`MSTMBlock` over all ``N = prod(S)`` voxels -> head."""

    config_class = MSTMLayerProbeConfig
    activation_checkpoint_blocks = (MSTMBlock,)

    def __init__(self, config: MSTMLayerProbeConfig) -> None:
        super().__init__(config)
        conv = conv_type(config.spatial_dims)
        self.stem = conv(config.in_channels, config.dim, 1)
        self.block = MSTMBlock(config.dim, config.spatial_dims, config.mstm)
        self.head = conv(config.dim, config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> logits ``(B, num_classes, *S)``."""
        tokens, shape = raster_tokens(self.stem(x))  # (B, N, dim), N = prod(S)
        return self.head(raster_map(self.block(tokens, shape), shape))


@register_preset
def mstm_layer() -> MSTMLayerProbeConfig:
    """One 64-wide MSTM block, chunkwise mLSTM (the TM-UNet default), 2D."""
    return MSTMLayerProbeConfig(spatial_dims=2, in_channels=64, num_classes=2, roi_size=(64, 64))


@register_preset
def mstm_layer_test() -> MSTMLayerProbeConfig:
    """Tiny probe for the registry-wide contract tests."""
    return MSTMLayerProbeConfig(spatial_dims=2, in_channels=1, num_classes=2, roi_size=(8, 8),
                                dim=8, mstm=MSTMConfig(chunk_size=8, num_heads=2,
                                                       unused_dwconv=False))
