"""predict_array at a target spacing: outputs in the input's shape; at-target input untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtoken import create_model
from medtoken.inference import predict as predict_module
from medtoken.inference.predict import predict_array, target_spacing_for
from medtoken.train.checkpoint import LoadedModel
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


def test_at_target_spacing_is_bit_identical_to_native(monkeypatch) -> None:
    image = np.random.default_rng(0).normal(size=(1, 20, 18, 16)).astype(np.float32)
    loaded = _loaded([1.0, 1.0, 1.0])
    native = predict_array(loaded, image)

    def refuse(*_args, **_kw):
        raise AssertionError("resampled although the case is at the target spacing")

    monkeypatch.setattr(predict_module, "resample_probabilities", refuse)
    at_target = predict_array(loaded, image, spacing=(1.0, 1.0, 1.0),
                              target_spacing=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(native, at_target)


def test_resampled_prediction_has_the_input_shape() -> None:
    image = np.random.default_rng(1).normal(size=(1, 20, 18, 7)).astype(np.float32)
    labels = predict_array(_loaded([1.0, 1.0, 1.0]), image, spacing=(1.0, 1.0, 3.5),
                           target_spacing=(1.0, 1.0, 1.0))
    assert labels.shape == (20, 18, 7)
