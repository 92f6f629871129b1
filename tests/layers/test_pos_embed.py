"""Fixed sin-cos positional embeddings: layout, values, validation."""

from __future__ import annotations

import math

import pytest
import torch

from medtoken.layers.pos_embed import sincos_pos_embed, sincos_pos_embed_1d


def test_1d_values_by_hand() -> None:
    # dim 4 -> f = 2 frequencies: w_0 = 1, w_1 = 10000^(-1/2) = 0.01
    pe = sincos_pos_embed_1d(torch.tensor([0.0, 2.0]), 4)
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0],
                             [math.sin(2.0), math.sin(0.02), math.cos(2.0), math.cos(0.02)]])
    torch.testing.assert_close(pe, expected)


@pytest.mark.parametrize("grid", [(3, 4), (2, 3, 4)])
def test_grid_layout_is_row_major_per_axis(grid: tuple[int, ...]) -> None:
    dim = 12 * len(grid)
    pe = sincos_pos_embed(grid, dim)
    assert pe.shape == (math.prod(grid), dim)
    per_axis = dim // len(grid)
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij"),
                         dim=-1).reshape(-1, len(grid))  # (N, ndim) raster order
    for axis in range(len(grid)):
        expected = sincos_pos_embed_1d(coords[:, axis].float(), per_axis)
        torch.testing.assert_close(pe[:, axis * per_axis:(axis + 1) * per_axis], expected)


def test_positions_are_distinct() -> None:
    pe = sincos_pos_embed((4, 5, 6), 48)
    dist = torch.cdist(pe, pe) + torch.eye(len(pe)) * 1e3
    assert dist.min() > 1e-3


@pytest.mark.parametrize(("grid", "dim"), [((4, 4, 4), 32), ((4, 4), 6), ((4,), 8)])
def test_rejects_bad_sizes(grid: tuple[int, ...], dim: int) -> None:
    with pytest.raises(ValueError):
        sincos_pos_embed(grid, dim)
