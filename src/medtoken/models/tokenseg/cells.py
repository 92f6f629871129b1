"""Cell geometry of TokenSeg: candidate metadata, cell boxes, cell crops and pastes.

A level-``l`` feature map (stride ``2**l``) is cut into a ``grid`` of equal, non-overlapping
cells; cells are numbered row-major, the order of ``pool(x, grid).flatten(2)``. A box is
``(start_0, .., start_{d-1}, stop_0, .., stop_{d-1})`` in input voxels, half-open.
Pure functions, 2D and 3D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medtoken.layers.pos_embed import sincos_pos_embed_1d
from medtoken.tokens.selection import cell_boxes

__all__ = [
    "candidate_boxes",
    "candidate_levels",
    "cell_boxes",
    "centre_embedding",
    "crop_cells",
    "mark_cells",
    "paste_cells",
    "trim",
]


def _unravel(cell_idx: torch.Tensor, grid: Sequence[int]) -> list[torch.Tensor]:
    """Row-major flat cell indices ``(...)`` → one coordinate tensor ``(...)`` per axis."""
    coords = []
    rest = cell_idx
    for size in reversed(grid):
        coords.append(rest % size)
        rest = rest // size
    return coords[::-1]


def candidate_boxes(roi_size: Sequence[int], grids: Sequence[Sequence[int]],
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Boxes of all candidates, level by level: ``(N, 2 * d)``."""
    return torch.cat([cell_boxes(roi_size, g, device) for g in grids])


def candidate_levels(grids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Level index (0-based: index ``l`` has stride ``2**(l + 1)``) and cell index per candidate.

    Returns:
        ``(levels (N,), cells (N,))`` int64.
    """
    counts = [math.prod(g) for g in grids]
    levels = torch.cat([torch.full((n,), i) for i, n in enumerate(counts)])
    cells = torch.cat([torch.arange(n) for n in counts])
    return levels, cells


def centre_embedding(grids: Sequence[Sequence[int]], dim: int) -> torch.Tensor:
    """Fixed sin-cos embedding of every candidate's cell centre.

    Centres are measured in units of the finest cell along each axis over all levels (MAE-style
    grid positions, offset by half a cell), so levels with equal footprints share positions.
    Each axis gets ``dim // (2 d)`` frequencies of (sin, cos); the rest is zero-padded.

    Returns:
        ``(N, dim)`` float32.
    """
    d = len(grids[0])
    finest = [max(g[a] for g in grids) for a in range(d)]
    per_axis = 2 * (dim // (2 * d))
    parts = []
    for grid in grids:
        axes = [(torch.arange(g, dtype=torch.float64) + 0.5) * f / g
                for g, f in zip(grid, finest, strict=True)]
        coords = torch.meshgrid(*axes, indexing="ij")  # d x grid
        parts.append(torch.cat([sincos_pos_embed_1d(c.reshape(-1), per_axis) for c in coords], 1))
    table = torch.cat(parts)  # (N, d * per_axis)
    return F.pad(table, (0, dim - table.shape[1]))  # (N, dim)


def mark_cells(token_boxes: torch.Tensor, token_scores: torch.Tensor,
               boxes: torch.Tensor) -> torch.Tensor:
    """Priority of each cell: ``1 + max score`` of the tokens whose box meets it, else 0.

    Args:
        token_boxes: ``(B, K, 2 d)`` boxes of the selected tokens.
        token_scores: ``(B, K)`` their scores.
        boxes: ``(G, 2 d)`` the cells to rank.

    Returns:
        ``(B, G)``.
    """
    d = boxes.shape[-1] // 2
    t = token_boxes[:, :, None, :]  # (B, K, 1, 2d)
    c = boxes[None, None]  # (1, 1, G, 2d)
    meets = ((t[..., :d] < c[..., d:]) & (c[..., :d] < t[..., d:])).all(-1)  # (B, K, G)
    weight = (1.0 + token_scores.detach())[:, :, None]  # (B, K, 1)
    return torch.where(meets, weight, torch.zeros_like(weight)).amax(1)  # (B, G)


def crop_cells(x: torch.Tensor, grid: Sequence[int], cell_idx: torch.Tensor,
               halo: int) -> torch.Tensor:
    """Crops of the chosen cells of ``grid`` with ``halo`` voxels of context (zeros outside).

    Args:
        x: ``(B, C, *S)``; ``S`` divisible by ``grid``.
        grid: the cell grid.
        cell_idx: ``(B, R)`` flat cell indices.
        halo: context voxels on every side.

    Returns:
        ``(B * R, C, *(S / grid + 2 halo))``, sample-major.
    """
    b, c = x.shape[:2]
    d = len(grid)
    cell = [s // g for s, g in zip(x.shape[2:], grid, strict=True)]
    windows = F.pad(x, (halo, halo) * d) if halo else x
    for axis in range(d):  # overlapping windows, no copy: (B, C, *grid, *(cell + 2 halo))
        windows = windows.unfold(2 + axis, cell[axis] + 2 * halo, cell[axis])
    coords = _unravel(cell_idx, grid)  # d x (B, R)
    batch = torch.arange(b, device=x.device)[:, None].expand_as(cell_idx)  # (B, R)
    index: list[slice | torch.Tensor] = [batch, slice(None), *coords]
    crops = windows[tuple(index)]  # (B, R, C, *crop)
    return crops.reshape(-1, c, *crops.shape[3:])  # (B * R, C, *crop)


def paste_cells(out: torch.Tensor, crops: torch.Tensor, grid: Sequence[int],
                cell_idx: torch.Tensor) -> torch.Tensor:
    """Write ``crops`` into the chosen cells of ``out`` (in place; returns ``out``).

    Args:
        out: ``(B, C, *S)`` contiguous.
        crops: ``(B * R, C, *(S / grid))``.
        grid: the cell grid.
        cell_idx: ``(B, R)`` distinct flat cell indices per sample.
    """
    b, c = out.shape[:2]
    cell = [s // g for s, g in zip(out.shape[2:], grid, strict=True)]
    split = [n for pair in zip(grid, cell, strict=True) for n in pair]
    cells = out.view(b, c, *split)  # (B, C, g_0, c_0, g_1, c_1, ..)
    coords = _unravel(cell_idx, grid)  # d x (B, R)
    batch = torch.arange(b, device=out.device)[:, None].expand_as(cell_idx)  # (B, R)
    index: list[slice | torch.Tensor] = [batch, slice(None)]
    for coord in coords:
        index += [coord, slice(None)]
    cells[tuple(index)] = crops.reshape(*cell_idx.shape, c, *cell).to(out.dtype)
    return out


def trim(x: torch.Tensor, margin: int) -> torch.Tensor:
    """Drop ``margin`` voxels on every side of every spatial axis of ``x (B, C, *S)``."""
    if margin == 0:
        return x
    return x[(slice(None), slice(None)) + (slice(margin, -margin),) * (x.dim() - 2)]
