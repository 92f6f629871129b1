"""Per-case metrics on hand-computable masks, the empty-mask policy, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medtoken.metrics.case import METRIC_NAMES, compute_case_metrics, image_diagonal_mm


def _blob(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...], value: int = 1):
    out = np.zeros(shape, dtype=np.int16)
    out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = value
    return out


def test_dice_iou_counts_on_monai_2x2_case() -> None:
    # MONAI's DiceMetric case: pred [[1,0],[0,1]], ref [[1,0],[1,1]] -> TP 2, FP 0, FN 1, TN 1,
    # Dice = 2*2 / (2*2 + 0 + 1) = 0.8, IoU = 2 / 3.
    pred = np.array([[1, 0], [0, 1]])
    ref = np.array([[1, 0], [1, 1]])
    m = compute_case_metrics(pred, ref, labels=[1], spacing=(1.0, 1.0))["1"]
    assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (2, 0, 1, 1)
    assert (m["n_pred"], m["n_ref"]) == (2, 3)
    assert m["Dice"] == pytest.approx(0.8)
    assert m["IoU"] == pytest.approx(2 / 3)
    assert (m["empty_reference"], m["empty_prediction"]) == (0, 0)
    assert set(m) == set(METRIC_NAMES)


def test_identical_masks_score_perfectly() -> None:
    a = _blob((6, 7, 8), (1, 2, 2), (5, 6, 7))
    m = compute_case_metrics(a, a, labels=[1], spacing=(2.0, 0.7, 1.3))["1"]
    assert m["Dice"] == 1.0 and m["IoU"] == 1.0
    assert m["HD95_mm"] == 0.0
    assert m["NSD"] == pytest.approx(1.0)
    assert m["FP"] == 0 and m["FN"] == 0


def test_disjoint_masks_have_zero_overlap() -> None:
    pred = _blob((8, 8), (0, 0), (3, 3))
    ref = _blob((8, 8), (5, 5), (8, 8))
    m = compute_case_metrics(pred, ref, labels=[1], spacing=(1.0, 1.0))["1"]
    assert m["Dice"] == 0.0 and m["IoU"] == 0.0 and m["TP"] == 0
    assert 0.0 < m["HD95_mm"] < image_diagonal_mm((8, 8), (1.0, 1.0))


def test_hd95_single_voxels_at_known_anisotropic_distance() -> None:
    # Voxels (0,0,0) and (1,2,3), spacing (3,2,4) mm -> offset (3,4,12) mm -> distance 13 mm.
    pred = np.zeros((4, 5, 6), dtype=np.uint8)
    ref = np.zeros_like(pred)
    pred[0, 0, 0], ref[1, 2, 3] = 1, 1
    spacing = (3.0, 2.0, 4.0)
    m = compute_case_metrics(pred, ref, labels=[1], spacing=spacing, nsd_tolerance_mm=13.0)["1"]
    assert m["HD95_mm"] == pytest.approx(13.0)
    assert m["NSD"] == pytest.approx(1.0)  # every boundary voxel within tau = 13 mm
    m = compute_case_metrics(pred, ref, labels=[1], spacing=spacing, nsd_tolerance_mm=12.9)["1"]
    assert m["NSD"] == 0.0


@pytest.mark.parametrize("factor", [0.5, 2.0, 3.0])
def test_distances_scale_linearly_with_spacing(factor: float) -> None:
    pred = _blob((10, 9, 8), (1, 1, 1), (6, 5, 5))
    ref = _blob((10, 9, 8), (3, 2, 2), (9, 8, 7))
    spacing = np.array([0.8, 1.1, 2.5])
    base = compute_case_metrics(pred, ref, [1], spacing.tolist(), nsd_tolerance_mm=1.5)["1"]
    scaled = compute_case_metrics(pred, ref, [1], (spacing * factor).tolist(),
                                  nsd_tolerance_mm=1.5 * factor)["1"]
    assert base["HD95_mm"] > 0
    assert scaled["HD95_mm"] == pytest.approx(factor * base["HD95_mm"], rel=1e-5)
    assert scaled["NSD"] == pytest.approx(base["NSD"])
    assert scaled["Dice"] == base["Dice"]


def test_depth_one_volume_scores_like_the_2d_slice() -> None:
    pred = _blob((9, 10), (1, 2), (6, 7))
    ref = _blob((9, 10), (2, 1), (8, 6))
    m2d = compute_case_metrics(pred, ref, [1], (0.5, 0.7))["1"]
    m3d = compute_case_metrics(pred[..., None], ref[..., None], [1], (0.5, 0.7, 3.0))["1"]
    assert m3d["HD95_mm"] == pytest.approx(m2d["HD95_mm"])
    assert m3d["NSD"] == pytest.approx(m2d["NSD"])
    assert m3d["Dice"] == m2d["Dice"]


def test_empty_policy_both_empty_is_nan() -> None:
    zeros = np.zeros((4, 5, 6), dtype=np.uint8)
    m = compute_case_metrics(zeros, zeros, [1], (1.0, 1.0, 1.0))["1"]
    for name in ("Dice", "IoU", "HD95_mm", "NSD"):
        assert math.isnan(m[name]), name
    assert (m["empty_reference"], m["empty_prediction"]) == (1, 1)
    assert m["TN"] == zeros.size


@pytest.mark.parametrize("empty", ["reference", "prediction"])
def test_empty_policy_one_side_empty_is_worst_value(empty: str) -> None:
    mask = _blob((4, 5, 6), (1, 1, 1), (3, 3, 3))
    zeros = np.zeros_like(mask)
    pred, ref = (mask, zeros) if empty == "reference" else (zeros, mask)
    m = compute_case_metrics(pred, ref, [1], (3.0, 2.0, 4.0))["1"]
    assert m["Dice"] == 0.0 and m["IoU"] == 0.0 and m["NSD"] == 0.0
    # diagonal of 4x5x6 voxels of 3x2x4 mm: sqrt(12^2 + 10^2 + 24^2) = sqrt(820) mm
    assert m["HD95_mm"] == pytest.approx(math.sqrt(820.0))
    assert m[f"empty_{empty}"] == 1
    assert m["empty_prediction" if empty == "reference" else "empty_reference"] == 0


def test_multiple_labels_are_scored_one_versus_rest() -> None:
    ref = np.array([[0, 1, 1], [2, 2, 0], [3, 0, 0]])
    pred = np.array([[0, 1, 2], [2, 2, 0], [0, 0, 3]])
    result = compute_case_metrics(pred, ref, labels=np.array([1, 2, 3]), spacing=(1.0, 1.0))
    assert list(result) == ["1", "2", "3"]
    assert result["1"]["Dice"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert result["2"]["Dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert result["3"]["Dice"] == 0.0


@pytest.mark.parametrize(
    ("pred_shape", "spacing", "tol", "match"),
    [((3, 4), (1.0, 1.0), 1.0, "same shape"),
     ((3, 3), (1.0,), 1.0, "spacing"),
     ((3, 3), (1.0, 0.0), 1.0, "spacing"),
     ((3, 3), (1.0, 1.0), -1.0, "nsd_tolerance_mm")],
)
def test_invalid_arguments_raise(pred_shape, spacing, tol, match) -> None:
    with pytest.raises(ValueError, match=match):
        compute_case_metrics(np.zeros(pred_shape), np.zeros((3, 3)), [1], spacing, tol)


def test_one_dimensional_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="2D or 3D"):
        compute_case_metrics(np.zeros(5), np.zeros(5), [1], (1.0,))


_masks = st.integers(1, 4).flatmap(
    lambda h: st.integers(1, 4).flatmap(
        lambda w: st.tuples(arrays(np.int8, (h, w), elements=st.integers(0, 2)),
                            arrays(np.int8, (h, w), elements=st.integers(0, 2)))))


@settings(max_examples=25, deadline=None)
@given(_masks)
def test_dice_property_bounded_symmetric_and_from_counts(pair) -> None:
    pred, ref = pair
    forward = compute_case_metrics(pred, ref, [1, 2], (1.0, 1.5))
    backward = compute_case_metrics(ref, pred, [1, 2], (1.0, 1.5))
    for label, m in forward.items():
        denom = 2 * m["TP"] + m["FP"] + m["FN"]
        if denom == 0:
            assert math.isnan(m["Dice"]) and math.isnan(backward[label]["Dice"])
            continue
        assert 0.0 <= m["Dice"] <= 1.0
        assert m["Dice"] == pytest.approx(2 * m["TP"] / denom)
        assert m["Dice"] == pytest.approx(backward[label]["Dice"])
        assert m["HD95_mm"] == pytest.approx(backward[label]["HD95_mm"])
        assert m["TP"] + m["FP"] + m["FN"] + m["TN"] == pred.size
