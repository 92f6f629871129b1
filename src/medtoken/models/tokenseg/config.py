"""TokenSeg configuration: one frozen dataclass per part, validated at construction.

Defaults are the reference configuration of the spec (``docs/models_tokenseg.md`` lists which
values come from the paper and which are our choices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from medtoken.models.base import ModelConfig

__all__ = [
    "DecoderConfig",
    "EncoderConfig",
    "SelectionConfig",
    "TokenSegConfig",
    "VQConfig",
    "input_multiple",
]

POOL_MODES = ("avg", "max")
SELECTION_METHODS = ("score", "random")
DECODER_MODES = ("dense", "sparse")


@dataclass(frozen=True)
class EncoderConfig:
    """Hierarchical residual CNN and its cell tokens.

    Attributes:
        channels: widths; ``channels[0]`` is the full-resolution skip (stem) used by the decoder,
            ``channels[l]`` the width of level ``l`` at stride ``2**l`` (l = 1..L).
        cell_grids: per level, the grid of non-overlapping cells; each cell becomes one token.
        num_candidates: the candidate pool size N; must equal the total number of cells.
        pool: how a cell is pooled, ``"avg"`` or ``"max"``.
    """

    channels: tuple[int, ...] = (32, 64, 128, 256, 320)
    cell_grids: tuple[tuple[int, ...], ...] = ((4, 5, 5),) * 4
    num_candidates: int = 400
    pool: str = "avg"

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError(f"encoder.channels needs >= 2 positive widths (stem + levels), got "
                             f"{self.channels}")
        if len(self.cell_grids) != len(self.channels) - 1:
            raise ValueError(f"encoder.cell_grids needs one grid per level "
                             f"({len(self.channels) - 1}), got {len(self.cell_grids)}")
        if any(min(g) < 1 for g in self.cell_grids):
            raise ValueError(f"encoder.cell_grids must be positive, got {self.cell_grids}")
        total = sum(math.prod(g) for g in self.cell_grids)
        if total != self.num_candidates:
            raise ValueError(f"encoder.cell_grids give {total} cells but num_candidates is "
                             f"{self.num_candidates}; they must be equal")
        if self.pool not in POOL_MODES:
            raise ValueError(f"encoder.pool must be one of {POOL_MODES}, got '{self.pool}'")

    @property
    def num_levels(self) -> int:
        return len(self.channels) - 1

    @property
    def level_counts(self) -> tuple[int, ...]:
        """Candidate tokens per level."""
        return tuple(math.prod(g) for g in self.cell_grids)


@dataclass(frozen=True)
class VQConfig:
    """Vector quantisation of the candidate tokens.

    Attributes:
        enabled: ``False`` bypasses the codebook (control; the diversity term is then 1).
        num_codes: codebook size M.
        beta: commitment weight inside the VQ loss.
        loss_weight: weight of the VQ loss in the total loss.
        dead_code_restart: re-initialise codes unused over an epoch from current tokens.
    """

    enabled: bool = True
    num_codes: int = 4096
    beta: float = 0.25
    loss_weight: float = 1.0
    dead_code_restart: bool = True

    def __post_init__(self) -> None:
        if self.num_codes < 1:
            raise ValueError(f"vq.num_codes must be >= 1, got {self.num_codes}")
        if self.beta < 0 or self.loss_weight < 0:
            raise ValueError(f"vq.beta and vq.loss_weight must be >= 0, got {self.beta}, "
                             f"{self.loss_weight}")


@dataclass(frozen=True)
class SelectionConfig:
    """Importance scoring and top-K selection.

    Attributes:
        num_selected: K, tokens kept per sample.
        method: ``"score"`` (top-K of the importance score) or ``"random"`` (control; seeded by
            ``seed`` in eval mode so that evaluation is deterministic).
        boundary_weight: weight of the Sobel boundary strength b.
        semantic_weight: weight of the learned semantic score m.
        diversity_weight: weight of the codebook diversity d.
        scorer_hidden_dim: hidden width of the scorer MLP (C -> hidden -> 1).
        gate: multiply the selected tokens by their score (the gradient path to the scorer).
        seed: seed of random selection in eval mode.
        boundary_loss_weight: weight of the auxiliary BCE between m and "cell meets the label's
            boundary band" (0 = off, the paper's setting as far as known).
        boundary_radius: half-width in voxels of that boundary band.
    """

    num_selected: int = 100
    method: str = "score"
    boundary_weight: float = 1.0 / 3.0
    semantic_weight: float = 1.0 / 3.0
    diversity_weight: float = 1.0 / 3.0
    scorer_hidden_dim: int = 128
    gate: bool = True
    seed: int = 0
    boundary_loss_weight: float = 0.0
    boundary_radius: int = 2

    def __post_init__(self) -> None:
        if self.num_selected < 1:
            raise ValueError(f"selection.num_selected must be >= 1, got {self.num_selected}")
        if self.method not in SELECTION_METHODS:
            raise ValueError(f"selection.method must be one of {SELECTION_METHODS}, got "
                             f"'{self.method}'")
        weights = (self.boundary_weight, self.semantic_weight, self.diversity_weight)
        if min(weights) < 0 or (self.method == "score" and sum(weights) <= 0):
            raise ValueError(f"selection weights (boundary, semantic, diversity) must be >= 0 "
                             f"with a positive sum, got {weights}")
        if self.scorer_hidden_dim < 1:
            raise ValueError(f"selection.scorer_hidden_dim must be >= 1, got "
                             f"{self.scorer_hidden_dim}")
        if self.boundary_loss_weight < 0 or self.boundary_radius < 0:
            raise ValueError(f"selection.boundary_loss_weight and boundary_radius must be >= 0, "
                             f"got {self.boundary_loss_weight}, {self.boundary_radius}")

    @property
    def weights(self) -> tuple[float, float, float]:
        return (self.boundary_weight, self.semantic_weight, self.diversity_weight)


@dataclass(frozen=True)
class DecoderConfig:
    """Sparse-to-dense decoder.

    Attributes:
        mode: ``"dense"`` (the spec's decoder: every level at full extent) or ``"sparse"``
            (levels ``1..refine_levels`` and full resolution are decoded only inside
            ``R = round(refine_ratio * K)`` cells of the level-1 cell grid, those met by the
            best-scoring selected tokens; the rest is upsampled from a coarse head at level
            ``refine_levels + 1``).
        refine_levels: sparse mode: how many of the finest levels are decoded sparsely.
        refine_ratio: sparse mode: cells refined per selected token (R is at least 1 and at
            most the number of level-1 cells; a fixed count per sample, so shapes are static
            and the cost grows with K).
        refine_halo: sparse mode: context voxels kept around each cell between sparse stages.
        refine_chunk: sparse mode: cells decoded together; bounds the peak memory (the result
            does not depend on it).
    """

    mode: str = "dense"
    refine_levels: int = 1
    refine_ratio: float = 0.16
    refine_halo: int = 1
    refine_chunk: int = 4

    def __post_init__(self) -> None:
        if self.mode not in DECODER_MODES:
            raise ValueError(f"decoder.mode must be one of {DECODER_MODES}, got '{self.mode}'")
        counts = (self.refine_levels, self.refine_chunk)
        if min(counts) < 1 or self.refine_halo < 0:
            raise ValueError(f"decoder.refine_levels and refine_chunk must be >= 1 and "
                             f"refine_halo >= 0, got {counts} and {self.refine_halo}")
        if not 0 < self.refine_ratio <= 1:
            raise ValueError(f"decoder.refine_ratio must be in (0, 1], got {self.refine_ratio}")


@dataclass(frozen=True)
class TokenSegConfig(ModelConfig):
    """TokenSeg (arXiv:2601.04519): hierarchical cell tokens, VQ, boundary-aware top-K, decoder.

    Attributes:
        embed_dim: token width C.
        num_token_layers: pre-norm Transformer blocks over the K selected tokens (0 = none).
        num_heads: attention heads of those blocks.
        encoder, vq, selection, decoder: the nested parts.
    """

    family: ClassVar[str] = "tokenseg"
    roi_size: tuple[int, ...] = (64, 160, 160)
    embed_dim: int = 256
    num_token_layers: int = 0
    num_heads: int = 8
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(len(g) != self.spatial_dims for g in self.encoder.cell_grids):
            raise ValueError(f"encoder.cell_grids must have {self.spatial_dims} entries per "
                             f"level, got {self.encoder.cell_grids}")
        if self.embed_dim < 2 * self.spatial_dims:
            raise ValueError(f"embed_dim must be >= {2 * self.spatial_dims}, got "
                             f"{self.embed_dim}")
        if self.num_token_layers < 0 or (self.num_token_layers and self.embed_dim %
                                         self.num_heads):
            raise ValueError(f"num_token_layers must be >= 0 and embed_dim ({self.embed_dim}) "
                             f"divisible by num_heads ({self.num_heads})")
        if self.selection.num_selected > self.encoder.num_candidates:
            raise ValueError(f"selection.num_selected ({self.selection.num_selected}) must be <= "
                             f"encoder.num_candidates ({self.encoder.num_candidates})")
        self._check_decoder()
        multiple = input_multiple(self)
        if any(s % m for s, m in zip(self.roi_size, multiple, strict=True)):
            raise ValueError(f"roi_size {self.roi_size} must be a multiple of {multiple} (every "
                             f"level's cell grid must tile its feature map exactly)")

    def variant_notes(self) -> dict[str, Any]:
        """The top-K selection, the VQ lookup and the decoder mode an export bakes in."""
        sel, vq = self.selection, self.vq
        return {"token_selection": f"top-K ({sel.method}), K = {sel.num_selected}",
                "vq_lookup": f"nearest of {vq.num_codes} codes" if vq.enabled else "off",
                "decoder_mode": self.decoder.mode}

    def _check_decoder(self) -> None:
        if self.decoder.mode != "sparse":
            return
        if self.decoder.refine_levels >= self.encoder.num_levels:
            raise ValueError(f"decoder.refine_levels must be < the number of levels "
                             f"({self.encoder.num_levels}), got {self.decoder.refine_levels}")

    @property
    def num_refine_cells(self) -> int:
        """Sparse decoder: cells refined per sample, ``round(refine_ratio * K)`` clipped to
        ``[1, level-1 cells]``."""
        wanted = round(self.decoder.refine_ratio * self.selection.num_selected)
        return min(max(wanted, 1), math.prod(self.encoder.cell_grids[0]))


def input_multiple(config: TokenSegConfig) -> tuple[int, ...]:
    """What each spatial size must be a multiple of, so that all cell grids tile exactly.

    Level ``l`` needs ``2**l * grid_l``; the sparse decoder also needs the level-1 grid to tile
    level ``refine_levels + 1``.
    """
    needs = [tuple(2**level * g for g in grid)
             for level, grid in enumerate(config.encoder.cell_grids, start=1)]
    if config.decoder.mode == "sparse":
        coarse = config.decoder.refine_levels + 1
        needs.append(tuple(2**coarse * g for g in config.encoder.cell_grids[0]))
    return tuple(math.lcm(*axis) for axis in zip(*needs, strict=True))
