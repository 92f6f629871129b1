"""The nnU-Net decision rule on hand-made masks with known components."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtoken.postprocessing.determine import determine_postprocessing
from medtoken.utils.errors import InputError

from .conftest import BIG, SMALL, S, cube, save_nifti

SHAPE = (12, 12, 12)


def _pairs(tmp_path: Path, cases: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[Path, Path]]:
    out = []
    for i, (pred, ref) in enumerate(cases):
        out.append((save_nifti(tmp_path / "pred" / f"c{i}.nii.gz", pred),
                    save_nifti(tmp_path / "ref" / f"c{i}.nii.gz", ref)))
    return out


def test_spurious_blob_is_removed(tmp_path: Path) -> None:
    ref = cube(SHAPE, (1, BIG))
    pred = cube(SHAPE, (1, BIG), (1, SMALL))  # Dice 128/136 -> 1 after the step
    plan = determine_postprocessing(_pairs(tmp_path, [(pred, ref), (ref, ref)]), [1])
    assert plan.steps == ((1,),) and plan.labels == (1,)
    decision = plan.record["decisions"][0]
    assert decision["kept"] and decision["dice_before"] == pytest.approx((1 + 128 / 136) / 2)
    assert plan.record["postprocessed"]["foreground_mean"]["Dice"] == pytest.approx(1.0)
    assert len(plan.record["decisions"]) == 1  # one label: no per-label steps (as nnU-Net)


def test_true_second_component_keeps_the_step_off(tmp_path: Path) -> None:
    ref = cube(SHAPE, (1, BIG), (1, SMALL))  # two true components
    pred = ref.copy()
    plan = determine_postprocessing(_pairs(tmp_path, [(pred, ref)]), [1])
    assert plan.steps == ()
    assert plan.record["postprocessed"] == plan.record["input_folder"]


def test_no_change_is_not_kept(tmp_path: Path) -> None:
    ref = cube(SHAPE, (1, BIG))
    plan = determine_postprocessing(_pairs(tmp_path, [(ref, ref)]), [1])
    assert plan.steps == ()  # nnU-Net keeps a step only when the Dice rises


def test_per_label_rule_when_the_joint_step_hurts_one_label(tmp_path: Path) -> None:
    # label 1: a cube + a spurious blob; label 2: touches label 1's cube, plus a true far part
    near2 = (S(5, 7), S(1, 5), S(1, 5))
    far2 = (S(8, 10), S(1, 3), S(8, 10))
    blob1 = (S(9, 11), S(9, 11), S(1, 3))
    ref = cube(SHAPE, (1, BIG), (2, near2), (2, far2))
    pred = cube(SHAPE, (1, BIG), (2, near2), (2, far2), (1, blob1))
    plan = determine_postprocessing(_pairs(tmp_path, [(pred, ref)]), [1, 2])
    joint, one, two = plan.record["decisions"]
    assert not joint["kept"]  # label 1 gains, label 2 loses its far part: refused
    assert one["kept"] and one["dice_after"] == pytest.approx(1.0)
    assert not two["kept"]
    assert plan.steps == ((1,),)
    after = plan.record["postprocessed"]["mean"]
    assert after["1"]["Dice"] == pytest.approx(1.0) and after["2"]["Dice"] == pytest.approx(1.0)


def test_joint_step_kept_then_per_label_on_top(tmp_path: Path) -> None:
    ref = cube(SHAPE, (1, BIG), (2, (S(5, 7), S(1, 5), S(1, 5))))
    pred = ref.copy()
    pred[SMALL] = 2  # spurious label-2 blob, far away
    plan = determine_postprocessing(_pairs(tmp_path, [(pred, ref)]), [0, 1, 2])
    assert plan.steps == ((1, 2),)  # per-label steps then change nothing: not kept
    assert [d["kept"] for d in plan.record["decisions"]] == [True, False, False]


def test_label_absent_everywhere_makes_the_joint_mean_nan(tmp_path: Path) -> None:
    ref = cube(SHAPE, (1, BIG))
    pred = cube(SHAPE, (1, BIG), (1, SMALL))
    plan = determine_postprocessing(_pairs(tmp_path, [(pred, ref)]), [1, 2])
    # as nnU-Net: the foreground mean over labels is NaN, so the joint step is not kept;
    # the per-label step of label 1 still is
    assert np.isnan(plan.record["input_folder"]["mean"]["2"]["Dice"])
    assert [d["kept"] for d in plan.record["decisions"]] == [False, True, False]
    assert plan.steps == ((1,),)


def test_shape_mismatch_and_no_cases_are_input_errors(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path, [(cube((4, 4, 4)), cube(SHAPE))])
    with pytest.raises(InputError, match="shape"):
        determine_postprocessing(pairs, [1])
    with pytest.raises(InputError, match="at least one case"):
        determine_postprocessing([], [1])
