"""Transformer layers: SDPA attention vs the explicit formula, stochastic depth, block shapes."""

from __future__ import annotations

import pytest
import torch

from medtoken.layers.transformer import Attention, DropPath, TransformerBlock, drop_path


@pytest.mark.parametrize("num_heads", [1, 4])
def test_attention_sdpa_equals_explicit_softmax(num_heads: int) -> None:
    attn = Attention(32, num_heads)
    x = torch.randn(2, 7, 32)
    b, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) * (c // num_heads) ** -0.5, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_rejects_indivisible_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Attention(30, 4)


@pytest.mark.parametrize("n", [1, 5, 64])
def test_block_keeps_shape_for_any_token_count(n: int) -> None:
    block = TransformerBlock(dim=16, num_heads=2, mlp_ratio=2.0, qkv_bias=False, drop_path=0.1)
    assert block(torch.randn(3, n, 16)).shape == (3, n, 16)
    assert block.mlp.fc1.out_features == 32
    assert block.attn.qkv.bias is None


def test_block_is_permutation_equivariant() -> None:
    """No positional information inside a block: permuting tokens permutes the output."""
    block = TransformerBlock(dim=16, num_heads=2).eval()
    x = torch.randn(2, 9, 16)
    perm = torch.randperm(9)
    torch.testing.assert_close(block(x)[:, perm], block(x[:, perm]), rtol=1e-5, atol=1e-5)


def test_drop_path_identity_in_eval_and_at_zero() -> None:
    x = torch.randn(4, 3, 5)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    assert torch.equal(drop_path(x, 0.0, training=True), x)


def test_drop_path_drops_whole_samples_and_rescales() -> None:
    x = torch.ones(2000, 3, 4)
    out = DropPath(0.25).train()(x)
    per_sample = out.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])  # one draw per sample
    values = per_sample[:, 0]
    assert torch.all((values == 0) | torch.isclose(values, torch.tensor(1.0 / 0.75)))
    assert abs(values.mean().item() - 1.0) < 0.08  # unbiased in expectation


def test_drop_path_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)
