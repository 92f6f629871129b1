"""Registry-wide contract: every tiny `*_test` preset and every baseline obeys the contract."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from medtoken import create_model, list_models
from medtoken.config import from_dict, to_dict
from medtoken.models.base import SegOutput, TokenSelection
from medtoken.models.checkpoint import build_from_state

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


def _forward(model: torch.nn.Module, batch: int = 2) -> SegOutput:
    with torch.inference_mode():
        return model.forward_with_aux(_input(model, batch))  # type: ignore[operator]


@CASES
def test_token_selection_is_boxes_of_the_window(name: str, overrides: dict) -> None:
    model = create_model(name, num_classes=3, **overrides).eval()
    selection = _forward(model).tokens
    if selection is None:
        return  # a dense model
    assert isinstance(selection, TokenSelection)
    roi, sd = torch.tensor(model.config.roi_size), model.spatial_dims
    boxes = selection.candidate_box
    n = boxes.shape[0]
    assert boxes.shape == (n, 2 * sd) and boxes.dtype == torch.int64
    assert (boxes[:, :sd] >= 0).all() and (boxes[:, :sd] < boxes[:, sd:]).all()
    assert (boxes[:, sd:] <= roi).all()
    previous: set[int] | None = None
    for kept in selection.kept:
        assert kept.shape[0] == 2 and 0 < kept.shape[1] <= n
        assert kept.min() >= 0 and kept.max() < n
        rows = [set(r.tolist()) for r in kept]
        assert all(len(r) == kept.shape[1] for r in rows)  # unique per sample
        assert previous is None or rows[0] <= previous  # stages nest
        previous = rows[0]
    assert selection.selected_box.shape == (2, selection.kept[-1].shape[1], 2 * sd)
    if selection.candidate_level is not None:
        assert selection.candidate_level.shape == (n,)


@CASES
def test_variant_notes_are_json_and_survive_the_dict_round_trip(name: str, overrides: dict
                                                                ) -> None:
    cfg = create_model(name, **overrides).config
    notes = cfg.variant_notes()
    assert json.loads(json.dumps(notes)) == notes
    assert from_dict(type(cfg), to_dict(cfg)).variant_notes() == notes


@CASES
def test_dataset_facts_are_config_fields(name: str, overrides: dict) -> None:
    cfg = create_model(name, **overrides).config
    fields = {f.name for f in dataclasses.fields(cfg)}
    assert set(cfg.dataset_facts) <= fields - {"in_channels", "num_classes", "roi_size"}


@CASES
def test_activation_checkpoint_blocks_are_the_models_token_blocks(name: str, overrides: dict
                                                                  ) -> None:
    from monai.networks.blocks.transformerblock import TransformerBlock as MonaiBlock

    from medtoken.layers.mstm import MSTMBlock
    from medtoken.layers.transformer import TransformerBlock

    model = create_model(name, **overrides)
    declared = set(model.activation_checkpoint_blocks)
    present = {t for t in (TransformerBlock, MSTMBlock, MonaiBlock)
               if any(isinstance(m, t) for m in model.modules())}
    assert present <= declared  # every token block the model holds is checkpointed
    assert all(issubclass(t, torch.nn.Module) for t in declared)


def test_token_selection_needs_a_stage() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        TokenSelection(torch.zeros(4, 4, dtype=torch.int64), ())


@CASES
def test_window_size_is_the_fixed_input_size_else_the_roi(name: str, overrides: dict) -> None:
    model = create_model(name, **overrides)
    fixed = model.fixed_input_size
    assert model.window_size == tuple(fixed if fixed is not None else model.config.roi_size)
    assert all(isinstance(s, int) for s in model.window_size)
