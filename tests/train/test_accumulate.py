"""Gradient accumulation: N micro-batches, loss / N each, one optimiser step."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.losses import DiceCELoss

from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import load_checkpoint
from medtoken.registry import build_model, get_config
from medtoken.train import fit as fit_module
from medtoken.train.config import TrainConfig
from medtoken.train.distributed import TrainForward
from medtoken.train.fit import accumulate_gradients, fit

NO_SCALER = torch.amp.GradScaler("cuda", enabled=False)


def _grads(loss_fn: Any, x: torch.Tensor, y: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Gradients after accumulating ``x`` split into ``n`` micro-batches (instance-norm U-Net)."""
    torch.manual_seed(0)
    model = build_model(get_config("unet3d", channels=[4, 8], num_classes=3,
                                   roi_size=[16, 16, 16]))
    per = x.shape[0] // n
    accumulate_gradients(TrainForward(model), loss_fn,
                         lambda i: (x[i * per:(i + 1) * per], y[i * per:(i + 1) * per]), n,
                         NO_SCALER, nullcontext)
    return [p.grad.clone() for p in model.parameters()]


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    return torch.randn(2, 1, 16, 16, 16), torch.randint(0, 3, (2, 1, 16, 16, 16))


def _assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for ga, gb in zip(a, b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-7)


def test_accumulating_two_halves_equals_one_batch_for_a_per_sample_loss() -> None:
    # cross-entropy is a mean over samples and voxels: batch 2 == mean of two batches of 1
    ce = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.0)
    x, y = _data()
    _assert_all_close(_grads(ce, x, y, n=2), _grads(ce, x, y, n=1))


def test_batch_dice_accumulates_to_the_mean_of_micro_batch_losses() -> None:
    # batch Dice pools the batch, so accumulation is not batch 2; it must be the mean of the
    # micro-batch losses, whose gradient is computed here in one graph
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    x, y = _data()
    torch.manual_seed(0)
    model = build_model(get_config("unet3d", channels=[4, 8], num_classes=3,
                                   roi_size=[16, 16, 16]))
    loss = sum(dice_ce(model(x[i:i + 1]), y[i:i + 1]) for i in range(2)) / 2
    loss.backward()
    reference = [p.grad.clone() for p in model.parameters()]
    accumulated = _grads(dice_ce, x, y, n=2)
    _assert_all_close(accumulated, reference)
    with pytest.raises(AssertionError):  # the test can tell the two apart
        _assert_all_close(accumulated, _grads(dice_ce, x, y, n=1))


def test_fit_counts_optimiser_steps_and_draws_every_micro_batch(tmp_path: Path,
                                                                monkeypatch) -> None:
    data = make_synthetic_dataset(tmp_path / "d", num_cases=5, seed=3)
    drawn: list[int] = []
    original = fit_module.PatchSampler.batch

    def record(self: Any, step: int) -> Any:
        drawn.append(step)
        return original(self, step)

    monkeypatch.setattr(fit_module.PatchSampler, "batch", record)
    cfg = TrainConfig(data=str(data), model="unet3d", roi_size=(16, 16, 16), batch_size=1,
                      accumulate=3, max_steps=2, steps_per_epoch=2, val_every=100,
                      warmup_steps=1)
    result = fit(cfg, tmp_path / "run", {"channels": [4, 8]}, device="cpu")
    assert result.steps_done == 2 and drawn == list(range(6))
    state = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert state["step"] == 2 and state["train_config"]["accumulate"] == 3
