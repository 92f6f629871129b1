"""One STP stage: partition bookkeeping, CLS pass-through, multipliers, modes of selection."""

from __future__ import annotations

import pytest
import torch

from medtoken.tokens.indexing import gather_tokens
from medtoken.tokens.pruning import ScoreNet, TokenPruner

DIM = 16


def _inputs(b: int = 2, n: int = 20, prefix: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randn(b, prefix + n, DIM)
    # alive positions: a sorted random subset of a 40-token grid, as after an earlier stage
    pos = torch.rand(b, 40).argsort(dim=1)[:, :n].sort(dim=1).values
    return tokens, pos


def test_score_net_outputs_log_sigmoid_scores_and_mixes_global_mean() -> None:
    net = ScoreNet(DIM)
    x = torch.randn(2, 9, DIM)
    scores = net(x)
    assert scores.shape == (2, 9) and torch.all(scores <= 0)
    x2 = x.clone()
    x2[:, 0] = 3.0 * torch.randn(2, DIM)  # changing one token changes the others' scores
    # (through the global mean)
    assert not torch.allclose(net(x2)[:, 1:], scores[:, 1:])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("prefix", [0, 1])
def test_stage_partitions_alive_positions_and_passes_prefix(training: bool, prefix: int) -> None:
    pruner = TokenPruner(DIM, keep_ratio=0.3, num_prefix_tokens=prefix).train(training)
    tokens, pos = _inputs(prefix=prefix)
    step = pruner(tokens, pos)
    assert step.tokens.shape == (2, prefix + 6, DIM) and step.pruned.shape == (2, 14, DIM)
    torch.testing.assert_close(step.tokens[:, :prefix], tokens[:, :prefix])
    both = torch.cat([step.pos_idx, step.pruned_pos_idx], dim=1).sort(dim=1).values
    assert torch.equal(both, pos)
    assert torch.all(step.pos_idx.diff(dim=1) > 0) and torch.all(step.pruned_pos_idx.diff(1) > 0)
    # every token travels with its own position
    where = (pos[:, None, :] == step.pos_idx[:, :, None]).long().argmax(-1)  # (B, k) -> alive idx
    torch.testing.assert_close(step.tokens[:, prefix:], gather_tokens(tokens[:, prefix:], where))
    assert (step.weights is not None) == training


def test_multipliers_are_one_forward_and_compound() -> None:
    pruner = TokenPruner(DIM, keep_ratio=0.5).train()
    tokens, pos = _inputs()
    first = pruner(tokens, pos)
    assert first.weights is not None and torch.equal(first.weights, torch.ones(2, 10))
    second = pruner(first.tokens, first.pos_idx, first.weights)
    assert second.weights is not None and torch.equal(second.weights, torch.ones(2, 5))
    (second.tokens.sum() + second.pruned.sum()).backward()
    first_net = pruner.score_net.out[-1].weight.grad
    assert first_net is not None and torch.isfinite(first_net).all() and first_net.abs().sum() > 0


def test_eval_is_deterministic_and_keeps_top_scores() -> None:
    pruner = TokenPruner(DIM, keep_ratio=0.25).eval()
    tokens, pos = _inputs()
    a, b = pruner(tokens, pos), pruner(tokens, pos)
    assert torch.equal(a.pos_idx, b.pos_idx) and a.weights is None
    scores = pruner.score_net(tokens[:, 1:])
    where = (pos[:, None, :] == a.pos_idx[:, :, None]).long().argmax(-1)
    kept_scores = scores.gather(1, where)
    assert torch.all(kept_scores.min(1).values >= scores.topk(5, dim=1).values[:, -1])


def test_training_selection_varies_and_topk_mode_does_not() -> None:
    tokens, pos = _inputs()
    gumbel = TokenPruner(DIM, keep_ratio=0.25, selection="gumbel").train()
    picks = {tuple(gumbel(tokens, pos).pos_idx[0].tolist()) for _ in range(8)}
    assert len(picks) > 1
    topk = TokenPruner(DIM, keep_ratio=0.25, selection="topk").train()
    picks = {tuple(topk(tokens, pos).pos_idx[0].tolist()) for _ in range(4)}
    assert len(picks) == 1


def test_random_selection_ignores_scores_and_is_fixed_in_eval() -> None:
    tokens, pos = _inputs()
    pruner = TokenPruner(DIM, keep_ratio=0.25, selection="random", seed=3).eval()
    a, b = pruner(tokens, pos), pruner(tokens, pos)
    assert torch.equal(a.pos_idx, b.pos_idx) and a.weights is None
    pruner.train()
    picks = {tuple(pruner(tokens, pos).pos_idx[0].tolist()) for _ in range(8)}
    assert len(picks) > 1


def test_rejects_unknown_selection() -> None:
    with pytest.raises(ValueError, match="selection"):
        TokenPruner(DIM, keep_ratio=0.5, selection="soft")


def test_score_net_layer_norm_eps_is_the_release_default() -> None:
    """The STP+MTA release's score networks use PyTorch's LayerNorm default (1e-5)."""
    assert TokenPruner(DIM, keep_ratio=0.5).score_net.in_proj[0].eps == 1e-5
    assert ScoreNet(DIM).in_proj[0].eps == torch.nn.LayerNorm(DIM).eps
    assert TokenPruner(DIM, 0.5, score_norm_eps=1e-6).score_net.in_proj[0].eps == 1e-6


def test_selection_runs_in_the_score_dtype_float64_stays_float64() -> None:
    """As released: no cast of the scores, so a float64 run's straight-through softmax (and the
    score nets' gradients) are float64; half-precision scores under autocast go to float32."""
    tokens, pos = _inputs()
    pruner = TokenPruner(DIM, keep_ratio=0.5).double().train()
    step = pruner(tokens.double(), pos)
    assert step.weights is not None and step.weights.dtype == torch.float64
    pruner = TokenPruner(DIM, keep_ratio=0.5).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step = pruner(tokens, pos)
    assert step.weights is not None and step.weights.dtype == torch.float32


def test_an_exact_tie_at_the_cut_keeps_the_token_torch_topk_keeps() -> None:
    """The release selects with torch.topk; an argsort-based cut keeps a different token here."""
    scores = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.5, 1.0]]).log_softmax(1)  # ties at the cut

    class Fixed(torch.nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return scores.expand(tokens.shape[0], -1)

    pruner = TokenPruner(DIM, keep_ratio=0.5, selection="topk").eval()  # keeps 3 of 6
    pruner.score_net = Fixed()
    tokens, _ = _inputs(b=1, n=6)
    step = pruner(tokens, torch.arange(6)[None])
    assert step.pos_idx.tolist() == torch.topk(scores, 3).indices.sort(dim=1).values.tolist()
    assert step.pos_idx.tolist() != scores.argsort(dim=1, descending=True)[:, :3].sort(
        dim=1).values.tolist()
