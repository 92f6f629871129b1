"""Top-k selection: the paper's keep counts, sorted splits, straight-through masks, sampling law."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from medtoken.tokens.indexing import split_topk
from medtoken.tokens.topk import (
    gumbel_noise_like,
    keep_count,
    straight_through_mask,
    straight_through_topk,
)


def _stage_counts(num_tokens: int, keep_ratio: float, stages: int) -> list[int]:
    counts = [num_tokens]
    for _ in range(stages):
        counts.append(keep_count(counts[-1], keep_ratio))
    return counts


@pytest.mark.parametrize(("num_tokens", "keep_ratio", "kept", "pruned"), [
    (12**3, 0.1, [172, 17, 1], [1556, 155, 16]),  # BTCV 96³, p=8, ρ=0.9
    (16**3, 0.25, [1024, 256, 64], [3072, 768, 192]),  # BraTS 128³, p=8, ρ=0.75
    (6**3, 0.25, [54, 13, 3], [162, 41, 10]),  # BTCV 96³, p=16, ρ=0.75
    (8**3, 0.25, [128, 32, 8], [384, 96, 24]),  # BraTS 128³, p=16, ρ=0.75
])
def test_keep_counts_match_the_paper(num_tokens: int, keep_ratio: float, kept: list[int],
                                     pruned: list[int]) -> None:
    counts = _stage_counts(num_tokens, keep_ratio, 3)
    assert counts[1:] == kept
    assert [a - b for a, b in itertools.pairwise(counts)] == pruned


def test_keep_count_uses_the_float64_complement_of_the_prune_ratio() -> None:
    # 1 - 0.9 = 0.09999999999999998, so 1728 -> 172 (not a rounding to 173) and 10 -> 0, not 1
    assert keep_count(1728, 0.1) == 172
    assert keep_count(10, 0.1) == 0
    assert keep_count(10, 1.0) == 10
    assert keep_count(13, 0.25) == 3


def test_split_topk_partitions_sorted_and_keeps_the_best() -> None:
    scores = torch.randn(4, 30)
    keep, prune = split_topk(scores, 7)
    assert keep.shape == (4, 7) and prune.shape == (4, 23)
    assert torch.all(keep.diff(dim=1) > 0) and torch.all(prune.diff(dim=1) > 0)
    everything = torch.cat([keep, prune], dim=1).sort(dim=1).values
    assert torch.equal(everything, torch.arange(30).expand(4, 30))
    assert torch.all(scores.gather(1, keep).min(1).values >= scores.gather(1, prune).max(1).values)


@pytest.mark.parametrize("k", [0, 30])
def test_split_topk_extremes(k: int) -> None:
    keep, prune = split_topk(torch.randn(2, 30), k)
    assert keep.shape == (2, k) and prune.shape == (2, 30 - k)


def test_straight_through_mask_forward_is_exactly_hard() -> None:
    soft = torch.softmax(torch.randn(3, 10) * 5, dim=1).requires_grad_()
    keep, _ = split_topk(torch.randn(3, 10), 4)
    mask = straight_through_mask(soft, keep)
    hard = torch.zeros(3, 10).scatter(1, keep, 1.0)
    assert torch.equal(mask, hard)  # bit-exact 0/1, no rounding from (1 - y + y)
    assert torch.equal(1.0 - mask, 1.0 - hard)
    (mask * torch.arange(10.0)).sum().backward()
    assert soft.grad is not None
    torch.testing.assert_close(soft.grad, torch.arange(10.0).expand(3, 10))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_straight_through_gradient_is_the_tempered_softmax_jacobian(temperature: float) -> None:
    """With the noise frozen: dL/dl = (1/τ)(diag(y) − y yᵀ) dL/dm, also by finite differences."""
    log_scores = F.logsigmoid(torch.randn(2, 6, dtype=torch.float64)).requires_grad_()
    noise = gumbel_noise_like(log_scores.detach())
    upstream = torch.randn(2, 6, dtype=torch.float64)  # dL/dm
    sel = straight_through_topk(log_scores, 3, temperature, noise)
    assert sel.mask is not None
    (sel.mask * upstream).sum().backward()
    y = torch.softmax((log_scores.detach() + noise) / temperature, dim=1)
    jac = (torch.diag_embed(y) - y[:, :, None] * y[:, None, :]) / temperature  # (B, n, n)
    expected = (jac @ upstream[:, :, None]).squeeze(-1)
    torch.testing.assert_close(log_scores.grad, expected)

    def soft_loss(ls: torch.Tensor) -> torch.Tensor:
        return (torch.softmax((ls + noise) / temperature, dim=1) * upstream).sum()

    eps, base = 1e-6, log_scores.detach()
    numeric = torch.zeros_like(base)
    for idx in itertools.product(range(2), range(6)):
        step = torch.zeros_like(base)
        step[idx] = eps
        numeric[idx] = (soft_loss(base + step) - soft_loss(base - step)) / (2 * eps)
    torch.testing.assert_close(log_scores.grad, numeric, rtol=1e-6, atol=1e-8)


def test_gumbel_noise_is_finite_and_standard() -> None:
    g = gumbel_noise_like(torch.zeros(200_000))
    assert torch.isfinite(g).all()
    assert abs(g.mean().item() - 0.5772) < 0.02  # Euler–Mascheroni constant
    assert abs(g.var().item() - math.pi**2 / 6) < 0.05


def test_sampling_law_k1_is_proportional_to_sigmoid() -> None:
    """Top-1 of log σ(s) + Gumbel picks token i with probability σ(s_i) / Σ_j σ(s_j)."""
    gen = torch.Generator().manual_seed(1)
    s = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    draws = 40_000
    log_scores = F.logsigmoid(s).expand(draws, -1)
    keep, _ = split_topk(log_scores + gumbel_noise_like(log_scores, generator=gen), 1)
    freq = torch.bincount(keep[:, 0], minlength=5).double() / draws
    p = torch.sigmoid(s).double() / torch.sigmoid(s).sum()
    stderr = (p * (1 - p) / draws).sqrt()
    assert torch.all((freq - p).abs() < 4.5 * stderr), (freq, p)


def test_sampling_law_k2_is_plackett_luce() -> None:
    """Top-2 of the perturbed scores = two draws without replacement from softmax(l)."""
    gen = torch.Generator().manual_seed(2)
    log_scores = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    p = log_scores.exp().double()
    draws = 40_000
    ls = log_scores.expand(draws, -1)
    keep, _ = split_topk(ls + gumbel_noise_like(ls, generator=gen), 2)
    for i, j in itertools.combinations(range(4), 2):
        expected = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
        freq = ((keep[:, 0] == i) & (keep[:, 1] == j)).double().mean()
        stderr = math.sqrt(expected * (1 - expected) / draws)
        assert abs(freq - expected) < 4.5 * stderr, (i, j, freq, expected)
