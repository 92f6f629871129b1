"""Vector quantisation: nearest code, straight-through gradient, loss, usage statistics."""

from __future__ import annotations

import math

import pytest
import torch

from medtoken.tokens.vq import VectorQuantizer, code_perplexity, nearest_code, quantize


@pytest.mark.parametrize("shape", [(5, 8), (2, 7, 8), (1, 3, 4, 8)])
def test_nearest_code_matches_brute_force(shape: tuple[int, ...]) -> None:
    tokens = torch.randn(shape)
    codebook = torch.randn(16, 8)
    idx = nearest_code(tokens, codebook)
    dist = torch.cdist(tokens.reshape(-1, 8), codebook)  # (T, M)
    assert idx.shape == shape[:-1]
    assert torch.equal(idx.reshape(-1), dist.argmin(-1))


def test_nearest_code_under_autocast_uses_float32() -> None:
    tokens, codebook = torch.randn(64, 16), torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        idx = nearest_code(tokens, codebook)
    assert torch.equal(idx, nearest_code(tokens, codebook))


def test_quantize_returns_codebook_rows_and_indices_in_range() -> None:
    tokens, codebook = torch.randn(2, 10, 8), torch.randn(12, 8)
    quantized, idx, loss = quantize(tokens, codebook, beta=0.25)
    assert idx.min() >= 0 and idx.max() < 12
    torch.testing.assert_close(quantized, codebook[idx])
    assert loss.item() > 0


def test_straight_through_gradient_is_identity() -> None:
    """Spec §8.1 test 5: d f(t_q) / d t equals d f / d t_q."""
    tokens = torch.randn(3, 6, 8, requires_grad=True)
    quantized, _, _ = quantize(tokens, torch.randn(10, 8), beta=0.25)
    quantized.retain_grad()
    weights = torch.randn(3, 6, 8)
    (quantized * weights).pow(2).sum().backward()
    assert tokens.grad is not None and quantized.grad is not None
    torch.testing.assert_close(tokens.grad, quantized.grad)


def test_vq_loss_is_zero_for_codebook_inputs() -> None:
    codebook = torch.randn(10, 8)
    tokens = codebook[torch.tensor([[0, 3, 3, 9]])]  # (1, 4, 8)
    quantized, idx, loss = quantize(tokens, codebook, beta=0.25)
    assert torch.equal(idx, torch.tensor([[0, 3, 3, 9]]))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(quantized, tokens)


def test_vq_loss_decreases_on_fixed_batch() -> None:
    """Spec §8.1 test 6: L_VQ >= 0 and falls over 200 steps on a fixed batch."""
    vq = VectorQuantizer(num_codes=32, dim=8, dead_code_restart=False)
    tokens = torch.nn.Parameter(torch.randn(2, 50, 8))  # stands in for the encoder output
    optimizer = torch.optim.Adam([*vq.parameters(), tokens], lr=1e-2)
    losses = []
    for _ in range(200):
        loss = vq(tokens).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses) >= 0
    assert losses[-1] < 0.2 * losses[0]


def test_code_perplexity_extremes() -> None:
    assert code_perplexity(torch.ones(8)).item() == pytest.approx(8.0)
    assert code_perplexity(torch.tensor([0.0, 5.0, 0.0])).item() == pytest.approx(1.0)
    assert code_perplexity(torch.zeros(4)).item() == 0.0


def test_epoch_stats_counts_training_usage_and_resets() -> None:
    vq = VectorQuantizer(num_codes=8, dim=4)
    tokens = vq.codebook.detach()[torch.tensor([[0, 0, 1, 2]])].clone()  # uses codes 0, 1, 2
    vq.eval()
    vq(tokens)
    assert vq.epoch_stats() == {}  # eval passes are not counted
    vq.train()
    vq(tokens)
    stats = vq.epoch_stats()
    assert stats["vq_utilisation"] == pytest.approx(3 / 8)
    probs = torch.tensor([0.5, 0.25, 0.25])
    assert stats["vq_perplexity"] == pytest.approx(math.exp(-(probs * probs.log()).sum().item()))
    assert vq.epoch_stats() == {}  # counters were reset


def test_dead_codes_restart_from_batch_tokens() -> None:
    vq = VectorQuantizer(num_codes=8, dim=4)
    vq.train()
    vq(vq.codebook.detach()[torch.tensor([[0, 1]])].clone())
    vq.epoch_stats()
    assert vq.dead.sum().item() == 6
    batch = torch.randn(1, 5, 4)
    vq(batch)
    assert not vq.dead.any()
    rows = vq.codebook.detach()[2:]  # the restarted codes
    matches = (rows[:, None, :] == batch[0][None]).all(-1).any(-1)  # (6,)
    assert matches.all()
