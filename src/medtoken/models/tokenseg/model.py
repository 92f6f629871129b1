"""TokenSeg (Zeng et al., arXiv:2601.04519): hierarchical visual token compression.

Forward pass (spec §9), for ``x (B, in_channels, *S)``:

1. encoder pyramid ``F_1..F_L`` (strides ``2**l``);
2. cell pooling + projection → N candidate tokens ``t (B, N, C)`` with level / cell / box metadata;
3. VQ (straight-through) → ``t_q``; ``u = t_q + e_level + PE(cell centre)``;
4. importance ``s = w_b b + w_m m + w_d d`` (Sobel boundary strength, learned semantic score,
   codebook diversity) → top-K → ``z = s * u`` (the gate gives the scorer its gradient);
5. optional Transformer blocks over the K selected tokens;
6. reprojection onto the level grids (mask embedding + occupancy elsewhere) → decoder → logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medtoken.layers.factory import pool_fn
from medtoken.layers.transformer import TransformerBlock
from medtoken.models.base import SegmentationModel, SegOutput, TokenSelection
from medtoken.models.tokenseg.cells import (
    candidate_boxes,
    candidate_levels,
    cell_boxes,
    centre_embedding,
    mark_cells,
)
from medtoken.models.tokenseg.config import TokenSegConfig, input_multiple
from medtoken.models.tokenseg.decoder import SparseToDenseDecoder
from medtoken.models.tokenseg.encoder import CellTokenizer, HierarchicalEncoder
from medtoken.registry import register_family
from medtoken.tokens.indexing import gather_tokens
from medtoken.tokens.selection import (
    boundary_band,
    box_sums,
    codebook_diversity,
    importance_score,
    minmax_normalize,
    random_topk,
    reproject_tokens,
    select_topk,
    sobel_magnitude,
)
from medtoken.tokens.vq import VectorQuantizer

__all__ = ["TokenSeg"]


@register_family
class TokenSeg(SegmentationModel):
    """TokenSeg under the medtoken contract; see the module docstring for the forward pass."""

    config_class = TokenSegConfig
    config: TokenSegConfig
    activation_checkpoint_blocks = (TransformerBlock,)
    level_idx: torch.Tensor  # (N,) 0-based level of each candidate
    cell_idx: torch.Tensor  # (N,) cell index within its level
    pos_embed: torch.Tensor  # (N, C) fixed sin-cos embedding of the cell centres

    def __init__(self, config: TokenSegConfig) -> None:
        super().__init__(config)
        enc, sel, dim = config.encoder, config.selection, config.embed_dim
        levels = enc.num_levels
        self.encoder = HierarchicalEncoder(config.spatial_dims, config.in_channels,
                                           enc.channels[1:])
        self.tokenizer = CellTokenizer(enc.channels[1:], enc.cell_grids, dim, enc.pool)
        self.vq = (VectorQuantizer(config.vq.num_codes, dim, config.vq.beta,
                                   config.vq.dead_code_restart) if config.vq.enabled else None)
        self.level_embed = nn.Parameter(torch.zeros(levels, dim))
        nn.init.trunc_normal_(self.level_embed, std=0.02)
        level_idx, cell_idx = candidate_levels(enc.cell_grids)
        self.register_buffer("level_idx", level_idx, persistent=False)
        self.register_buffer("cell_idx", cell_idx, persistent=False)
        self.register_buffer("pos_embed", centre_embedding(enc.cell_grids, dim), persistent=False)
        uses_scorer = sel.semantic_weight > 0 or sel.boundary_loss_weight > 0
        self.scorer = (nn.Sequential(nn.Linear(dim, sel.scorer_hidden_dim), nn.GELU(),
                                     nn.Linear(sel.scorer_hidden_dim, 1)) if uses_scorer else None)
        self.token_blocks = nn.ModuleList(TransformerBlock(dim, config.num_heads)
                                          for _ in range(config.num_token_layers))
        compressed = sel.num_selected < enc.num_candidates
        self.mask_embed = nn.Parameter(torch.zeros(levels, dim)) if compressed else None
        if self.mask_embed is not None:
            nn.init.trunc_normal_(self.mask_embed, std=0.02)
        dec = config.decoder
        self.decoder = SparseToDenseDecoder(
            config.spatial_dims, config.in_channels, enc.channels, dim, config.num_classes,
            refine_grid=enc.cell_grids[0],
            refine_levels=dec.refine_levels if dec.mode == "sparse" else 0,
            refine_halo=dec.refine_halo, refine_chunk=dec.refine_chunk)

    # ---- contract ------------------------------------------------------------------------

    @property
    def input_multiple(self) -> tuple[int, ...]:
        return input_multiple(self.config)

    @property
    def needs_unused_parameter_search(self) -> bool:
        """The scorer only gets gradients through the gate or the boundary loss."""
        sel = self.config.selection
        gated = sel.gate and sel.semantic_weight > 0
        return self.scorer is not None and not gated and sel.boundary_loss_weight == 0

    def on_epoch_end(self) -> dict[str, float]:
        """Codebook utilisation and perplexity of the epoch; restarts dead codes next step."""
        return self.vq.epoch_stats() if self.vq is not None else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` → logits ``(B, num_classes, *S)``."""
        return self.forward_with_aux(x).logits

    def forward_with_aux(self, x: torch.Tensor, target: torch.Tensor | None = None) -> SegOutput:
        """Logits, weighted auxiliary losses (``vq``, ``boundary``) and token diagnostics.

        Args:
            x: ``(B, in_channels, *S)``.
            target: ``(B, 1, *S)`` integer labels; used by the boundary loss when its weight > 0.

        Returns:
            A :class:`SegOutput`; ``info`` holds, per sample, ``token_idx``, ``token_level``
            (1 = stride 2), ``token_cell``, ``token_box`` ``(B, K, 2 d)``, ``token_score``, and
            the pool's ``candidate_box`` ``(N, 2 d)`` / ``candidate_level`` ``(N,)``; with VQ
            also ``code_idx (B, N)``; in sparse mode ``refine_idx (B, R)``. ``tokens`` is the
            selection as a :class:`TokenSelection` (one stage; levels 1 = stride 2, ...).
        """
        self._check_size(x)
        features = self.encoder(x)  # [F_1 .. F_L]
        tokens, losses, code_idx = self._tokenize(features)  # (B, N, C)
        scores, semantic_logit = self._score(x, tokens, code_idx)  # (B, N)
        idx = self._select(scores)  # (B, K)
        selected = gather_tokens(tokens, idx, scores if self.config.selection.gate else None)
        for block in self.token_blocks:
            selected = block(selected)  # (B, K, C)
        boxes = candidate_boxes(x.shape[2:], self.config.encoder.cell_grids, x.device)  # (N, 2d)
        refine_idx = self._refine_cells(boxes[idx], scores.gather(1, idx), x.shape[2:])
        logits = self.decoder(x, features, self._reproject(selected, idx), refine_idx)
        if target is not None and self.config.selection.boundary_loss_weight > 0:
            losses["boundary"] = self._boundary_loss(semantic_logit, target, boxes)
        info = self._info(idx, scores, boxes, code_idx, refine_idx)
        return SegOutput(logits, losses, info, TokenSelection(boxes, (idx,), self.level_idx + 1))

    # ---- steps ---------------------------------------------------------------------------

    def _check_size(self, x: torch.Tensor) -> None:
        multiple = self.input_multiple
        if x.dim() != self.spatial_dims + 2 or any(
                s % m for s, m in zip(x.shape[2:], multiple, strict=True)):
            raise ValueError(f"TokenSeg needs (B, C, *S) input with S a multiple of {multiple} "
                             f"(the cell grids must tile every level), got {tuple(x.shape)}")

    def _tokenize(self, features: list[torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """Candidate tokens ``u (B, N, C)`` (quantised, with level and position embeddings)."""
        tokens = self.tokenizer(features)  # (B, N, C)
        losses: dict[str, torch.Tensor] = {}
        code_idx = None
        if self.vq is not None:
            out = self.vq(tokens)
            tokens, code_idx = out.quantized, out.indices
            losses["vq"] = self.config.vq.loss_weight * out.loss
        embed = self.level_embed[self.level_idx] + self.pos_embed  # (N, C), after VQ
        return tokens + embed.to(tokens.dtype), losses, code_idx

    def _score(self, x: torch.Tensor, tokens: torch.Tensor, code_idx: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Importance ``s (B, N)`` and the scorer's logits ``(B, N)`` (``None`` without scorer)."""
        boundary = minmax_normalize(self._boundary_strength(x))  # b
        logit = self.scorer(tokens).squeeze(-1) if self.scorer is not None else None
        semantic = torch.sigmoid(logit) if logit is not None else torch.zeros_like(boundary)  # m
        diversity = (codebook_diversity(code_idx) if code_idx is not None
                     else torch.ones_like(boundary))  # d
        terms = (boundary.to(semantic.dtype), semantic, diversity.to(semantic.dtype))
        return importance_score(terms, self.config.selection.weights), logit

    def _boundary_strength(self, x: torch.Tensor) -> torch.Tensor:
        """Mean Sobel magnitude of the image over each candidate's cell: ``(B, N)``."""
        magnitude = sobel_magnitude(x.float())  # (B, 1, *S)
        pool = pool_fn("avg", x.dim() - 2)
        means = []
        for grid in self.config.encoder.cell_grids:
            cell = [s // g for s, g in zip(x.shape[2:], grid, strict=True)]  # exact tiling
            means.append(pool(magnitude, cell).flatten(1))  # (B, n_l)
        return torch.cat(means, dim=1)

    def _select(self, scores: torch.Tensor) -> torch.Tensor:
        """Top-K candidate indices ``(B, K)`` (or the random control)."""
        sel = self.config.selection
        if sel.method == "score":
            return select_topk(scores, sel.num_selected)
        generator = None
        if not self.training:  # deterministic evaluation of the random control
            generator = torch.Generator(device=scores.device).manual_seed(sel.seed)
        return random_topk(scores.shape[0], scores.shape[1], sel.num_selected, scores.device,
                           generator)

    def _reproject(self, selected: torch.Tensor, idx: torch.Tensor) -> list[torch.Tensor]:
        """Per level, ``(B, C + 1, *grid_l)``: tokens or mask embedding, then occupancy."""
        n = self.config.encoder.num_candidates
        fill = (self.mask_embed[self.level_idx] if self.mask_embed is not None
                else selected.new_zeros(n, selected.shape[-1]))  # (N, C); K = N overwrites all
        tokens, occupancy = reproject_tokens(selected, idx, fill)  # (B, N, C), (B, N)
        stacked = torch.cat([tokens, occupancy[..., None]], dim=-1).transpose(1, 2)  # (B, C+1, N)
        grids = []
        for part, grid in zip(stacked.split(self.config.encoder.level_counts, dim=2),
                              self.config.encoder.cell_grids, strict=True):
            grids.append(part.reshape(*part.shape[:2], *grid))  # (B, C + 1, *grid_l)
        return grids

    def _refine_cells(self, token_box: torch.Tensor, token_score: torch.Tensor,
                      spatial: torch.Size) -> torch.Tensor | None:
        """Sparse mode: the level-1 cells met by selected tokens, best score first: ``(B, R)``."""
        if self.config.decoder.mode != "sparse":
            return None
        grid = self.config.encoder.cell_grids[0]
        priority = mark_cells(token_box, token_score, cell_boxes(spatial, grid, token_box.device))
        return select_topk(priority, self.config.num_refine_cells)

    def _boundary_loss(self, logit: torch.Tensor | None, target: torch.Tensor,
                       boxes: torch.Tensor) -> torch.Tensor:
        """Weighted BCE between the scorer and "the cell meets the label's boundary band"."""
        assert logit is not None  # a positive boundary_loss_weight creates the scorer
        sel = self.config.selection
        band = boundary_band(target[:, 0].long(), sel.boundary_radius)  # (B, *S)
        hits = (box_sums(band.float(), boxes) > 0).to(logit.dtype)  # (B, N)
        return sel.boundary_loss_weight * F.binary_cross_entropy_with_logits(logit, hits)

    def _info(self, idx: torch.Tensor, scores: torch.Tensor, boxes: torch.Tensor,
              code_idx: torch.Tensor | None, refine_idx: torch.Tensor | None) -> dict:
        """Detached diagnostics for logging and ``medtoken plot tokens``."""
        info = {
            "token_idx": idx,
            "token_level": self.level_idx[idx] + 1,
            "token_cell": self.cell_idx[idx],
            "token_box": boxes[idx],
            "token_score": scores.detach().gather(1, idx),
            "candidate_box": boxes,
            "candidate_level": self.level_idx + 1,
            "cell_grids": self.config.encoder.cell_grids,
        }
        if code_idx is not None:
            info["code_idx"] = code_idx
        if refine_idx is not None:
            info["refine_idx"] = refine_idx
        return info
