"""Scattering token sets back to the grid and the MTA / mask-token completion module."""

from __future__ import annotations

import pytest
import torch

from medtoken.tokens.assembly import TokenAssembly
from medtoken.tokens.indexing import scatter_tokens


def _random_partition(b: int, num_positions: int, sizes: list[int]) -> list[torch.Tensor]:
    perm = torch.rand(b, num_positions).argsort(dim=1)  # (B, L)
    return [p.sort(dim=1).values for p in perm.split(sizes, dim=1)]


def test_scatter_puts_every_token_back_at_its_index() -> None:
    positions = _random_partition(3, 24, [15, 6, 3])
    sets = [p.float().unsqueeze(-1).expand(-1, -1, 4) for p in positions]  # token value = index
    out = scatter_tokens(torch.zeros(3, 24, 4), sets, positions)
    torch.testing.assert_close(out, torch.arange(24.0)[None, :, None].expand(3, 24, 4))


def test_scatter_keeps_base_elsewhere_and_is_differentiable() -> None:
    pos = _random_partition(2, 10, [4, 6])[0]
    tokens = torch.randn(2, 4, 3, requires_grad=True)
    base = torch.full((2, 10, 3), -7.0)
    out = scatter_tokens(base, [tokens], [pos])
    written = torch.zeros(2, 10, dtype=torch.bool).scatter(1, pos, True)
    assert torch.all(out[~written] == -7.0)
    torch.testing.assert_close(out.gather(1, pos[..., None].expand(-1, -1, 3)), tokens)
    out.sum().backward()
    assert tokens.grad is not None and torch.all(tokens.grad == 1.0)


@pytest.mark.parametrize("grid", [(4, 6), (2, 3, 4)])
@pytest.mark.parametrize("mode", ["mta", "mask"])
def test_assembly_output_shape_and_source_use(grid: tuple[int, ...], mode: str) -> None:
    num_positions = 24
    module = TokenAssembly(in_dim=16, embed_dim=12, depth=1, num_heads=2, grid_size=grid,
                           num_sources=3, num_prefix_tokens=1, mode=mode)
    positions = _random_partition(2, num_positions, [14, 7, 3])
    sets = [torch.randn(2, 14, 16), torch.randn(2, 7, 16), torch.randn(2, 1 + 3, 16)]
    out = module(sets, positions)
    assert out.shape == (2, num_positions, 16)
    changed = [s.clone() for s in sets]
    changed[0] += 1.0  # a pruned set: used by MTA, ignored by mask-token completion
    assert torch.allclose(module(changed, positions), out) == (mode == "mask")


def test_mta_parameter_layout() -> None:
    module = TokenAssembly(in_dim=768, embed_dim=768, depth=1, num_heads=12,
                           grid_size=(12, 12, 12), num_sources=4)
    # the upstream FusionNet 768/1/12 has 10.045 M parameters (the 3 mid-LNs live in the encoder
    # upstream and here: 3 x 1536 = 4608 more)
    n = sum(p.numel() for p in module.parameters())
    assert n == 10_045_440 + 3 * 1536
    assert not any(name == "pos_embed" for name, _ in module.named_parameters())
    assert "pos_embed" not in module.state_dict()  # fixed, rebuilt at construction


def test_mta_sincos_table_is_built_in_float32_as_released() -> None:
    """The release builds the table in float32: omega and the angles in float32, then sin/cos."""
    grid, dim = (6, 7, 5), 48
    module = TokenAssembly(in_dim=16, embed_dim=dim, depth=1, num_heads=2, grid_size=grid,
                           num_sources=2)
    f = dim // 6
    omega = 1.0 / 10000.0 ** (torch.arange(f, dtype=torch.float32) / f)
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in grid], indexing="ij")
    parts = []
    for c in coords:
        angles = c.reshape(-1)[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    table = torch.cat(parts, dim=1)  # (L, dim)
    patch_rows = module.pos_embed.reshape(-1, dim)[-table.shape[0]:]
    assert torch.equal(patch_rows, table)  # bit for bit, not only close
