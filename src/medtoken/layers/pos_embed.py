"""Fixed sin-cos positional embeddings for 2D and 3D token grids (MAE-style, per axis).

The token order is row-major over the grid axes (``index = h * W + w`` in 2D,
``index = h * W * D + w * D + d`` in 3D), which is the order ``Conv(..).flatten(2)`` produces.
"""

from __future__ import annotations

import torch

__all__ = ["sincos_pos_embed", "sincos_pos_embed_1d"]

_BASE = 10000.0  # wavelength base of the frequencies, as in "Attention is all you need"


def sincos_pos_embed_1d(positions: torch.Tensor, dim: int,
                        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Sin-cos embedding of 1D positions.

    With ``f = dim // 2`` and ``ω_j = 10000^(-j / f)`` for ``j = 0..f-1`` the embedding of ``p`` is
    ``[sin(p ω_0..f-1), cos(p ω_0..f-1)]``.

    Args:
        positions: ``(N,)`` positions (any real values).
        dim: embedding width; must be even.
        dtype: the precision of the frequencies and angles (the STP+MTA release builds its table
            in float32; the result differs from float64's by float32 rounding of large angles).

    Returns:
        ``(N, dim)`` float32 embedding.
    """
    if dim % 2:
        raise ValueError(f"dim must be even for a sin-cos embedding, got {dim}")
    half = dim // 2
    omega = torch.arange(half, dtype=dtype, device=positions.device) / half
    omega = 1.0 / _BASE**omega  # (f,)
    angles = positions.to(dtype)[:, None] * omega[None, :]  # (N, f)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (N, dim)


def sincos_pos_embed(grid_size: tuple[int, ...], dim: int,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Fixed sin-cos embedding of a 2D or 3D grid, flattened row-major.

    Each axis gets ``dim / len(grid_size)`` channels (in axis order), each split into sin and cos
    halves: in 3D ``PE(h, w, d) = [sin(hω), cos(hω), sin(wω), cos(wω), sin(dω), cos(dω)]``.

    Args:
        grid_size: tokens per axis, ``(H, W)`` or ``(H, W, D)``.
        dim: embedding width; must be divisible by ``2 * len(grid_size)``.
        device: where to build the table.
        dtype: the precision it is computed in (see :func:`sincos_pos_embed_1d`); float32 out.

    Returns:
        ``(prod(grid_size), dim)``.
    """
    ndim = len(grid_size)
    if ndim not in (2, 3):
        raise ValueError(f"grid_size must have 2 or 3 entries, got {grid_size}")
    if dim % (2 * ndim):
        raise ValueError(f"dim must be divisible by {2 * ndim} for a {ndim}D sin-cos embedding, "
                         f"got {dim}")
    axes = [torch.arange(n, dtype=dtype, device=device) for n in grid_size]
    coords = torch.meshgrid(*axes, indexing="ij")  # ndim x (H, W[, D])
    per_axis = [sincos_pos_embed_1d(c.reshape(-1), dim // ndim, dtype)  # (N, dim/ndim)
                for c in coords]
    return torch.cat(per_axis, dim=1)  # (N, dim)
