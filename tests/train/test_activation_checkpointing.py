"""Activation checkpointing: the gradients, buffers and state-dict keys of the plain model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.losses import DiceCELoss

from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import load_checkpoint, load_model_checkpoint
from medtoken.registry import build_model, get_config
from medtoken.train.activation_checkpointing import apply_grad_checkpointing
from medtoken.train.config import TrainConfig
from medtoken.train.fit import fit

CASES = [
    # stochastic depth inside the checkpointed blocks: the recomputation must replay the RNG;
    # the Gumbel noise of the pruners (between blocks) is drawn once either way
    ("scd_test", {"encoder.drop_path_rate": 0.3}, 5),
    ("tmunet_test", {}, 4),  # MSTM blocks with BatchNorm: running stats must move once
    ("monai_unetr3d", {"hidden_size": 24, "mlp_dim": 48, "num_heads": 2, "feature_size": 4,
                       "roi_size": (32, 32, 32)}, 12),  # MONAI's TransformerBlock
]
WRAPPER_PREFIX = "_checkpoint_wrapped_module."


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One training forward/backward from a fixed RNG state; gradients by plain parameter name."""
    model.train()
    torch.manual_seed(11)
    out = model.forward_with_aux(x, y)  # type: ignore[operator]
    loss = DiceCELoss(to_onehot_y=True, softmax=True)(out.logits, y) + sum(out.losses.values())
    loss.backward()
    return {k.replace(WRAPPER_PREFIX, ""): p.grad for k, p in model.named_parameters()}


@pytest.mark.parametrize(("preset", "overrides", "blocks"), CASES)
def test_gradients_buffers_and_keys_equal_the_plain_model(preset: str, overrides: dict[str, Any],
                                                          blocks: int) -> None:
    cfg = get_config(preset, **overrides)
    plain = build_model(cfg)
    wrapped = copy.deepcopy(plain)
    assert apply_grad_checkpointing(wrapped) == blocks
    x = torch.randn(2, cfg.in_channels, *cfg.roi_size)
    y = torch.randint(0, cfg.num_classes, (2, 1, *cfg.roi_size))
    expected, got = _step(plain, x, y), _step(wrapped, x, y)
    assert expected.keys() == got.keys()
    for name, grad in expected.items():
        if grad is None:
            assert got[name] is None, name
        else:
            torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    a, b = plain.state_dict(), wrapped.state_dict()
    assert list(a) == list(b)  # no wrapper prefix in checkpoints
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)  # buffers too
    fresh = build_model(cfg)
    fresh.load_state_dict(b)  # strict: loads into a plain model
    wrapped.load_state_dict(a)  # and plain weights load into a wrapped one
    plain.eval(), wrapped.eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), plain(x))


def test_models_without_blocks_are_left_alone() -> None:
    model = build_model(get_config("unet3d", channels=[4, 8], roi_size=[16, 16, 16]))
    keys = list(model.state_dict())
    assert apply_grad_checkpointing(model) == 0
    assert list(model.state_dict()) == keys


def test_fit_with_grad_checkpointing_saves_a_plain_checkpoint(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=5, seed=2,
                                  layout="folder2d")
    cfg = TrainConfig(data=str(data), model="scd2d_test", batch_size=1, steps_per_epoch=1,
                      epochs=1, warmup_steps=1, grad_checkpointing=True)
    fit(cfg, tmp_path / "run", device="cpu")
    state = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert not any("_checkpoint_wrapped" in k for k in state["model"])
    assert state["train_config"]["grad_checkpointing"] is True
    loaded = load_model_checkpoint(tmp_path / "run")  # strict load into a plain model
    assert not any("_checkpoint_wrapped" in n for n, _ in loaded.model.named_modules())
