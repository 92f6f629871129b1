"""MSTM block: raster scan, multi-scale pooling semantics, parameter counts, initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medtoken.layers.mstm import (
    MSTMBlock,
    MSTMConfig,
    box_mean,
    multiscale_pool,
    raster_map,
    raster_tokens,
)


@pytest.mark.parametrize("spatial_shape", [(3, 5), (2, 3, 4)])
def test_raster_scan_order_and_round_trip(spatial_shape: tuple[int, ...]) -> None:
    x = torch.randn(2, 6, *spatial_shape)
    tokens, shape = raster_tokens(x)
    assert tokens.shape == (2, math.prod(spatial_shape), 6) and shape == spatial_shape
    for n in range(tokens.shape[1]):
        # token n is voxel (n // W, n % W) in 2D, (n // (H W), (n // W) % H, n % W) in 3D
        index = torch.unravel_index(torch.tensor(n), spatial_shape)
        torch.testing.assert_close(tokens[:, n], x[(slice(None), slice(None), *index)])
    assert torch.equal(raster_map(tokens, shape), x)


def _brute_box_mean(plane: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the clipped size x size box around each entry of a 2D tensor."""
    rows, cols = plane.shape
    r = size // 2
    out = torch.empty_like(plane)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = plane[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean()
    return out


def test_pooling_as_released_is_token_channel_plane_box_mean() -> None:
    tokens = torch.randn(2, 12, 10, dtype=torch.float64)  # (B, N, C) on a 3 x 4 grid
    expected = torch.stack([
        sum(_brute_box_mean(tokens[b], k) - tokens[b] for k in (5, 9, 13)) for b in range(2)
    ])
    got = multiscale_pool(tokens, (3, 4), (5, 9, 13), "as_released")
    torch.testing.assert_close(got, expected)
    # the release's own call: AvgPool2d on the (B, N, C) tensor, read as unbatched (C, H, W)
    released = sum(F.avg_pool2d(tokens, k, 1, k // 2, count_include_pad=False) - tokens
                   for k in (5, 9, 13))
    torch.testing.assert_close(got, released)


def test_pooling_spatial_is_per_channel_grid_box_mean() -> None:
    tokens = torch.randn(2, 12, 3, dtype=torch.float64)
    grid = raster_map(tokens, (3, 4))  # (B, C, 3, 4)
    expected = torch.stack([torch.stack([
        sum(_brute_box_mean(grid[b, c], k) - grid[b, c] for k in (5, 9, 13)) for c in range(3)
    ]) for b in range(2)])
    got = multiscale_pool(tokens, (3, 4), (5, 9, 13), "spatial")
    torch.testing.assert_close(raster_map(got, (3, 4)), expected)
    assert not torch.allclose(got, multiscale_pool(tokens, (3, 4), (5, 9, 13), "as_released"))


@pytest.mark.parametrize("size", [1, 5, 13])
def test_box_mean_3d_matches_clipped_box_mean(size: int) -> None:
    x = torch.randn(1, 2, 4, 7, 5, dtype=torch.float64)  # axes shorter than the box are fine
    r = size // 2
    expected = torch.empty_like(x)
    for d, h, w in torch.cartesian_prod(*(torch.arange(n) for n in x.shape[2:])).tolist():
        box = x[..., max(d - r, 0):d + r + 1, max(h - r, 0):h + r + 1, max(w - r, 0):w + r + 1]
        expected[..., d, h, w] = box.mean(dim=(-3, -2, -1))
    torch.testing.assert_close(box_mean(x, size), expected)
    big = torch.randn(1, 2, 13, 14, 15, dtype=torch.float64)
    torch.testing.assert_close(box_mean(big, size),
                               F.avg_pool3d(big, size, 1, r, count_include_pad=False))


@pytest.mark.parametrize("mode", ["as_released", "spatial"])
def test_pooling_is_independent_of_batch_composition(mode: str) -> None:
    tokens = torch.randn(3, 16, 8)
    together = multiscale_pool(tokens, (4, 4), (5, 9, 13), mode)
    alone = multiscale_pool(tokens[1:2], (4, 4), (5, 9, 13), mode)
    torch.testing.assert_close(together[1:2], alone)


@pytest.mark.parametrize("dim", [8, 32, 64])
@pytest.mark.parametrize("unused_dwconv", [True, False])
def test_block_parameter_count(dim: int, unused_dwconv: bool) -> None:
    block = MSTMBlock(dim, 2, MSTMConfig(unused_dwconv=unused_dwconv))
    linear_term = 128 if unused_dwconv else 116  # spec: 6D^2 + 128D + 16 (116 without)
    assert sum(p.numel() for p in block.parameters()) == 6 * dim**2 + linear_term * dim + 16
    block3d = MSTMBlock(dim, 3, MSTMConfig(unused_dwconv=False))  # 3^3 depthwise kernels
    assert sum(p.numel() for p in block3d.parameters()) == 6 * dim**2 + 152 * dim + 16


def test_as_released_initialisation() -> None:
    dim = 64
    block = MSTMBlock(dim, 2, MSTMConfig())
    for layer in (block.fwd, block.bwd):
        for gate in (layer.igate, layer.fgate):
            assert torch.equal(gate.bias, torch.zeros_like(gate.bias))
            assert abs(gate.weight.std().item() - 0.02) < 0.002
        for proj in (layer.proj_up, layer.proj_down):
            assert abs(proj.weight.std().item() - 0.02) < 0.002
        qkv = torch.cat([p.weight.flatten() for p in (layer.q_proj, layer.k_proj, layer.v_proj)])
        assert abs(qkv.std().item() - math.sqrt(2 / (5 * dim))) < 0.01
        assert torch.equal(1 + layer.outnorm_weight, torch.ones(dim))
        assert torch.equal(layer.outnorm_bias, torch.zeros(dim))
        assert torch.equal(layer.learnable_skip, torch.ones(dim))
    assert abs(block.dw_fwd.conv.weight.std().item() - math.sqrt(2 / 9)) < 0.05
    assert torch.equal(block.dw_fwd.conv.bias, torch.zeros(dim))


def test_vil_initialisation() -> None:
    block = MSTMBlock(32, 2, MSTMConfig(init="vil"))
    torch.testing.assert_close(block.fwd.fgate.bias, torch.linspace(3.0, 6.0, 4))
    assert torch.equal(block.fwd.igate.weight, torch.zeros_like(block.fwd.igate.weight))
    assert abs(block.fwd.proj_down.weight.std().item() - 2 / math.sqrt(32)) < 0.05


@pytest.mark.parametrize("spatial_shape", [(5, 6), (3, 4, 5)])
def test_block_modes_agree(spatial_shape: tuple[int, ...]) -> None:
    blocks = [MSTMBlock(16, len(spatial_shape), MSTMConfig(mlstm_mode=mode, chunk_size=8))
              for mode in ("parallel", "chunkwise", "recurrent")]
    for block in blocks[1:]:
        block.load_state_dict(blocks[0].state_dict())
    tokens = torch.randn(2, math.prod(spatial_shape), 16)
    outputs = [block.eval()(tokens, spatial_shape) for block in blocks]
    assert outputs[0].shape == tokens.shape
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("field", "value"), [
    ("mlstm_mode", "fast"), ("pool_mode", "channel"), ("init", "xavier"), ("chunk_size", 0),
    ("num_heads", 0), ("pool_sizes", (4,)), ("pool_sizes", ()), ("eps", -1.0),
])
def test_config_rejects_invalid_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MSTMConfig(**{field: value})  # type: ignore[arg-type]


def test_block_rejects_width_not_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        MSTMBlock(18, 2, MSTMConfig())
