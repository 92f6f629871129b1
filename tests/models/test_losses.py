"""nnU-Net's deep-supervision loss against a computation written out by hand."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from medtoken.models.losses import (
    batch_dice_over_ranks,
    deep_supervision_loss,
    deep_supervision_scales,
    deep_supervision_weights,
    downsample_target,
    soft_dice_loss,
)


def _hand_dice_ce(logits: np.ndarray, labels: np.ndarray, batch_dice: bool) -> float:
    """CE + (-soft Dice over foreground, smooth 1e-5) for logits (B, K, H, W), labels (B, H, W)."""
    b, k = logits.shape[:2]
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    ce = -np.mean([np.log(p[i, labels[i, y, x], y, x]) for i in range(b)
                   for y in range(labels.shape[1]) for x in range(labels.shape[2])])
    dices = []
    for c in range(1, k):
        g = (labels == c).astype(float)
        if batch_dice:
            inter, sp, sg = (p[:, c] * g).sum(), p[:, c].sum(), g.sum()
            dices.append((2 * inter + 1e-5) / (sp + sg + 1e-5))
        else:
            for i in range(b):
                inter, sp, sg = (p[i, c] * g[i]).sum(), p[i, c].sum(), g[i].sum()
                dices.append((2 * inter + 1e-5) / (sp + sg + 1e-5))
    return float(ce - np.mean(dices))


@pytest.mark.parametrize("batch_dice", [True, False])
def test_deep_supervision_loss_equals_weighted_sum_by_hand(batch_dice: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 4, 4), generator=gen)
    outputs = [torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 2, 2, generator=gen),
               torch.randn(2, 3, 1, 1, generator=gen)]
    scales = deep_supervision_scales([(1, 1), (2, 2), (2, 2), (2, 2)])
    assert scales == [(1.0, 1.0), (0.5, 0.5), (0.25, 0.25)]
    loss = deep_supervision_loss(outputs, target, scales, batch_dice=batch_dice)
    t = target[:, 0].numpy()
    # weights 1, 1/2, 0 normalised; nearest-exact 4 -> 2 samples indices 1 and 3
    expected = (2 / 3 * _hand_dice_ce(outputs[0].numpy(), t, batch_dice)
                + 1 / 3 * _hand_dice_ce(outputs[1].numpy(), t[:, 1::2, 1::2], batch_dice))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_weights_follow_nnunet() -> None:
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == [1.0, 0.0]
    w = deep_supervision_weights(4)
    assert w == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0])


def test_scales_are_per_axis_for_anisotropic_strides() -> None:
    scales = deep_supervision_scales([(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)])
    assert scales == [(1.0, 1.0, 1.0), (1.0, 0.5, 0.5), (0.5, 0.25, 0.25)]
    t = torch.arange(4 * 8 * 8).reshape(1, 1, 4, 8, 8)
    assert downsample_target(t, scales[2]).shape == (1, 1, 2, 2, 2)
    assert downsample_target(t, scales[0]) is t


def test_soft_dice_perfect_prediction_is_minus_one() -> None:
    target = torch.tensor([[[[0, 1], [2, 1]]]])
    logits = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float() * 100
    assert float(soft_dice_loss(logits, target, batch_dice=True)) == pytest.approx(-1.0)


def _rank_loss_and_grad(rank: int, store: str, logits: torch.Tensor, target: torch.Tensor,
                        pooled: bool, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        part = logits[rank::2].clone().requires_grad_(True)  # this rank's half of the batch
        with batch_dice_over_ranks() if pooled else nullcontext():
            loss = soft_dice_loss(part, target[rank::2], batch_dice=True)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": part.grad}, f"{out}{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("pooled", [True, False])
def test_ddp_batch_dice_is_the_global_batchs(tmp_path: Path, pooled: bool) -> None:
    """Two gloo ranks with half a batch each: inside batch_dice_over_ranks every rank's loss is
    one process's loss on the whole batch, and the gradients (summed over ranks, as DDP's
    average of the rank losses' world-size-scaled gradients gives) are its gradients;
    outside, each rank pools its own half."""
    torch.manual_seed(0)
    logits, target = torch.randn(4, 3, 5, 5, 5), torch.randint(0, 3, (4, 1, 5, 5, 5))
    out = str(tmp_path / "rank")
    torch.multiprocessing.start_processes(
        _rank_loss_and_grad, args=(str(tmp_path / "store"), logits, target, pooled, out),
        nprocs=2, join=True, start_method="fork")
    ranks = [torch.load(f"{out}{r}.pt") for r in range(2)]
    if not pooled:
        for r, got in enumerate(ranks):
            torch.testing.assert_close(got["loss"], soft_dice_loss(logits[r::2], target[r::2],
                                                                   batch_dice=True))
        return
    whole = logits.clone().requires_grad_(True)
    reference = soft_dice_loss(whole, target, batch_dice=True)
    reference.backward()
    assert whole.grad is not None
    for r, got in enumerate(ranks):
        torch.testing.assert_close(got["loss"], reference.detach())
        # each rank's loss is the global one, so the reverse all-reduce sums 2 equal gradients;
        # DDP then averages over the 2 ranks: the parameters see exactly whole.grad
        torch.testing.assert_close(got["grad"] / 2, whole.grad[r::2])
