"""nnU-Net's deep-supervision loss against a computation written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtoken.models.losses import (
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
