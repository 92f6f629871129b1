"""Pre-norm Transformer blocks over token sequences ``(B, N, C)``.

One attention implementation for every model (dense and pruned paths alike):
``torch.nn.functional.scaled_dot_product_attention``, which picks the fastest kernel available on
the device (flash / memory-efficient on GPU, the fused CPU kernel otherwise). Blocks take plain
keyword arguments so that any family can reuse them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "DropPath", "Mlp", "TransformerBlock", "drop_path"]


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch, rescale the others.

    Args:
        x: the residual branch output ``(B, ...)``.
        drop_prob: probability of dropping a sample's branch.
        training: no-op when False.

    Returns:
        ``(B, ...)``, equal to ``x`` in eval mode or when ``drop_prob == 0``.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, ..., 1): one draw per sample
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Module wrapper of :func:`drop_path`."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and SDPA.

    Args:
        dim: token width ``C``; must be divisible by ``num_heads``.
        num_heads: attention heads; head width ``C // num_heads``, scale ``head_dim ** -0.5``.
        qkv_bias: bias in the qkv projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` → ``(B, N, C)``."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, d)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        x = x.transpose(1, 2).reshape(b, n, c)  # (B, N, C)
        return self.proj(x)  # type: ignore[no-any-return]


class Mlp(nn.Module):
    """Two linear layers with GELU in between: ``dim → hidden_dim → dim``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` → ``(B, N, C)``."""
        return self.fc2(self.act(self.fc1(x)))  # type: ignore[no-any-return]


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + DP(MHSA(LN(x)))`` then ``x + DP(MLP(LN(x)))``.

    Args:
        dim: token width ``C``.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: bias in the qkv projection.
        drop_path: stochastic-depth probability of both residual branches.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` → ``(B, N, C)``; any ``N`` (pruned sequences included)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))  # type: ignore[no-any-return]
