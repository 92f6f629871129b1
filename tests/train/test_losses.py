"""The TM-UNet Dice + focal-BCE mix against a hand computation; dice_ce is MONAI's DiceCE."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import DiceCELoss

from medtoken.train.config import TrainConfig
from medtoken.train.losses import DiceFocalBCELoss, build_loss


def test_dice_focal_bce_matches_a_hand_computation() -> None:
    # two pixels, binary: foreground logit margins 0 and ln 3 -> p = 0.5 and 0.75; labels 1, 0
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[1, 0]]]])  # (1, 1, 1, 2)
    p, t = [0.5, 0.75], [1.0, 0.0]
    dice = (2 * 0.5 + 1) / (sum(p) + sum(t) + 1)  # smooth 1 and 1, whole batch
    bce = -(math.log(0.5) + math.log(0.25)) / 2
    focal = 0.8 * (1 - math.exp(-bce)) ** 2 * bce
    expected = 0.8 * (1 - dice) + 0.2 * focal
    got = DiceFocalBCELoss()(logits, target)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_binary_case_is_the_release_sigmoid_loss() -> None:
    """K = 2 softmax equals the release's one-channel sigmoid of l1 - l0, BCE from probabilities."""
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 6, requires_grad=True)
    target = torch.randint(0, 2, (2, 1, 5, 6))
    p = torch.sigmoid(logits[:, 1] - logits[:, 0])
    y = target[:, 0].float()
    dice = (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    bce = torch.nn.functional.binary_cross_entropy(p, y)
    release = 0.8 * (1 - dice) + 0.2 * 0.8 * (1 - torch.exp(-bce)) ** 2 * bce
    ours = DiceFocalBCELoss()(logits, target)
    torch.testing.assert_close(ours, release, rtol=1e-6, atol=1e-7)
    grad_ours, = torch.autograd.grad(ours, logits)
    grad_release, = torch.autograd.grad(release, logits)
    torch.testing.assert_close(grad_ours, grad_release, rtol=1e-5, atol=1e-7)


def test_build_loss_follows_the_config() -> None:
    assert isinstance(build_loss(TrainConfig(loss="dice_focal_bce")), DiceFocalBCELoss)
    cfg = TrainConfig(loss_include_background=True, loss_squared_pred=True, loss_batch=False,
                      loss_smooth_nr=0.0, loss_smooth_dr=1e-6)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    monai = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True,
                       squared_pred=True, batch=False, smooth_nr=0.0, smooth_dr=1e-6)
    torch.testing.assert_close(build_loss(cfg)(logits, target), monai(logits, target))
