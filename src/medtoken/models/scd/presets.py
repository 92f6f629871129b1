"""Registered presets of the SCD family: the paper's settings, CPU-sized ones, tiny test ones.

Every pruned preset ``scd_<name>`` has a dense twin ``unetr_<name>``: the same config with pruning
and completion off (decoder skips from encoder blocks), i.e. the UNETR baseline it is compared to.
"""

from __future__ import annotations

import dataclasses

from medtoken.models.scd.config import (
    CompletionConfig,
    DecoderConfig,
    PruningConfig,
    SCDConfig,
    ViTConfig,
)
from medtoken.registry import register_preset

__all__ = ["dense_twin"]

_VIT_B_P8 = ViTConfig(patch_size=8, embed_dim=768, depth=12, num_heads=12)
_PRUNE_3_6_9 = (2, 5, 8)  # after blocks 3, 6, 9 (1-based), the paper's tp_loc "2-5-8"
_MTA_README = CompletionConfig(mode="mta", embed_dim=768, depth=1, num_heads=12)
_X8V2 = DecoderConfig(feature_size=16, num_upsamples=4, skip_blocks=(3, 6, 9))


def dense_twin(cfg: SCDConfig) -> SCDConfig:
    """The same model without pruning and completion (the UNETR baseline of ``cfg``)."""
    return dataclasses.replace(cfg, pruning=PruningConfig(),
                               completion=CompletionConfig(mode="none"))


# --------------------------------------------------------------------------------------------
# the paper's README settings (ViT-B, patch 8, MTA 768/1/12, x8v2 decoder)


@register_preset
def scd_btcv() -> SCDConfig:
    """BTCV 96³ CT, 14 classes: STP after blocks 3/6/9 keeping 10% (ρ=0.9), MTA, x8v2 decoder."""
    return SCDConfig(spatial_dims=3, in_channels=1, num_classes=14, roi_size=(96, 96, 96),
                     encoder=dataclasses.replace(_VIT_B_P8, drop_path_rate=0.1),
                     pruning=PruningConfig(prune_after=_PRUNE_3_6_9, keep_ratio=0.1),
                     completion=_MTA_README, decoder=_X8V2)


@register_preset
def unetr_btcv() -> SCDConfig:
    """Dense twin of ``scd_btcv``: UNETR with ViT-B at patch 8 and the x8v2 decoder."""
    return dense_twin(scd_btcv())


@register_preset
def scd_brats() -> SCDConfig:
    """MSD BraTS 128³, 4 MRI channels, 3 regions: STP keeping 25% (ρ=0.75), MTA, x8v2."""
    return SCDConfig(spatial_dims=3, in_channels=4, num_classes=3, roi_size=(128, 128, 128),
                     encoder=_VIT_B_P8,
                     pruning=PruningConfig(prune_after=_PRUNE_3_6_9, keep_ratio=0.25),
                     completion=_MTA_README, decoder=_X8V2)


@register_preset
def unetr_brats() -> SCDConfig:
    """Dense twin of ``scd_brats``."""
    return dense_twin(scd_brats())


# --------------------------------------------------------------------------------------------
# CPU-sized settings (train on a 2-core CPU)


@register_preset
def scd_hippo() -> SCDConfig:
    """MSD Hippocampus 40x56x40 (whole volumes), 3 classes: ViT 256/8/4 at patch 4 (1400 tokens),
    STP after blocks 2/4/6 keeping 25% (1400 → 350 → 87 → 21), MTA 192/1/3, 2-stage decoder."""
    return SCDConfig(spatial_dims=3, in_channels=1, num_classes=3, roi_size=(40, 56, 40),
                     encoder=ViTConfig(patch_size=4, embed_dim=256, depth=8, num_heads=4),
                     pruning=PruningConfig(prune_after=(1, 3, 5), keep_ratio=0.25),
                     completion=CompletionConfig(mode="mta", embed_dim=192, depth=1, num_heads=3),
                     decoder=DecoderConfig(feature_size=16, num_upsamples=2, skip_blocks=(3,)))


@register_preset
def unetr_hippo() -> SCDConfig:
    """Dense twin of ``scd_hippo``."""
    return dense_twin(scd_hippo())


@register_preset
def scd_busi() -> SCDConfig:
    """BUSI 256x256 ultrasound, 2 classes: ViT 256/8/4 at patch 8 (1024 tokens), STP after blocks
    2/4/6 keeping 25% (1024 → 256 → 64 → 16), MTA 128/1/4, x8v2-style decoder with F = 8."""
    return SCDConfig(spatial_dims=2, in_channels=1, num_classes=2, roi_size=(256, 256),
                     encoder=ViTConfig(patch_size=8, embed_dim=256, depth=8, num_heads=4),
                     pruning=PruningConfig(prune_after=(1, 3, 5), keep_ratio=0.25),
                     completion=CompletionConfig(mode="mta", embed_dim=128, depth=1, num_heads=4),
                     decoder=DecoderConfig(feature_size=8, num_upsamples=4,
                                           skip_blocks=(1, 3, 5)))


@register_preset
def unetr_busi() -> SCDConfig:
    """Dense twin of ``scd_busi``."""
    return dense_twin(scd_busi())


# --------------------------------------------------------------------------------------------
# tiny presets for the contract tests


@register_preset
def scd_test() -> SCDConfig:
    """3D, 16³ at patch 4 (64 tokens), ViT 32/4/2, pruning after blocks 1, 2, 3 keeping 50%,
    MTA 24/1/2, 3-stage decoder with a pooled bottleneck."""
    return SCDConfig(spatial_dims=3, in_channels=1, num_classes=2, roi_size=(16, 16, 16),
                     encoder=ViTConfig(patch_size=4, embed_dim=32, depth=4, num_heads=2),
                     pruning=PruningConfig(prune_after=(0, 1, 2), keep_ratio=0.5),
                     completion=CompletionConfig(mode="mta", embed_dim=24, depth=1, num_heads=2),
                     decoder=DecoderConfig(feature_size=8, num_upsamples=3, skip_blocks=(1, 2)))


@register_preset
def scd2d_test() -> SCDConfig:
    """2D, 32² at patch 4 (64 tokens), ViT 32/4/2, pruning after blocks 1, 2, 3 keeping 50%,
    MTA 32/1/2, 2-stage decoder."""
    return SCDConfig(spatial_dims=2, in_channels=1, num_classes=2, roi_size=(32, 32),
                     encoder=ViTConfig(patch_size=4, embed_dim=32, depth=4, num_heads=2),
                     pruning=PruningConfig(prune_after=(0, 1, 2), keep_ratio=0.5),
                     completion=CompletionConfig(mode="mta", embed_dim=32, depth=1, num_heads=2),
                     decoder=DecoderConfig(feature_size=8, num_upsamples=2, skip_blocks=(1,)))
