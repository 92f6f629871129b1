"""postprocessing.json: round trip, nnU-Net's file, refusals, apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medtoken.postprocessing.plan import (
    LCC_FUNCTION,
    PostprocessingPlan,
    apply_postprocessing,
    read_plan,
    write_plan,
)
from medtoken.utils.errors import InputError


def test_write_read_round_trip_uses_nnunet_fields(tmp_path: Path) -> None:
    plan = PostprocessingPlan(((1, 2), (2,)), (1, 2), {"num_cases": 3, "x": float("nan")})
    path = write_plan(plan, tmp_path / "postprocessing.json")
    data = json.loads(path.read_text())
    assert data["postprocessing_fns"] == [LCC_FUNCTION, LCC_FUNCTION]
    assert data["postprocessing_kwargs"] == [{"labels_or_regions": [1, 2]},
                                             {"labels_or_regions": 2}]
    assert data["x"] is None and data["labels"] == [1, 2]
    back = read_plan(path)
    assert back == plan and back.record["num_cases"] == 3


def test_single_label_joint_step_is_a_list_as_nnunet(tmp_path: Path) -> None:
    path = write_plan(PostprocessingPlan(((1,),), (1,)), tmp_path / "p.json")
    assert json.loads(path.read_text())["postprocessing_kwargs"] == [{"labels_or_regions": [1]}]


def test_reads_a_plan_written_by_nnunet(tmp_path: Path) -> None:
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps({
        "input_folder": {"foreground_mean": {"Dice": 0.8}, "mean": {"1": {"Dice": 0.8}}},
        "postprocessed": {"foreground_mean": {"Dice": 0.9}, "mean": {"1": {"Dice": 0.9}}},
        "postprocessing_fns": [LCC_FUNCTION],
        "postprocessing_kwargs": [{"labels_or_regions": [1, 2]}]}))
    plan = read_plan(path)
    assert plan.steps == ((1, 2),) and plan.labels is None
    plan.check_labels([0, 1, 2], "model")
    with pytest.raises(InputError, match=r"uses labels \[2\]"):
        plan.check_labels([0, 1], "model")


@pytest.mark.parametrize("content, match", [
    ({"postprocessing_fns": ["dilate"], "postprocessing_kwargs": [{}]}, "only"),
    ({"postprocessing_fns": [LCC_FUNCTION], "postprocessing_kwargs": [{}]}, "labels_or_regions"),
    ({"postprocessing_fns": [LCC_FUNCTION],
      "postprocessing_kwargs": [{"labels_or_regions": [[1, 2]]}]}, "regions"),
    ({"postprocessing_fns": [], "postprocessing_kwargs": [{}]}, "equal length"),
    ({"postprocessing_fns": [LCC_FUNCTION], "postprocessing_kwargs": [{"labels_or_regions": 3}],
      "labels": [1, 2]}, r"not in 'labels'"),
    ({"labels": [1]}, "not a post-processing plan"),
])
def test_bad_plans_are_refused(tmp_path: Path, content: dict, match: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=match):
        read_plan(path)


def test_plan_for_other_labels_is_refused() -> None:
    plan = PostprocessingPlan(((1,),), (1,))
    with pytest.raises(InputError, match=r"plan is for labels \[1\], the model has labels"):
        plan.check_labels([0, 1, 2], "run")
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[0, 0] = 3
    with pytest.raises(InputError, match=r"holds labels \[3\]"):
        apply_postprocessing(labels, plan)


def test_apply_runs_steps_in_order_2d_and_3d(tmp_path: Path) -> None:
    two = np.zeros((6, 6), dtype=np.uint8)
    two[0:3, 0:3], two[5, 5], two[5, 0] = 1, 1, 2
    plan = PostprocessingPlan(((1,),), (1, 2))
    out = apply_postprocessing(two, plan)
    assert out[5, 5] == 0 and out[5, 0] == 2 and two[5, 5] == 1
    three = np.zeros((5, 5, 5), dtype=np.uint8)
    three[0:2, 0:2, 0:2], three[4, 4, 4] = 2, 1
    path = write_plan(PostprocessingPlan(((1, 2),), (1, 2)), tmp_path / "p.json")
    out3 = apply_postprocessing(three, path)  # a path works too
    assert out3[4, 4, 4] == 0 and int((out3 == 2).sum()) == 8
    empty_plan = PostprocessingPlan((), (1, 2))
    assert np.array_equal(apply_postprocessing(three, empty_plan), three)
