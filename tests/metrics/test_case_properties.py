"""Property tests of the per-case metrics on arbitrary 2D/3D label maps and spacings.

(Dice bounds, symmetry and the count formula on 2D maps are in test_case.py.)
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medtoken.metrics.case import compute_case_metrics, image_diagonal_mm

LABELS = (1, 2, 3)
_shapes = st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """(pred, ref, spacing): two label maps in 0..3 of one 2D or 3D shape, spacing in mm."""
    shape = draw(_shapes)
    pred = draw(arrays(np.uint8, shape, elements=st.integers(0, 3)))
    ref = draw(arrays(np.uint8, shape, elements=st.integers(0, 3)))
    spacing = tuple(draw(st.lists(st.floats(0.2, 4.0), min_size=len(shape),
                                  max_size=len(shape))))
    return pred, ref, spacing


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(case=_cases())
def test_metrics_are_bounded_symmetric_and_follow_the_empty_policy(case) -> None:
    pred, ref, spacing = case
    forward = compute_case_metrics(pred, ref, LABELS, spacing)
    backward = compute_case_metrics(ref, pred, LABELS, spacing)
    diagonal = image_diagonal_mm(pred.shape, spacing)
    for label, m in forward.items():
        other = backward[label]
        for name in ("Dice", "IoU", "HD95_mm", "NSD"):
            assert _same(m[name], other[name]), (label, name)
        if m["n_pred"] == 0 and m["n_ref"] == 0:
            assert all(math.isnan(m[n]) for n in ("Dice", "IoU", "HD95_mm", "NSD"))
        elif m["n_pred"] == 0 or m["n_ref"] == 0:
            assert (m["Dice"], m["IoU"], m["NSD"]) == (0.0, 0.0, 0.0)
            assert math.isclose(m["HD95_mm"], diagonal)
        else:
            assert 0.0 <= m["Dice"] <= 1.0 and 0.0 <= m["NSD"] <= 1.0 + 1e-9
            assert 0.0 <= m["HD95_mm"] <= diagonal + 1e-6
            assert math.isclose(m["IoU"], m["Dice"] / (2 - m["Dice"]), abs_tol=1e-12)
        assert m["TP"] + m["FP"] + m["FN"] + m["TN"] == pred.size


@settings(max_examples=30, deadline=None)
@given(case=_cases())
def test_identical_non_empty_masks_score_perfectly(case) -> None:
    _, ref, spacing = case
    for label, m in compute_case_metrics(ref, ref, LABELS, spacing).items():
        if m["n_ref"] == 0:
            assert math.isnan(m["Dice"]), label
        else:
            assert (m["Dice"], m["IoU"], m["HD95_mm"], m["FP"], m["FN"]) == (1.0, 1.0, 0.0, 0, 0)
            assert math.isclose(m["NSD"], 1.0)


@settings(max_examples=30, deadline=None)
@given(case=_cases(), permutation=st.permutations(LABELS))
def test_relabelling_the_foreground_permutes_the_results(case, permutation) -> None:
    """Renaming the foreground classes (background stays 0) renames the per-label results."""
    pred, ref, spacing = case
    mapping = np.array([0, *permutation], dtype=np.uint8)  # old label -> new label
    before = compute_case_metrics(pred, ref, LABELS, spacing)
    after = compute_case_metrics(mapping[pred], mapping[ref], LABELS, spacing)
    for old, new in zip(LABELS, permutation, strict=True):
        for name, value in before[str(old)].items():
            assert _same(float(value), float(after[str(new)][name])), (old, new, name)


@settings(max_examples=25, deadline=None)
@given(case=_cases(), factor=st.floats(0.25, 4.0))
def test_uniform_rescaling_scales_distances_and_keeps_overlap(case, factor: float) -> None:
    pred, ref, spacing = case
    tolerance = 1.2345  # not a distance of any voxel pair of "round" spacings: no ties to flip
    base = compute_case_metrics(pred, ref, LABELS, spacing, nsd_tolerance_mm=tolerance)
    scaled = compute_case_metrics(pred, ref, LABELS, [s * factor for s in spacing],
                                  nsd_tolerance_mm=tolerance * factor)
    for label, m in base.items():
        assert _same(scaled[label]["Dice"], m["Dice"])
        assert _same(scaled[label]["HD95_mm"], m["HD95_mm"] * factor) or math.isclose(
            scaled[label]["HD95_mm"], m["HD95_mm"] * factor, rel_tol=1e-4)
        assert _same(scaled[label]["NSD"], m["NSD"]) or math.isclose(
            scaled[label]["NSD"], m["NSD"], abs_tol=1e-6)
