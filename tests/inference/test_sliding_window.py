"""Whole-case sliding-window prediction: geometry, blending and TTA."""

from __future__ import annotations

import pytest
import torch

from medtoken.inference.sliding_window import mirror_axes_sets, predict_probabilities


def _conv(dims: int) -> torch.nn.Module:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 3, 3, padding=1) if dims == 3 else torch.nn.Conv2d(1, 3, 3, padding=1)
    return conv.eval()


@pytest.mark.parametrize("shape", [(20, 24, 18), (9, 30, 31), (33, 17)])
def test_output_has_input_geometry_including_smaller_than_roi(shape: tuple[int, ...]) -> None:
    roi = (16,) * len(shape)
    probs = predict_probabilities(_conv(len(shape)), torch.randn(1, 1, *shape), roi)
    assert probs.shape == (1, 3, *shape)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, *shape))


def test_roi_equal_to_image_matches_direct_forward() -> None:
    model = _conv(3)
    x = torch.randn(1, 1, 16, 16, 16)
    probs = predict_probabilities(model, x, (16, 16, 16), overlap=0.5)
    with torch.inference_mode():
        torch.testing.assert_close(probs, torch.softmax(model(x), 1))


def test_constant_predictor_gives_constant_output_everywhere() -> None:
    def constant(x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
        logits[:, 1] = 3.0
        return logits

    probs = predict_probabilities(constant, torch.randn(1, 1, 37, 29, 23), (16, 16, 16))
    expected = torch.softmax(torch.tensor([0.0, 3.0]), 0)
    torch.testing.assert_close(probs[0, :, 5, 7, 11], expected)
    torch.testing.assert_close(probs.amin((2, 3, 4))[0], expected)


def test_tta_is_identity_for_a_mirror_symmetric_predictor() -> None:
    def pointwise(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, -x], 1)

    x = torch.randn(1, 1, 20, 18, 22)
    plain = predict_probabilities(pointwise, x, (16, 16, 16), tta=False)
    mirrored = predict_probabilities(pointwise, x, (16, 16, 16), tta=True)
    torch.testing.assert_close(plain, mirrored)


def test_mirror_sets_cover_all_axis_subsets() -> None:
    assert len(mirror_axes_sets(3)) == 8 and len(mirror_axes_sets(2)) == 4
    assert () in mirror_axes_sets(3) and (2, 3, 4) in mirror_axes_sets(3)
