"""Config dataclasses of the SCD family (sparse encoding → token completion → dense decoding).

One family covers the pruned model (STP + MTA), its ablations and its dense twin: the dense UNETR
is ``PruningConfig(prune_after=())`` with ``CompletionConfig(mode="none")`` (decoder skips read from
encoder blocks), not a separate class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from medtoken.models.base import ModelConfig
from medtoken.tokens.pruning import SELECTIONS
from medtoken.tokens.topk import keep_count

__all__ = [
    "COMPLETION_MODES",
    "PATCH_SIZES",
    "CompletionConfig",
    "DecoderConfig",
    "PruningConfig",
    "SCDConfig",
    "ViTConfig",
]

PATCH_SIZES = (4, 8, 16)
COMPLETION_MODES = ("mta", "mask", "none")


def _check_blocks(name: str, blocks: tuple[int, ...], depth: int | None = None) -> None:
    """Block indices must be 0-based, strictly increasing (and ``< depth`` when given)."""
    if any(b < 0 for b in blocks) or list(blocks) != sorted(set(blocks)):
        raise ValueError(f"{name} must be strictly increasing 0-based block indices, got {blocks}")
    if depth is not None and blocks and blocks[-1] >= depth:
        raise ValueError(f"{name} must index blocks below encoder.depth={depth}, got {blocks}")


@dataclass(frozen=True)
class ViTConfig:
    """The ViT encoder.

    Attributes:
        patch_size: patch edge (4, 8 or 16); the token grid is ``roi_size // patch_size``.
        embed_dim: token width ``C``.
        depth: Transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        drop_path_rate: stochastic depth of the last block (rises linearly from 0).
        use_cls_token: prepend a CLS token (never scored or pruned).
    """

    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    use_cls_token: bool = True

    def __post_init__(self) -> None:
        if self.patch_size not in PATCH_SIZES:
            raise ValueError(f"encoder.patch_size must be one of {PATCH_SIZES}, got "
                             f"{self.patch_size}")
        if min(self.embed_dim, self.depth, self.num_heads) < 1:
            raise ValueError(f"encoder.embed_dim, depth and num_heads must be >= 1, got "
                             f"{self.embed_dim}, {self.depth}, {self.num_heads}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"encoder.embed_dim ({self.embed_dim}) must be divisible by "
                             f"encoder.num_heads ({self.num_heads})")
        if self.mlp_ratio <= 0:
            raise ValueError(f"encoder.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"encoder.drop_path_rate must be in [0, 1), got "
                             f"{self.drop_path_rate}")


@dataclass(frozen=True)
class PruningConfig:
    """Soft-top-k token pruning (STP).

    Attributes:
        prune_after: 0-based encoder blocks after which tokens are pruned; ``()`` = no pruning.
            The paper's ``tp_loc = "2-5-8"`` (after blocks 3, 6, 9) is ``(2, 5, 8)``.
        keep_ratio: fraction of the alive patch tokens kept at each stage (it compounds). The
            paper's prune ratio ``ρ`` (``tp_ratio``) is ``1 - keep_ratio``; counts follow its rule
            ``floor(n · (1 − ρ))`` in float64 (:func:`medtoken.tokens.topk.keep_count`).
        method: how tokens are selected: ``"gumbel"`` (STP: Gumbel top-k in training, top-k at
            inference), ``"topk"`` (ablation: deterministic top-k in training too) or
            ``"random"`` (ablation: random tokens; the score networks are then unused). Was
            ``selection`` (still accepted, with a deprecation warning, in overrides and old
            checkpoints).
        temperature: ``τ`` of the straight-through softmax.
        seed: seed of the fixed eval-mode draw when ``method="random"``.
        score_norm_eps: LayerNorm epsilon of the score networks (the release: PyTorch's default
            1e-5; medtoken before 2026-12 used 1e-6).
    """

    prune_after: tuple[int, ...] = ()
    keep_ratio: float = 1.0
    method: str = "gumbel"
    temperature: float = 1.0
    seed: int = 0
    score_norm_eps: float = 1e-5
    RENAMED: ClassVar[dict[str, str]] = {"selection": "method"}  # old name -> new

    def __post_init__(self) -> None:
        _check_blocks("pruning.prune_after", self.prune_after)
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"pruning.keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if self.method not in SELECTIONS:
            raise ValueError(f"pruning.method must be one of {SELECTIONS}, got "
                             f"'{self.method}'")
        if self.temperature <= 0:
            raise ValueError(f"pruning.temperature must be > 0, got {self.temperature}")
        if self.score_norm_eps <= 0:
            raise ValueError(f"pruning.score_norm_eps must be > 0, got {self.score_norm_eps}")


@dataclass(frozen=True)
class CompletionConfig:
    """Token completion between the sparse encoder and the dense decoder.

    Attributes:
        mode: ``"mta"`` (multi-layer token assembly), ``"mask"`` (ablation: MIM-style mask-token
            completion from the final kept set only) or ``"none"`` (dense twin: no completion,
            decoder skips read from ``decoder.skip_blocks``; needs pruning off).
        embed_dim: completion width; divisible by ``num_heads`` and by ``2 * spatial_dims``.
        depth: completion Transformer blocks.
        num_heads: their attention heads.
    """

    mode: str = "mta"
    embed_dim: int = 768
    depth: int = 1
    num_heads: int = 12

    def __post_init__(self) -> None:
        if self.mode not in COMPLETION_MODES:
            raise ValueError(f"completion.mode must be one of {COMPLETION_MODES}, got "
                             f"'{self.mode}'")
        if min(self.embed_dim, self.depth, self.num_heads) < 1:
            raise ValueError(f"completion.embed_dim, depth and num_heads must be >= 1, got "
                             f"{self.embed_dim}, {self.depth}, {self.num_heads}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"completion.embed_dim ({self.embed_dim}) must be divisible by "
                             f"completion.num_heads ({self.num_heads})")


@dataclass(frozen=True)
class DecoderConfig:
    """UNETR-style CNN decoder (MONAI UNETR blocks).

    Attributes:
        feature_size: channels ``F`` at full resolution; level ``j`` has ``F · 2^j``.
        num_upsamples: x2 stages from the bottleneck (``roi / 2^num_upsamples``) to full
            resolution: ``log2(patch_size)`` (bottleneck = token grid; UNETR at patch 16, the
            upstream ``x8`` decoder at patch 8) or ``log2(patch_size) + 1`` (bottleneck =
            average-pooled grid; the upstream ``x8v2`` decoder at patch 8).
        skip_blocks: encoder blocks (0-based) feeding the ``num_upsamples - 1`` skips of the dense
            twin (``completion.mode="none"``); with a completion every skip gets the completed map.
    """

    feature_size: int = 16
    num_upsamples: int = 4
    skip_blocks: tuple[int, ...] = (3, 6, 9)

    def __post_init__(self) -> None:
        if self.feature_size < 1 or self.num_upsamples < 1:
            raise ValueError(f"decoder.feature_size and num_upsamples must be >= 1, got "
                             f"{self.feature_size}, {self.num_upsamples}")
        _check_blocks("decoder.skip_blocks", self.skip_blocks)


@dataclass(frozen=True)
class SCDConfig(ModelConfig):
    """SCD: ViT encoder with STP, token completion (MTA), UNETR decoder; or its dense twin."""

    family: ClassVar[str] = "scd"
    roi_size: tuple[int, ...] = (96, 96, 96)
    encoder: ViTConfig = field(default_factory=ViTConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    @property
    def grid_size(self) -> tuple[int, ...]:
        """Patch tokens per axis."""
        return tuple(s // self.encoder.patch_size for s in self.roi_size)

    def token_counts(self) -> tuple[int, ...]:
        """Alive patch tokens (CLS excluded): at the input, then after each pruning stage."""
        counts = [math.prod(self.grid_size)]
        for _ in self.pruning.prune_after:
            counts.append(keep_count(counts[-1], self.pruning.keep_ratio))
        return tuple(counts)

    def variant_notes(self) -> dict[str, Any]:
        """The token selection an export bakes in (nothing for the dense encoder)."""
        p = self.pruning
        if not p.prune_after:
            return {}
        random = p.method == "random"
        return {"token_selection": ("fixed-seed random draw" if random
                                    else "deterministic top-k of the score network (eval mode)"),
                "keep_ratio": p.keep_ratio, "prune_after": list(p.prune_after)}

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_sizes()
        self._check_stages()

    def _check_sizes(self) -> None:
        p, ups = self.encoder.patch_size, self.decoder.num_upsamples
        if any(s % p for s in self.roi_size):
            raise ValueError(f"roi_size {self.roi_size} must be divisible by encoder.patch_size "
                             f"({p})")
        log_p = int(math.log2(p))
        if ups not in (log_p, log_p + 1):
            raise ValueError(f"decoder.num_upsamples must be {log_p} or {log_p + 1} for patch "
                             f"size {p}, got {ups}")
        if any(s % 2**ups for s in self.roi_size):
            raise ValueError(f"roi_size {self.roi_size} must be divisible by 2^num_upsamples "
                             f"({2**ups})")
        c = self.completion
        if c.mode != "none" and c.embed_dim % (2 * self.spatial_dims):
            raise ValueError(f"completion.embed_dim ({c.embed_dim}) must be divisible by "
                             f"{2 * self.spatial_dims} (sin-cos embedding in {self.spatial_dims}D)")

    def _check_stages(self) -> None:
        depth = self.encoder.depth
        _check_blocks("pruning.prune_after", self.pruning.prune_after, depth)
        if self.pruning.prune_after and self.completion.mode == "none":
            raise ValueError("pruning.prune_after needs a completion (completion.mode 'mta' or "
                             "'mask'); completion.mode='none' is the dense twin")
        if self.pruning.prune_after and self.encoder.embed_dim % 4:
            raise ValueError(f"encoder.embed_dim must be divisible by 4 for the score networks, "
                             f"got {self.encoder.embed_dim}")
        if min(self.token_counts()) < 1:
            raise ValueError(f"pruning.keep_ratio={self.pruning.keep_ratio} leaves no token: "
                             f"counts {self.token_counts()}")
        if self.completion.mode == "none":
            _check_blocks("decoder.skip_blocks", self.decoder.skip_blocks, depth)
            if len(self.decoder.skip_blocks) != self.decoder.num_upsamples - 1:
                raise ValueError(f"decoder.skip_blocks needs num_upsamples - 1 = "
                                 f"{self.decoder.num_upsamples - 1} entries, got "
                                 f"{self.decoder.skip_blocks}")
