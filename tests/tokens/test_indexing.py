"""The shared index helpers: one top-k split with an order, one gather, one scatter."""

from __future__ import annotations

import pytest
import torch

from medtoken.tokens.indexing import ORDERS, gather_tokens, scatter_tokens, split_topk


def test_orders_hold_the_same_sets() -> None:
    scores = torch.randn(3, 20)
    by_score = split_topk(scores, 6, order="score")
    by_index = split_topk(scores, 6, order="index")
    for a, b in zip(by_score, by_index, strict=True):
        assert torch.equal(a.sort(dim=1).values, b)
    assert torch.all(scores.gather(1, by_score[0]).diff(dim=1) <= 0)  # highest first
    assert torch.all(scores.gather(1, by_score[1]).diff(dim=1) <= 0)
    assert torch.all(by_index[0].diff(dim=1) > 0) and torch.all(by_index[1].diff(dim=1) > 0)


def test_stable_ties_go_to_the_lower_index() -> None:
    scores = torch.tensor([[1.0, 3.0, 1.0, 3.0, 1.0, 3.0]])
    keep, rest = split_topk(scores, 4, order="score")
    assert keep.tolist() == [[1, 3, 5, 0]] and rest.tolist() == [[2, 4]]


def test_topk_ties_keep_what_torch_topk_keeps() -> None:
    """An exact tie at the cut: the STP+MTA release (torch.topk) and argsort keep different
    tokens; ties="topk" keeps the release's, in both orders, with the rest as the complement."""
    scores = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.5, 1.0]])
    released = torch.topk(scores, 2).indices.sort(dim=1).values
    keep, rest = split_topk(scores, 2, order="index", ties="topk")
    assert torch.equal(keep, released)
    argsorted = scores.argsort(dim=1, descending=True)[:, :2].sort(dim=1).values
    assert not torch.equal(argsorted, released)  # this tie does separate the two rules here
    assert sorted(keep[0].tolist() + rest[0].tolist()) == list(range(6))
    assert torch.all(rest.diff(dim=1) > 0)
    many = torch.randint(0, 3, (4, 50)).float()
    for order in ORDERS:
        keep, rest = split_topk(many, 17, order=order, ties="topk")
        assert torch.equal(keep.sort(dim=1).values,
                           torch.topk(many, 17).indices.sort(dim=1).values)
        assert torch.equal(torch.cat([keep, rest], 1).sort(dim=1).values,
                           torch.arange(50).expand(4, -1))
        if order == "score":
            assert torch.all(many.gather(1, rest).diff(dim=1) <= 0)
    with pytest.raises(ValueError, match="ties must be one of"):
        split_topk(scores, 2, ties="first")


def test_split_topk_takes_no_gradient_and_refuses_bad_arguments() -> None:
    scores = torch.randn(2, 5, requires_grad=True)
    keep, _ = split_topk(scores, 2)
    assert not keep.requires_grad
    with pytest.raises(ValueError, match="k must be in"):
        split_topk(scores, 6)
    with pytest.raises(ValueError, match="order must be one of"):
        split_topk(scores, 2, order="raster")  # type: ignore[arg-type]


def test_gather_gates_and_scatter_inverts() -> None:
    tokens = torch.randn(2, 7, 3)
    idx = torch.tensor([[6, 0, 3], [1, 2, 5]])
    picked = gather_tokens(tokens, idx)
    assert torch.equal(picked[1, 2], tokens[1, 5])
    weights = torch.rand(2, 7)
    torch.testing.assert_close(gather_tokens(tokens, idx, weights),
                               picked * weights.gather(1, idx)[..., None])
    back = scatter_tokens(torch.zeros(2, 7, 3), [picked], [idx])
    assert torch.equal(gather_tokens(back, idx), picked)
    assert (back.abs().sum(-1) > 0).sum() <= 6  # only the picked slots are written
