"""predict_array at a target spacing: outputs in the input's shape; at-target input untouched;
ensemble members must agree on the spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtoken import create_model
from medtoken.data.datasets import Case
from medtoken.inference import predict as predict_module
from medtoken.inference.options import PredictOptions
from medtoken.inference.predict import (
    check_output_folder,
    predict_array,
    predict_cases,
    target_spacing_for,
)
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


@pytest.mark.parametrize(("members", "option", "message"), [
    ([[1.0, 1.0, 2.0], None], "plan", "different spacings"),
    ([None], "1,1", "--spacing: expected plan, native or 3"),
])
def test_refused_spacing_leaves_no_output_folder(members: list[list[float] | None], option: str,
                                                 message: str, tmp_path: Path) -> None:
    image = tmp_path / "in" / "case.nii.gz"
    image.parent.mkdir()
    image.write_bytes(b"")  # never read: refused before the first case
    with pytest.raises(InputError, match=message):
        predict_cases([_loaded(t) for t in members], [Case("case", (image,), None)],
                      tmp_path / "out", PredictOptions(target_spacing=option))
    assert not (tmp_path / "out").exists()


def test_output_folder_inside_an_input_series_folder_is_refused(tmp_path: Path) -> None:
    series = tmp_path / "dcm" / "s1"  # a DICOM series: the case's image is a folder
    series.mkdir(parents=True)
    case = Case("s1", (series,), None)
    for out in (series, series / "pred", tmp_path / "dcm"):
        with pytest.raises(InputError, match="input"):
            check_output_folder(out, [case])
    check_output_folder(tmp_path / "out", [case])  # beside the inputs: fine
