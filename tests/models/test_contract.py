"""Registry-wide contract: every tiny `*_test` preset and every baseline obeys the contract."""

from __future__ import annotations

import pytest
import torch

from medtoken import create_model, list_models
from medtoken.config import to_dict
from medtoken.models.base import SegOutput
from medtoken.train.checkpoint import build_from_state

TINY = list_models("*_test")
BASELINES_TINY = {
    "unet3d": {"roi_size": (16, 16, 16), "channels": (4, 8)},
    "unet2d": {"roi_size": (32, 32), "channels": (4, 8, 16)},
    "dynunet3d": {"roi_size": (16, 16, 16), "base_filters": 4, "max_filters": 16},
}


def _cases() -> list[tuple[str, dict]]:
    return [(name, {}) for name in TINY] + list(BASELINES_TINY.items())


CASES = pytest.mark.parametrize(("name", "overrides"), _cases(),
                                ids=lambda v: v if isinstance(v, str) else "")


def _input(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, model.in_channels, *model.config.roi_size)


@CASES
def test_forward_shape_finite_and_aux(name: str, overrides: dict) -> None:
    model = create_model(name, num_classes=3, **overrides)
    x = _input(model)
    logits = model(x)
    assert logits.shape == (2, 3, *model.config.roi_size)
    assert torch.isfinite(logits).all()
    out = model.forward_with_aux(x, torch.randint(0, 3, (2, 1, *model.config.roi_size)))
    assert isinstance(out, SegOutput)
    assert out.logits.shape == logits.shape
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.losses.values())


@CASES
def test_every_parameter_gets_a_gradient(name: str, overrides: dict) -> None:
    model = create_model(name, num_classes=3, **overrides).train()
    x = _input(model)
    out = model.forward_with_aux(x, torch.randint(0, 3, (2, 1, *model.config.roi_size)))
    (out.logits.float().square().mean() + sum(out.losses.values())).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if model.needs_unused_parameter_search:
        pytest.skip(f"{name} declares that some parameters may get no gradient")
    assert not missing, f"no gradient for {missing[:5]}"


@CASES
def test_eval_is_deterministic_and_batch_independent(name: str, overrides: dict) -> None:
    model = create_model(name, num_classes=3, **overrides).eval()
    x = _input(model)
    with torch.inference_mode():
        a, b = model(x), model(x)
        x2 = x.clone()
        x2[1] = torch.randn_like(x2[1])
        c = model(x2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0], c[0], rtol=1e-4, atol=1e-5)


@CASES
def test_state_dict_round_trip_rebuilds_identical_model(name: str, overrides: dict) -> None:
    model = create_model(name, num_classes=3, **overrides).eval()
    state = {"family": type(model.config).family, "model_config": to_dict(model.config),
             "model": model.state_dict()}
    rebuilt = build_from_state(state, where="test").eval()
    x = _input(model, batch=1)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), rebuilt(x))


def test_every_family_has_a_tiny_preset() -> None:
    from medtoken.registry import _FAMILIES, get_config

    tiny_families = {type(get_config(n)).family for n in TINY}
    baseline_families = {type(get_config(n)).family for n in BASELINES_TINY} | {"monai_unetr"}
    assert set(_FAMILIES) <= tiny_families | baseline_families
