"""nnU-Net's planner rules on generated fingerprints; expected plans derived by hand.

Each derivation follows nnU-Net v2.8.1's ``ExperimentPlanner``: target spacing, initial patch
(256^3 or 2048^2 voxels with the aspect of 1/spacing, clipped to the median shape), topology,
VRAM estimate E against the reference R (560e6 in 3D, 85e6 in 2D), batch
``round(R / E * ref_bs)`` capped at 5% of the dataset's voxels and at least 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medtoken.planning.fingerprint import CaseFingerprint, DatasetFingerprint
from medtoken.planning.planner import (
    PlannerInput,
    determine_target_spacing,
    determine_transpose,
    normalization_schemes,
    plan_configuration,
    plan_experiment,
)

STATS = {"mean": 1.0, "median": 1.0, "std": 1.0, "min": 0.0, "max": 2.0, "percentile_99_5": 2.0,
         "percentile_00_5": 0.0}


def _fingerprint(spacings: list[tuple[float, ...]], shapes: list[tuple[int, ...]],
                 rel_size: float = 1.0, reader: str = "SimpleITKIO",
                 channels: int = 1) -> DatasetFingerprint:
    cases = tuple(CaseFingerprint(f"c{i:03d}", sp, sh, rel_size)
                  for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True)))
    return DatasetFingerprint(cases, (dict(STATS),) * channels, rel_size, reader)


def _arch(plan: dict[str, Any]) -> dict[str, Any]:
    kw = plan["architecture"]["arch_kwargs"]
    return {k: kw[k] for k in ("n_stages", "features_per_stage", "kernel_sizes", "strides",
                               "n_conv_per_stage", "n_conv_per_stage_decoder")}


def test_isotropic_hippocampus_like() -> None:
    """Spacing 1, median 36x50x35, 208 training cases, 3 labels.

    3d_fullres: patch 40x56x40 (pad to 8), E = 19174400, batch round(58.4) = 58, capped by
    5%: round(63000 * 208 * 0.05 / 89600) = round(7.31) = 7. 2d: patch 56x40, E = 651840,
    batch 1565 capped at round(13104000 * 0.05 / 2240) = round(292.5) = 292 (half to even).
    """
    fp = _fingerprint([(1.0, 1.0, 1.0)] * 5, [(36, 50, 35)] * 5)
    plans = plan_experiment(fp, PlannerInput("Dataset004_Hippocampus", ("MRI",), 3, 208))
    full, flat = plans["configurations"]["3d_fullres"], plans["configurations"]["2d"]
    assert list(plans["configurations"]) == ["2d", "3d_fullres"]
    assert full["patch_size"] == [40, 56, 40] and full["batch_size"] == 7
    assert full["spacing"] == [1.0, 1.0, 1.0]
    assert full["median_image_size_in_voxels"] == [36.0, 50.0, 35.0]
    assert _arch(full) == {
        "n_stages": 4, "features_per_stage": [32, 64, 128, 256],
        "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3,
        "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2]}
    assert flat["patch_size"] == [56, 40] and flat["batch_size"] == 292
    assert _arch(flat)["features_per_stage"] == [32, 64, 128, 256]
    assert full["batch_dice"] is False and flat["batch_dice"] is True
    assert plans["transpose_forward"] == [0, 1, 2] and plans["transpose_backward"] == [0, 1, 2]
    assert full["normalization_schemes"] == ["ZScoreNormalization"]
    assert full["use_mask_for_norm"] == [False]
    kw = full["architecture"]["arch_kwargs"]
    assert kw["conv_op"] == "torch.nn.modules.conv.Conv3d"
    assert kw["norm_op"] == "torch.nn.modules.instancenorm.InstanceNorm3d"
    assert flat["architecture"]["arch_kwargs"]["conv_op"] == "torch.nn.modules.conv.Conv2d"


def test_anisotropic_uses_tenth_percentile_on_the_coarse_axis() -> None:
    """11 cases, z spacings [2, 4, 5 x 9], in-plane 1, shape 16x128x128 (z first).

    Median z 5 > 3 x 1 and 16 x 3 < 128: anisotropic, so z gets the 10th percentile, which
    for 11 values is the second smallest: 4. Resampled median shape: 16 * 5 / 4 = 20.
    3d_fullres (derivation in test_topology): patch 20x128x128, 6 stages, E = 96245760,
    batch round(11.6) = 12 capped at round(20*128*128 * 100 * 0.05 / 327680) = 5.
    2d: patch 128x128, 6 stages 32..512, E = 5128192, batch 199 capped at 100.
    """
    spacings = [(2.0, 1.0, 1.0), (4.0, 1.0, 1.0)] + [(5.0, 1.0, 1.0)] * 9
    fp = _fingerprint(spacings, [(16, 128, 128)] * 11)
    assert determine_target_spacing(fp).tolist() == [4.0, 1.0, 1.0]
    plans = plan_experiment(fp, PlannerInput("D", ("T2",), 2, 100))
    full, flat = plans["configurations"]["3d_fullres"], plans["configurations"]["2d"]
    assert full["spacing"] == [4.0, 1.0, 1.0]
    assert full["median_image_size_in_voxels"] == [20.0, 128.0, 128.0]
    assert full["patch_size"] == [20, 128, 128] and full["batch_size"] == 5
    assert _arch(full)["strides"] == [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2],
                                      [1, 2, 2]]
    assert _arch(full)["kernel_sizes"] == [[1, 3, 3], [1, 3, 3]] + [[3, 3, 3]] * 4
    assert _arch(full)["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    assert flat["patch_size"] == [128, 128] and flat["batch_size"] == 100
    assert _arch(flat)["features_per_stage"] == [32, 64, 128, 256, 512, 512]
    assert plans["original_median_spacing_after_transp"] == [5.0, 1.0, 1.0]
    assert plans["original_median_shape_after_transp"] == [16, 128, 128]


def test_anisotropic_spacing_with_enough_slices_keeps_the_median() -> None:
    # z is 5x coarser but has as many voxels as the other axes: not "anisotropic voxels"
    fp = _fingerprint([(2.0, 1.0, 1.0)] + [(5.0, 1.0, 1.0)] * 10, [(128, 128, 128)] * 11)
    assert determine_target_spacing(fp).tolist() == [5.0, 1.0, 1.0]


def test_coarse_axis_is_moved_first() -> None:
    forward, backward = determine_transpose(np.array([1.0, 1.0, 3.0]))
    assert forward == [2, 0, 1] and backward == [1, 2, 0]
    assert [forward[b] for b in backward] == [0, 1, 2]


def test_patch_shrinks_along_the_largest_relative_axis() -> None:
    """Median 160^3, spacing 1: patch 160^3 has E = 884368000 > 560e6. Each step removes 32
    (the divisor) from the axis largest relative to the median: axis 2 (ties: the last), then
    1, then 0: 128^3 with E = 452796416 fits; batch round(2.47) = 2."""
    planner_input = PlannerInput("D", ("MRI",), 3, 100)
    plan = plan_configuration([1.0, 1.0, 1.0], [160.0, 160.0, 160.0], "x", 160**3 * 100,
                              planner_input, 1.0)
    assert plan["patch_size"] == [128, 128, 128]
    assert plan["batch_size"] == 2
    assert _arch(plan)["n_stages"] == 6


def test_2d_data_plans_only_2d() -> None:
    """452 PNGs of 256x256: nnU-Net sees (1, 256, 256) with spacing (999, 1, 1).

    2d: 7 stages (256 -> 4), features capped at 512, E = 20627456, batch round(49.4) = 49
    capped at round(256*256 * 452 * 0.05 / 65536) = round(22.6) = 23.
    """
    fp = _fingerprint([(999.0, 1.0, 1.0)] * 452, [(1, 256, 256)] * 452,
                      reader="NaturalImage2DIO")
    plans = plan_experiment(fp, PlannerInput("Dataset005_BUSI", ("ultrasound",), 2, 452))
    assert list(plans["configurations"]) == ["2d"]
    flat = plans["configurations"]["2d"]
    assert flat["patch_size"] == [256, 256] and flat["batch_size"] == 23
    assert flat["spacing"] == [1.0, 1.0]
    assert _arch(flat)["features_per_stage"] == [32, 64, 128, 256, 512, 512, 512]
    assert _arch(flat)["strides"] == [[1, 1]] + [[2, 2]] * 6
    assert plans["original_median_spacing_after_transp"] == [999.0, 1.0, 1.0]
    assert plans["image_reader_writer"] == "NaturalImage2DIO"


def test_small_patch_relative_to_image_adds_lowres_and_cascade() -> None:
    fp = _fingerprint([(1.0, 1.0, 1.0)] * 3, [(320, 320, 320)] * 3)
    plans = plan_experiment(fp, PlannerInput("D", ("CT",), 2, 3))
    configs = plans["configurations"]
    assert list(configs) == ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"]
    assert configs["3d_lowres"]["next_stage"] == "3d_cascade_fullres"
    assert configs["3d_fullres"]["batch_dice"] is True
    assert configs["3d_lowres"]["batch_dice"] is False
    assert all(s > 1.0 for s in configs["3d_lowres"]["spacing"])
    assert configs["3d_cascade_fullres"] == {"inherits_from": "3d_fullres",
                                             "previous_stage": "3d_lowres"}


@pytest.mark.parametrize(("names", "rel_size", "schemes", "mask"), [
    (("CT", "T2"), 1.0, ["CTNormalization", "ZScoreNormalization"], [False, False]),
    (("ct", "MRI"), 0.5, ["CTNormalization", "ZScoreNormalization"], [False, True]),
    (("rescale_to_0_1", "noNorm"), 0.5, ["RescaleTo01Normalization", "NoNormalization"],
     [False, False]),
])
def test_normalization_rules(names: tuple[str, ...], rel_size: float, schemes: list[str],
                             mask: list[bool]) -> None:
    assert normalization_schemes(names, rel_size) == (schemes, mask)


def test_zero_spacing_is_refused() -> None:
    with pytest.raises(ValueError, match="spacing must be > 0"):
        plan_configuration([0.0, 1.0, 1.0], [10, 10, 10], "x", 1e6,
                           PlannerInput("D", ("MRI",), 2, 1), 1.0)
