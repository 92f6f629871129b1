"""TM-UNet: a UNeXt-style U-Net with mLSTM token-memory (MSTM) blocks, in 2D and 3D.

Jiao et al., "TM-UNet: Token-Memory Enhanced Sequential Modeling for Efficient Medical Image
Segmentation", arXiv:2511.12270; built as released (github.com/xq141839/TM-UNet, commit 9f1d649):

- encoder: three conv stages (conv 3 -> BN -> max-pool -> ReLU), then two tokenised stages
  (strided conv 3 -> tokens -> LN -> MSTM block -> LN); the last is the bottleneck;
- decoder: five conv stages (conv 3 -> BN -> upsample -> ReLU -> add the skip), MSTM blocks after
  the first two; the fifth has no BN and no skip; a 1x1 conv head;
- skips are additions, at every resolution except the bottleneck's.

Differences from the release are options: ``mstm.mlstm_mode`` (the release runs the quadratic
parallel form; chunkwise is linear in the number of tokens and gives the same outputs),
``spatial_dims=3`` (scan over D x H x W; the release is 2D only), ``strides`` (the release halves
every stage) and multi-class heads (the release has one sigmoid logit; with
``binary_single_logit`` and ``num_classes=2`` that head is kept and returned as logits
``(0, z)``, so softmax gives ``(1 - sigmoid(z), sigmoid(z))``).

Parameter counts: with the released options (``tmunet_t/s/b`` as registered) they equal the
release's, 388,561 / 1,476,513 / 5,750,785. A head with ``K`` outputs (``num_classes=K > 2``,
or ``K = 2`` with ``binary_single_logit=False``) adds ``(K - 1) * (C1 // 2 + 1)``;
``mstm.unused_dwconv=False`` removes ``12 * (2 * D4 + D5 + C3)`` (2D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medtoken.layers.factory import (
    batch_norm_type,
    channels_last_format,
    conv_type,
    linear_mode,
    pool_fn,
)
from medtoken.layers.mstm import MSTMBlock, MSTMConfig, init_as_released, raster_map, raster_tokens
from medtoken.models.base import ModelConfig, SegmentationModel
from medtoken.registry import register_family, register_preset
from medtoken.utils.compile import exporting

__all__ = ["TMUNet", "TMUNetConfig"]



def _conv_bn(spatial_dims: int, c_in: int, c_out: int, stride: int = 1,
             batch_norm: bool = True) -> nn.Sequential:
    """3^n conv (with bias), optionally followed by BatchNorm."""
    conv = conv_type(spatial_dims)(c_in, c_out, 3, stride=stride, padding=1)
    if not batch_norm:
        return nn.Sequential(conv)
    return nn.Sequential(conv, batch_norm_type(spatial_dims)(c_out))


@dataclass(frozen=True)
class TMUNetConfig(ModelConfig):
    """TM-UNet (defaults: the release's base model, 2D, binary).

    Attributes:
        embed_dims: widths ``(C1, C2, C3, D4, D5)`` of the three conv stages and the two
            tokenised stages; the last decoder stage has ``C1 // 2`` channels. MSTM blocks run
            at widths D4, D5 (encoder) and D4, C3 (decoder).
        strides: downsampling factor (1 or 2 on every axis) of each encoder stage; the decoder
            upsamples by the same factors. The input size must be a multiple of their product.
        binary_single_logit: with ``num_classes == 2``, predict one logit ``z`` (the release's
            sigmoid head) and return logits ``(0, z)``; ignored for more classes.
        channels_last: compute the feature maps (and hold the conv weights) in the
            channels-last memory layout; the outputs are the same to rounding and the logits
            are returned channels-first either way. The MSTM blocks read and write tokens
            ``(B, N, C)``, which are channels-last maps without a copy, and the CPU's conv,
            batch-norm, pooling and upsampling kernels are faster on it (docs/benchmarks.md,
            "TM-UNet's training step against unet2d"). ``None`` (default): on in 2D, off in
            3D, where inductor (torch 2.13, CPU) compiles the training step of a
            ``channels_last_3d`` TM-UNet to wrong gradients (``tests/test_compile.py``).
        mstm: options of the MSTM blocks.
    """

    family: ClassVar[str] = "tmunet"
    spatial_dims: int = 2
    in_channels: int = 3
    num_classes: int = 2
    roi_size: tuple[int, ...] = (256, 256)
    embed_dims: tuple[int, ...] = (32, 64, 128, 256, 512)
    strides: tuple[int, ...] = (2, 2, 2, 2, 2)
    binary_single_logit: bool = True
    channels_last: bool | None = None
    mstm: MSTMConfig = field(default_factory=MSTMConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.embed_dims) != 5 or min(self.embed_dims) < 1 or self.embed_dims[0] < 2:
            raise ValueError(f"embed_dims must be 5 positive widths with C1 >= 2, got "
                             f"{self.embed_dims}")
        for index, name in ((2, "embed_dims[2] (C3)"), (3, "embed_dims[3] (D4)"),
                            (4, "embed_dims[4] (D5)")):
            self.mstm.check_width(self.embed_dims[index], name)
        if len(self.strides) != 5 or any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides must be 5 entries, each 1 or 2, got {self.strides}")
        multiple = math.prod(self.strides)
        if any(s % multiple for s in self.roi_size):
            raise ValueError(f"roi_size must be divisible by prod(strides) = {multiple}, got "
                             f"{self.roi_size}")

    @property
    def uses_channels_last(self) -> bool:
        """``channels_last`` resolved: by default on in 2D, off in 3D."""
        return self.spatial_dims == 2 if self.channels_last is None else self.channels_last

    def variant_notes(self) -> dict[str, Any]:
        """The mLSTM form an export bakes in."""
        return self.mstm.variant_notes()


@register_family
class TMUNet(SegmentationModel):
    """TM-UNet under the medtoken contract (see the module docstring)."""

    config_class = TMUNetConfig
    config: TMUNetConfig
    activation_checkpoint_blocks = (MSTMBlock,)

    def __init__(self, config: TMUNetConfig) -> None:
        super().__init__(config)
        dims, (c1, c2, c3, d4, d5) = config.spatial_dims, config.embed_dims
        s = config.strides
        self.encoders = nn.ModuleList(
            _conv_bn(dims, a, b) for a, b in ((config.in_channels, c1), (c1, c2), (c2, c3)))
        self.embeds = nn.ModuleList(
            _conv_bn(dims, a, b, stride, batch_norm=False) for a, b, stride in
            ((c3, d4, s[3]), (d4, d5, s[4])))
        self.embed_norms = nn.ModuleList(nn.LayerNorm(d) for d in (d4, d5))
        init_as_released(self.embeds)
        self.enc_blocks = nn.ModuleList(MSTMBlock(d, dims, config.mstm) for d in (d4, d5))
        self.enc_norms = nn.ModuleList(nn.LayerNorm(d) for d in (d4, d5))
        self.decoders = nn.ModuleList(
            _conv_bn(dims, a, b, batch_norm=bn) for a, b, bn in
            ((d5, d4, True), (d4, c3, True), (c3, c2, True), (c2, c1, True), (c1, c1 // 2, False)))
        self.dec_blocks = nn.ModuleList(MSTMBlock(d, dims, config.mstm) for d in (d4, c3))
        self.dec_norms = nn.ModuleList(nn.LayerNorm(d) for d in (d4, c3))
        self.single_logit = config.binary_single_logit and config.num_classes == 2
        self.head = conv_type(dims)(c1 // 2, 1 if self.single_logit else config.num_classes, 1)
        if config.uses_channels_last:  # the conv weights too: convolving them is faster so
            # (nn.Module.to documents memory_format; its type stubs lack it)
            self.to(memory_format=channels_last_format(dims))  # type: ignore[call-overload]

    @property
    def input_multiple(self) -> tuple[int, ...]:
        return (math.prod(self.config.strides),) * self.spatial_dims

    @property
    def needs_unused_parameter_search(self) -> bool:
        return bool(self.config.mstm.unused_dwconv)  # the release's never-called conv units

    @property
    def compiled_training_problem(self) -> str | None:
        if self.spatial_dims == 3 and self.config.uses_channels_last:
            return ("torch 2.13's inductor compiles the training step of a channels-last 3D "
                    "TM-UNet to wrong gradients: set channels_last=false or train without "
                    "--compile")
        return None

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory layout of the conv stages (a no-op when it is already; exported
        graphs hold no layouts)."""
        if self.config.uses_channels_last and not exporting():
            return x.contiguous(memory_format=channels_last_format(self.spatial_dims))
        return x.contiguous()

    def _mstm(self, x: torch.Tensor, block: nn.Module, norm: nn.Module) -> torch.Tensor:
        """MSTM block + LayerNorm on a feature map ``(B, C, *S)`` -> ``(B, C, *S)``."""
        tokens, shape = raster_tokens(x)  # (B, N, C)
        return self._layout(raster_map(norm(block(tokens, shape)), shape))  # (B, C, *S)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bottleneck map and the skips t1..t4 (finest first)."""
        skips = []
        pool = pool_fn("max", self.spatial_dims)
        for stage, stride in zip(self.encoders, self.config.strides[:3], strict=True):
            x = stage(x)
            x = F.relu(pool(x, stride) if stride > 1 else x)
            skips.append(x)
        for embed, embed_norm, block, norm in zip(self.embeds, self.embed_norms, self.enc_blocks,
                                                  self.enc_norms, strict=True):
            tokens, shape = raster_tokens(embed(x))  # (B, N, D)
            x = self._mstm(raster_map(embed_norm(tokens), shape), block, norm)  # (B, D, *S)
            skips.append(x)
        return skips.pop(), skips

    def _decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Decoder stages from the bottleneck map up to the input resolution."""
        mode = linear_mode(self.spatial_dims)
        for j, (stage, stride) in enumerate(zip(self.decoders, self.config.strides[::-1],
                                                strict=True)):
            x = stage(x)
            if stride > 1:
                x = F.interpolate(x, scale_factor=stride, mode=mode, align_corners=False)
            x = F.relu(x)
            if skips:
                x = x + skips.pop()
            if j < len(self.dec_blocks):
                x = self._mstm(x, self.dec_blocks[j], self.dec_norms[j])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> logits ``(B, num_classes, *S)``."""
        if x.dim() != self.spatial_dims + 2 or any(
                s % m for s, m in zip(x.shape[2:], self.input_multiple, strict=True)):
            raise ValueError(f"TM-UNet needs (B, C, *S) with {self.spatial_dims} spatial sizes "
                             f"divisible by {self.input_multiple[0]}, got {tuple(x.shape)}")
        logits = self.head(self._decode(*self._encode(self._layout(x))))
        if self.single_logit:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)  # (B, 2, *S)
        return logits.contiguous()


# --------------------------------------------------------------------------------------------
# presets

_RELEASED_SIZES = {"t": (8, 16, 32, 64, 128), "s": (16, 32, 64, 128, 256),
                   "b": (32, 64, 128, 256, 512)}
# 3D: MSD Hippocampus patches (40 x 56 x 40, 3 classes): 8-fold reduction, tokens at 1/4
# (decoder block, 10 x 14 x 10) and 1/8 (5 x 7 x 5); the unused conv units are dropped.
_HIPPOCAMPUS_3D = {"spatial_dims": 3, "in_channels": 1, "num_classes": 3,
                   "roi_size": (40, 56, 40), "strides": (2, 2, 1, 2, 1)}


@register_preset
def tmunet_t() -> TMUNetConfig:
    """Released tiny TM-UNet (the scripts' default), 2D RGB, binary: 388,561 parameters."""
    return TMUNetConfig(embed_dims=_RELEASED_SIZES["t"])


@register_preset
def tmunet_s() -> TMUNetConfig:
    """Released small TM-UNet, 2D RGB, binary: 1,476,513 parameters."""
    return TMUNetConfig(embed_dims=_RELEASED_SIZES["s"])


@register_preset
def tmunet_b() -> TMUNetConfig:
    """Released base TM-UNet, 2D RGB, binary: 5,750,785 parameters."""
    return TMUNetConfig(embed_dims=_RELEASED_SIZES["b"])


@register_preset
def tmunet3d_t() -> TMUNetConfig:
    """3D TM-UNet, tiny widths, for MSD Hippocampus-sized patches."""
    return TMUNetConfig(embed_dims=_RELEASED_SIZES["t"], mstm=MSTMConfig(unused_dwconv=False),
                        **_HIPPOCAMPUS_3D)  # type: ignore[arg-type]


@register_preset
def tmunet3d_s() -> TMUNetConfig:
    """3D TM-UNet, small widths, for MSD Hippocampus-sized patches (2-core CPU training)."""
    return TMUNetConfig(embed_dims=_RELEASED_SIZES["s"], mstm=MSTMConfig(unused_dwconv=False),
                        **_HIPPOCAMPUS_3D)  # type: ignore[arg-type]


@register_preset
def tmunet3d_b() -> TMUNetConfig:
    """3D TM-UNet, base widths, for MSD Hippocampus-sized patches."""
    return TMUNetConfig(embed_dims=_RELEASED_SIZES["b"], mstm=MSTMConfig(unused_dwconv=False),
                        **_HIPPOCAMPUS_3D)  # type: ignore[arg-type]


# chunk_size 12 makes the token counts of the test presets (64, 16, 4 in 2D; 64, 8 in 3D) hit
# full chunks plus a remainder, and a remainder alone
_TEST_MSTM = MSTMConfig(chunk_size=12, unused_dwconv=False)


@register_preset
def tmunet_test() -> TMUNetConfig:
    """Tiny 2D TM-UNet for the contract tests (64 x 64, binary single-logit head)."""
    return TMUNetConfig(roi_size=(64, 64), embed_dims=(4, 8, 8, 16, 16), mstm=_TEST_MSTM)


@register_preset
def tmunet3d_test() -> TMUNetConfig:
    """Tiny 3D TM-UNet for the contract tests (16^3, 3 classes)."""
    return TMUNetConfig(embed_dims=(4, 8, 8, 16, 16), mstm=_TEST_MSTM,
                        **{**_HIPPOCAMPUS_3D, "roi_size": (16, 16, 16)})  # type: ignore[arg-type]
