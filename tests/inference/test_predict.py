"""predict_array at a target spacing: outputs in the input's shape; at-target input untouched;
ensemble members must agree on the spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtoken import create_model
from medtoken.inference import predict as predict_module
from medtoken.inference.options import PredictOptions
from medtoken.inference.predict import predict_array, target_spacing_for
from medtoken.models.checkpoint import LoadedModel
from medtoken.utils.errors import InputError


def _loaded(target: list[float] | None) -> LoadedModel:
    torch.manual_seed(0)
    model = create_model("unet3d", roi_size=(16, 16, 16), channels=(4, 8)).eval()
    dataset = {"normalization": {"schemes": ["zscore"], "ct_stats": [None]},
               "target_spacing": target}
    return LoadedModel(model=model, state={"dataset": dataset}, path=Path("x"))


def test_target_spacing_options() -> None:
    loaded = _loaded([1.0, 1.0, 2.0])
    assert target_spacing_for(loaded) == (1.0, 1.0, 2.0)
    assert target_spacing_for(loaded, "native") is None
    assert target_spacing_for(loaded, "0.5,0.5,1") == (0.5, 0.5, 1.0)
    assert target_spacing_for(_loaded(None), "plan") is None
    with pytest.raises(InputError, match="--spacing"):
        target_spacing_for(loaded, "0.5,0")
    with pytest.raises(InputError, match="--spacing: expected plan, native or 3"):
        target_spacing_for(loaded, "auto")  # train's word; predict spells its default plan


def test_ensemble_members_trained_at_other_spacings_are_refused() -> None:
    members = [_loaded([1.0, 1.0, 2.0]), _loaded(None)]
    with pytest.raises(InputError, match="different spacings"):
        target_spacing_for(members)
    assert target_spacing_for(members, "native") is None
    assert target_spacing_for([_loaded([1.0, 1.0, 2.0])] * 2) == (1.0, 1.0, 2.0)


def test_at_target_spacing_is_bit_identical_to_native(monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(0).normal(size=(1, 20, 18, 16)).astype(np.float32)
    loaded = _loaded([1.0, 1.0, 1.0])
    native, _ = predict_array(loaded, image)

    def refuse(*_args: object, **_kw: object) -> None:
        raise AssertionError("resampled although the case is at the target spacing")

    monkeypatch.setattr(predict_module, "resample_probabilities", refuse)
    monkeypatch.setattr(predict_module, "resample_image", refuse)
    at_target, _ = predict_array(loaded, image, image_spacing=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(native, at_target)


@pytest.mark.parametrize("stitching", ["slab", "full"])
def test_resampled_prediction_has_the_input_shape(stitching: str) -> None:
    image = np.random.default_rng(1).normal(size=(1, 20, 18, 7)).astype(np.float32)
    options = PredictOptions(stitching=stitching, save_probabilities=True)
    labels, probs = predict_array(_loaded([1.0, 1.0, 1.0]), image, options,
                                  image_spacing=(1.0, 1.0, 3.5))
    assert labels.shape == (20, 18, 7)
    assert probs is not None and probs.shape == (2, 20, 18, 7) and probs.dtype == np.float16
    agree = np.mean(labels == probs.astype(np.float32).argmax(0))
    assert agree > 0.99  # the same resampled probabilities (float16 ties aside)
    native, _ = predict_array(_loaded([1.0, 1.0, 1.0]), image,
                              PredictOptions(stitching=stitching, target_spacing="native"),
                              image_spacing=(1.0, 1.0, 3.5))
    assert native.shape == (20, 18, 7)
