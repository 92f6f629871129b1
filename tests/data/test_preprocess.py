"""Intensity normalisation: per-case z-score and nnU-Net's CT scheme."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medtoken.data.preprocess as preprocess
from medtoken.data.datasets import load_dataset
from medtoken.data.io import ImageMeta, write_image, write_label
from medtoken.data.preprocess import NormalizationPlan, normalize, plan_normalization
from medtoken.data.synthetic import make_synthetic_dataset


@pytest.mark.parametrize("scale", [1.0, 255.0, 1.7e6])
def test_zscore_gives_zero_mean_unit_std(scale: float) -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((2, 6, 7, 8)) * scale + scale).astype(np.float32)  # (C, *S)
    before = image.copy()
    out = normalize(image, NormalizationPlan(("zscore", "zscore"), (None, None)))
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_array_equal(image, before)  # the input is not modified


def test_zscore_of_constant_image_is_zero() -> None:
    out = normalize(np.full((1, 4, 4), 7.0, np.float32), NormalizationPlan(("zscore",), (None,)))
    assert np.all(out == 0.0)


def test_ct_scheme_clips_then_standardises() -> None:
    plan = NormalizationPlan(("ct",), ((-100.0, 200.0, 50.0, 25.0),))
    image = np.array([[-1000.0, 0.0, 50.0, 300.0]], np.float32)  # (C, W)
    # clip to [-100, 200] -> [-100, 0, 50, 200]; (x - 50) / 25 -> [-6, -2, 0, 6]
    np.testing.assert_allclose(normalize(image, plan), [[-6.0, -2.0, 0.0, 6.0]])


def test_mixed_channels_are_normalised_independently() -> None:
    plan = NormalizationPlan(("ct", "zscore"), ((0.0, 10.0, 5.0, 5.0), None))
    image = np.stack([np.full((3, 3), 20.0), np.arange(9.0).reshape(3, 3)]).astype(np.float32)
    out = normalize(image, plan)
    np.testing.assert_allclose(out[0], 1.0)  # clipped to 10 -> (10 - 5) / 5
    assert abs(float(out[1].mean())) < 1e-6


def test_channel_count_must_match() -> None:
    with pytest.raises(ValueError, match="2 channels, the plan 1"):
        normalize(np.zeros((2, 3, 3), np.float32), NormalizationPlan(("zscore",), (None,)))


def test_plan_round_trip_and_validation() -> None:
    plan = NormalizationPlan(("ct", "zscore"), ((-1.0, 2.0, 0.5, 0.25), None))
    data = json.loads(json.dumps(plan.to_dict()))
    assert NormalizationPlan.from_dict(data) == plan
    with pytest.raises(ValueError, match="schemes must be in"):
        NormalizationPlan(("minmax",), (None,))
    with pytest.raises(ValueError, match="ct_stats of a 'ct' channel"):
        NormalizationPlan(("ct",), (None,))
    with pytest.raises(ValueError, match="one entry per channel"):
        NormalizationPlan(("zscore", "zscore"), (None,))
    with pytest.raises(ValueError, match="keys"):
        NormalizationPlan.from_dict({"schemes": ["zscore"]})


def test_mri_plan_reads_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = load_dataset(make_synthetic_dataset(tmp_path / "d", num_cases=2, num_channels=2))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("read_image called")

    monkeypatch.setattr(preprocess, "read_image", fail)
    plan = plan_normalization(info)
    assert plan.schemes == ("zscore", "zscore") and plan.ct_stats == (None, None)


def _write_ct_dataset(root: Path, foregrounds: list[np.ndarray]) -> None:
    """nnU-Net dataset, channel 'ct': foreground voxels hold the given values, background
    -1000 (which must not enter the statistics)."""
    for index, values in enumerate(foregrounds):
        labels = np.zeros((len(values) + 5, 3), np.uint8)
        labels[: len(values), 0] = 1
        image = np.full(labels.shape, -1000.0, np.float32)
        image[: len(values), 0] = values
        meta = ImageMeta(labels.shape, (1.0, 1.0), np.eye(4), ".png", "mem")
        write_image(image + 1000.0, meta, root / "imagesTr" / f"c{index}_0000.nii.gz")
        write_label(labels, meta, root / "labelsTr" / f"c{index}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "ct"}, "labels": {"background": 0, "organ": 1},
        "numTraining": len(foregrounds), "file_ending": ".nii.gz"}))


def test_ct_plan_uses_foreground_statistics(tmp_path: Path) -> None:
    # values 1000..1100 (written shifted by +1000), 201 per case, sampled with replacement
    _write_ct_dataset(tmp_path, [np.linspace(0.0, 100.0, 201), np.linspace(0.0, 100.0, 201)])
    info = load_dataset(tmp_path)
    plan = plan_normalization(info, max_voxels_per_case=20000, seed=3)
    assert plan.schemes == ("ct",)
    stats = plan.ct_stats[0]
    assert stats is not None
    lo, hi, mean, std = stats
    assert 1000.0 <= lo < 1002.0 and 1098.0 < hi <= 1100.0  # background 0 never sampled
    assert abs(mean - 1050.0) < 1.0 and abs(std - 100.0 / np.sqrt(12.0)) < 1.0
    assert plan_normalization(info, max_voxels_per_case=20000, seed=3) == plan  # deterministic


def test_ct_plan_with_constant_foreground(tmp_path: Path) -> None:
    _write_ct_dataset(tmp_path, [np.full(4, 30.0)])
    stats = plan_normalization(load_dataset(tmp_path), max_voxels_per_case=50).ct_stats[0]
    assert stats == (1030.0, 1030.0, 1030.0, 0.0)
