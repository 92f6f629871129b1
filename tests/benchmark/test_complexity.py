"""FLOP counting against analytic counts, parameter counts and token info extraction."""

from __future__ import annotations

import pytest
import torch

from medtoken.benchmark.complexity import count_flops, count_parameters, token_info


@pytest.mark.parametrize(("c_in", "c_out", "k", "size"), [(1, 4, 3, (8, 8, 8)),
                                                          (3, 2, 1, (4, 6, 5))])
def test_conv3d_flops_match_the_analytic_count(c_in: int, c_out: int, k: int,
                                               size: tuple[int, int, int]) -> None:
    conv = torch.nn.Conv3d(c_in, c_out, k, padding=k // 2)
    x = torch.randn(2, c_in, *size)
    voxels = size[0] * size[1] * size[2]
    # 2 FLOPs per multiply-add: per output voxel and channel, c_in * k^3 multiply-adds
    expected = 2 * 2 * c_out * voxels * c_in * k**3
    assert count_flops(lambda: conv(x)) == expected


def test_linear_flops_match_the_analytic_count() -> None:
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16)
    assert count_flops(lambda: linear(x)) == 2 * 5 * 16 * 8


def test_backward_is_counted_when_the_function_calls_it() -> None:
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    forward = count_flops(lambda: linear(x))
    both = count_flops(lambda: linear(x).sum().backward())
    assert both == 3 * forward  # grad w.r.t. input and weight: one matmul each


def test_count_parameters() -> None:
    assert count_parameters(torch.nn.Linear(16, 8)) == 16 * 8 + 8


def test_token_info_keeps_token_entries_json_ready() -> None:
    info = {"tokens_per_stage": [216, 108], "kept_token_idx": torch.zeros(2, 100, dtype=torch.long),
            "num_tokens": torch.tensor(54), "codebook_usage": 0.5}
    tokens = token_info(info)
    assert tokens == {"tokens_per_stage": [216, 108], "kept_token_idx": {"shape": [2, 100]},
                      "num_tokens": 54}


def test_cpu_attention_is_counted() -> None:
    # (B, heads, N, d) = (1, 2, 64, 16): QK^T and AV are 2 * (B*h*N*N*d) MACs = 4 * B*h*N*N*d FLOPs
    q = torch.randn(1, 2, 64, 16)
    flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 4 * 1 * 2 * 64 * 64 * 16
