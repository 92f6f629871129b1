"""The SCD model: sparse encoding (ViT + STP) → token completion (MTA) → dense decoding (UNETR).

Zhou et al., "Token Sparsification for Faster Medical Image Segmentation", IPMI 2023,
arXiv:2303.06522 (``AdaSeg3D`` in the official code). With a completion, every decoder skip
receives the same completed token map (upstream behaviour: intermediate encoder layers reach the
decoder only through the assembly). Without one (``completion.mode="none"``, pruning off) this is
the dense UNETR twin whose skips read encoder blocks ``decoder.skip_blocks``.
"""

from __future__ import annotations

from typing import Any

import torch

from medtoken.layers.transformer import TransformerBlock
from medtoken.models.base import SegmentationModel, SegOutput, TokenSelection
from medtoken.models.scd.config import SCDConfig
from medtoken.models.scd.decoder import UNETRDecoder
from medtoken.models.scd.encoder import EncoderOutput, ViTEncoder
from medtoken.registry import register_family
from medtoken.tokens.assembly import TokenAssembly
from medtoken.tokens.selection import cell_boxes

__all__ = ["SCD"]


@register_family
class SCD(SegmentationModel):
    """ViT-UNETR with soft-top-k token pruning and multi-layer token assembly (or dense)."""

    config_class = SCDConfig
    config: SCDConfig
    activation_checkpoint_blocks = (TransformerBlock,)
    patch_box: torch.Tensor  # (L, 2 sd) voxel boxes of the patch tokens, raster order

    def __init__(self, config: SCDConfig) -> None:
        super().__init__(config)
        c = config
        dense = c.completion.mode == "none"
        self.encoder = ViTEncoder(c.spatial_dims, c.in_channels, c.roi_size, c.encoder, c.pruning,
                                  skip_blocks=c.decoder.skip_blocks if dense else ())
        self.completion = None if dense else TokenAssembly(
            c.encoder.embed_dim, c.completion.embed_dim, c.completion.depth,
            c.completion.num_heads, c.grid_size, num_sources=len(c.pruning.prune_after) + 1,
            num_prefix_tokens=self.encoder.num_prefix_tokens, mode=c.completion.mode)
        self.decoder = UNETRDecoder(c.spatial_dims, c.in_channels, c.num_classes,
                                    c.encoder.embed_dim, c.encoder.patch_size,
                                    c.decoder.num_upsamples, feature_size=c.decoder.feature_size)
        self.register_buffer("patch_box", cell_boxes(c.roi_size, c.grid_size), persistent=False)

    @property
    def input_multiple(self) -> tuple[int, ...]:
        multiple = max(self.config.encoder.patch_size, 2**self.config.decoder.num_upsamples)
        return (multiple,) * self.spatial_dims

    @property
    def fixed_input_size(self) -> tuple[int, ...]:
        return self.config.roi_size

    @property
    def needs_unused_parameter_search(self) -> bool:
        """Only random selection leaves parameters (the score networks) without gradient."""
        return bool(self.config.pruning.prune_after) and self.config.pruning.method == "random"

    def _token_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L, C)`` raster-ordered tokens → ``(B, C, *G)``."""
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, *self.config.grid_size)  # (B, C, *G)

    def _decoder_inputs(self, enc: EncoderOutput) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Skip maps and bottleneck map ``(B, C, *G)`` from the encoder output."""
        num_skips = self.config.decoder.num_upsamples - 1
        if self.completion is None:
            bottleneck = self._token_map(enc.tokens[:, self.encoder.num_prefix_tokens:])
            return [self._token_map(h) for h in enc.hidden], bottleneck
        dense = self.completion([*enc.pruned, enc.tokens], [*enc.pruned_pos_idx, enc.pos_idx])
        bottleneck = self._token_map(dense)  # (B, C, *G)
        return [bottleneck] * num_skips, bottleneck

    def _info(self, enc: EncoderOutput) -> dict[str, Any]:
        """Diagnostics for logging and ``medtoken plot tokens`` (index tensors detached)."""
        return {
            "token_grid": self.config.grid_size,
            "tokens_per_stage": self.config.token_counts(),
            "kept_token_idx": [k.detach() for k in enc.kept_pos_idx],
            "pruned_token_idx": [p.detach() for p in enc.pruned_pos_idx],
        }

    def forward_with_aux(self, x: torch.Tensor, target: torch.Tensor | None = None) -> SegOutput:
        """Logits ``(B, num_classes, *S)`` plus diagnostics.

        ``info`` holds ``token_grid`` (patch tokens per axis), ``tokens_per_stage`` (alive patch
        tokens at the input and after each pruning stage, CLS excluded), ``kept_token_idx`` and
        ``pruned_token_idx`` (per stage, ``(B, k_s)`` and ``(B, n_s - k_s)`` raster positions in
        the patch grid, ascending). ``tokens`` holds the same kept sets as a
        :class:`TokenSelection` over the patches (``None`` without pruning). There are no
        auxiliary losses (STP has no score regulariser).
        """
        enc = self.encoder(x)
        skips, bottleneck = self._decoder_inputs(enc)
        logits = self.decoder(x, skips, bottleneck)
        return SegOutput(logits, {}, self._info(enc), self._tokens(enc))

    def _tokens(self, enc: EncoderOutput) -> TokenSelection | None:
        """The patches kept by each pruning stage (``None`` without pruning)."""
        if not enc.kept_pos_idx:
            return None
        return TokenSelection(self.patch_box, tuple(k.detach() for k in enc.kept_pos_idx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *roi_size)`` → logits ``(B, num_classes, *roi_size)``."""
        return self.forward_with_aux(x).logits
