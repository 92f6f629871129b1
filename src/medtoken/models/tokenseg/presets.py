"""Registered TokenSeg presets: the reference model, CPU-sized ones, controls and test sizes.

Controls are config values; the three the spec asks for are registered for the reference model
and work on any preset through overrides:

- no compression: ``selection.num_selected=<N>`` and ``vq.enabled=false``;
- random selection: ``selection.method=random``;
- no boundary term: ``selection.boundary_weight=0``.
"""

from __future__ import annotations

from medtoken.models.tokenseg.config import (
    DecoderConfig,
    EncoderConfig,
    SelectionConfig,
    TokenSegConfig,
    VQConfig,
)
from medtoken.registry import register_preset

__all__: list[str] = []

_SPARSE = DecoderConfig(mode="sparse", refine_levels=2, refine_ratio=0.16, refine_halo=1)


@register_preset
def tokenseg3d() -> TokenSegConfig:
    """The spec's reference model on a 64x160x160 patch: 400 candidates, K = 100, M = 4096."""
    return TokenSegConfig()


@register_preset
def tokenseg3d_sparse() -> TokenSegConfig:
    """The reference model with the sparse decoder: levels 1-2 and full resolution are decoded
    only in the 16 cells (16 x 32 x 32 voxels each) met by the best selected tokens."""
    return TokenSegConfig(decoder=_SPARSE)


@register_preset
def tokenseg3d_fast() -> TokenSegConfig:
    """The sparse decoder plus a 32-wide level 1 (22.8 M parameters): the configuration meant to
    run in under half the time and memory of ``dynunet3d`` on the same patch."""
    return TokenSegConfig(encoder=EncoderConfig(channels=(32, 32, 128, 256, 320)), decoder=_SPARSE)


@register_preset
def tokenseg3d_k400() -> TokenSegConfig:
    """Control: no compression (all 400 candidates kept, VQ bypassed)."""
    return TokenSegConfig(selection=SelectionConfig(num_selected=400), vq=VQConfig(enabled=False))


@register_preset
def tokenseg3d_random() -> TokenSegConfig:
    """Control: K = 100 random candidates instead of the top-K of the importance score."""
    return TokenSegConfig(selection=SelectionConfig(method="random"))


@register_preset
def tokenseg3d_noboundary() -> TokenSegConfig:
    """Control: importance score without the Sobel boundary term."""
    return TokenSegConfig(selection=SelectionConfig(boundary_weight=0.0))


@register_preset
def tokenseg3d_small() -> TokenSegConfig:
    """CPU-sized 3D model for MSD Hippocampus (32x48x32 patch, 3 classes, 300 candidates,
    K = 75; about 0.8 GMACs per patch)."""
    return TokenSegConfig(
        roi_size=(32, 48, 32), num_classes=3, embed_dim=64,
        encoder=EncoderConfig(channels=(8, 16, 32, 64, 128),
                              cell_grids=((4, 6, 4),) * 3 + ((2, 3, 2),), num_candidates=300),
        vq=VQConfig(num_codes=512), selection=SelectionConfig(num_selected=75))


@register_preset
def tokenseg2d_small() -> TokenSegConfig:
    """CPU-sized 2D model for BUSI (256x256, 2 classes); pyramid split 256/64/64/16 = 400,
    K = 100; about 1 GMAC per image."""
    return TokenSegConfig(
        spatial_dims=2, roi_size=(256, 256), embed_dim=64,
        encoder=EncoderConfig(channels=(8, 16, 32, 64, 128),
                              cell_grids=((16, 16), (8, 8), (8, 8), (4, 4))),
        vq=VQConfig(num_codes=512))


@register_preset
def tokenseg_test() -> TokenSegConfig:
    """Tiny 3D model (32^3) with the sparse decoder and a token Transformer block."""
    return TokenSegConfig(
        roi_size=(32, 32, 32), embed_dim=16, num_token_layers=1, num_heads=2,
        encoder=EncoderConfig(channels=(8, 8, 16, 16, 16), cell_grids=((2, 2, 2),) * 4,
                              num_candidates=32),
        vq=VQConfig(num_codes=16),
        selection=SelectionConfig(num_selected=8, scorer_hidden_dim=8),
        decoder=DecoderConfig(mode="sparse", refine_levels=1, refine_ratio=0.25, refine_halo=1))


@register_preset
def tokenseg2d_test() -> TokenSegConfig:
    """Tiny 2D model (64^2) with the dense decoder."""
    return TokenSegConfig(
        spatial_dims=2, roi_size=(64, 64), embed_dim=16,
        encoder=EncoderConfig(channels=(8, 8, 16, 16, 16),
                              cell_grids=((4, 4), (2, 2), (2, 2), (2, 2)), num_candidates=28),
        vq=VQConfig(num_codes=16),
        selection=SelectionConfig(num_selected=8, scorer_hidden_dim=8))
