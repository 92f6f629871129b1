"""Plans files: JSON round trip, the typed reader's axis mapping, and refusals."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from medtoken.data.datasets import load_dataset
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.planning.plans import (
    MEDTOKEN_KEY,
    check_plans_match,
    load_plan,
    plan_dataset,
    read_plans,
    write_plans,
)
from medtoken.utils.errors import InputError
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("p") / "Dataset001_Syn", num_cases=3)
    plans, _ = plan_dataset(load_dataset(root), num_foreground_voxels=3000)
    return root, plans


def test_plans_round_trip(planned: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, plans = planned
    path = tmp_path / "nnUNetPlans.json"
    write_plans(plans, path)
    assert read_plans(path) == plans
    assert list(json.loads(path.read_text())) == list(plans)  # nnU-Net's key order is kept
    assert plans["dataset_name"] == "Dataset001_Syn"
    assert plans[MEDTOKEN_KEY]["labels"] == {"background": 0, "structure_a": 1, "structure_b": 2}
    assert load_plan(path) == dataclasses.replace(load_plan(plans), source=str(path))


def test_loaded_plan_is_in_medtoken_axis_order(planned: tuple[Path, dict[str, Any]]) -> None:
    _, plans = planned
    plan = load_plan(plans, "3d_fullres")
    config = plans["configurations"]["3d_fullres"]
    forward = plans["transpose_forward"]
    # nnU-Net axis k of (z, y, x) is medtoken axis 2 - k; plan axis i is nnU-Net axis forward[i]
    for i, k in enumerate(forward):
        assert plan.roi_size[2 - k] == config["patch_size"][i]
        assert plan.spacing[2 - k] == config["spacing"][i]
    assert plan.batch_size == config["batch_size"] and plan.spatial_dims == 3
    assert plan.num_channels == 1 and plan.slice_axis is None
    assert plan.labels == {0: "background", 1: "structure_a", 2: "structure_b"}
    flat = load_plan(plans, "2d")
    assert flat.spatial_dims == 2 and flat.slice_axis == 2 - forward[0]


def _plans_with(transpose: list[int], patch: list[int], spacing: list[float],
                reader: str = "SimpleITKIO") -> dict[str, Any]:
    dims = len(patch)
    kwargs = {"n_stages": 2, "features_per_stage": [32, 64],
              "kernel_sizes": [[1] + [3] * (dims - 1), [3] * dims],
              "strides": [[1] * dims, [1] + [2] * (dims - 1)], "n_conv_per_stage": [2, 2],
              "n_conv_per_stage_decoder": [2]}
    config = {"patch_size": patch, "spacing": spacing, "batch_size": 2,
              "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
              "architecture": {"network_class_name": "x.PlainConvUNet", "arch_kwargs": kwargs,
                               "_kw_requires_import": ["conv_op"]}}
    return {"configurations": {"3d_fullres" if dims == 3 else "2d": config},
            "transpose_forward": transpose, "image_reader_writer": reader,
            "original_median_shape_after_transp": [1, 9, 9] if dims == 2 else [9, 9, 9],
            "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0}}}


def test_transposed_plan_maps_kernels_and_strides() -> None:
    # x (nnU-Net axis 2) is coarsest: transpose_forward [2, 0, 1]; plan axes are (x, z, y)
    plan = load_plan(_plans_with([2, 0, 1], [8, 32, 48], [5.0, 1.0, 1.2]))
    assert plan.axes == (0, 2, 1)  # medtoken axes of (x, z, y)
    assert plan.roi_size == (8, 48, 32) and plan.spacing == (5.0, 1.2, 1.0)
    assert plan.kernel_sizes == ((1, 3, 3), (3, 3, 3))
    assert plan.strides == ((1, 1, 1), (1, 2, 2))
    assert plan.patch_size == (8, 32, 48)


def test_natural_image_plan_keeps_row_column_order() -> None:
    plan = load_plan(_plans_with([0, 1, 2], [64, 96], [1.0, 1.0], "NaturalImage2DIO"), "2d")
    assert plan.roi_size == (64, 96) and plan.axes == (0, 1) and plan.slice_axis is None
    assert plan.data_spatial_dims == 2


def test_inherited_configuration_is_resolved() -> None:
    plans = _plans_with([0, 1, 2], [16, 16, 16], [1.0, 1.0, 1.0])
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres",
                                                     "batch_size": 4}
    plan = load_plan(plans, "3d_cascade_fullres")
    assert plan.batch_size == 4 and plan.roi_size == (16, 16, 16)


def test_labels_come_from_a_dataset_json_beside_an_nnunet_plans_file(tmp_path: Path) -> None:
    path = tmp_path / "nnUNetPlans.json"
    write_plans(_plans_with([0, 1, 2], [16, 16, 16], [1.0, 1.0, 1.0]), path)
    assert load_plan(path).labels is None
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
    assert load_plan(path).labels == {0: "background", 1: "a"}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a"}}))
    assert load_plan(path).labels == {0: "background", 1: "a"}  # MSD's value -> name
    content = read_plans(path)  # a dict read from the file, with the file as its source
    assert load_plan(content, source=path).labels == {0: "background", 1: "a"}
    assert load_plan(content).labels is None
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"a": "b"}}))
    with pytest.raises(InputError, match=r"dataset\.json: 'labels' must map values to names"):
        load_plan(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p.pop("transpose_forward"), "missing transpose_forward"),
    (lambda p: p["configurations"]["3d_fullres"].pop("patch_size"), "lacks patch_size"),
    (lambda p: p["configurations"]["3d_fullres"].update(patch_size=[16, 16]), "must agree"),
    (lambda p: p["configurations"]["3d_fullres"].update(batch_size=0), "batch_size > 0"),
    (lambda p: p.update(transpose_forward=[0, 0, 1]), "must permute"),
])
def test_invalid_plans_file_is_refused_naming_it(tmp_path: Path, edit: Any,
                                                 message: str) -> None:
    plans = _plans_with([0, 1, 2], [16, 16, 16], [1.0, 1.0, 1.0])
    edit(plans)
    path = tmp_path / "bad plans.json"
    write_plans(plans, path)
    with pytest.raises(InputError, match=message) as err:
        load_plan(path)
    assert err.value.where == str(path)


def test_missing_configuration_lists_the_available_ones(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    write_plans(_plans_with([0, 1, 2], [16, 16, 16], [1.0, 1.0, 1.0]), path)
    with pytest.raises(InputError, match="no configuration '2d'; the plans have 3d_fullres"):
        load_plan(path, "2d")


def test_plans_of_another_dataset_are_refused(planned: tuple[Path, dict[str, Any]],
                                              tmp_path: Path) -> None:
    root, plans = planned
    info = load_dataset(root)
    check_plans_match(load_plan(plans), info)  # its own dataset: accepted
    two_channels = copy.deepcopy(plans)
    for config in two_channels["configurations"].values():
        config["normalization_schemes"] = ["ZScoreNormalization"] * 2
    with pytest.raises(InputError, match=r"for 2 channel\(s\)"):
        check_plans_match(load_plan(two_channels), info)
    other_labels = copy.deepcopy(plans)
    other_labels[MEDTOKEN_KEY]["labels"] = {"background": 0, "a": 1}
    with pytest.raises(InputError, match=r"labels \[0, 1\], the dataset .* has \[0, 1, 2\]"):
        check_plans_match(load_plan(other_labels), info)
    flat = make_synthetic_dataset(tmp_path / "flat", spatial_dims=2, num_cases=2,
                                  layout="folder2d")
    path = tmp_path / "plans.json"
    write_plans(plans, path)
    with pytest.raises(InputError, match=r"are for 3D data, the dataset .* is 2D") as err:
        check_plans_match(load_plan(path, "2d"), load_dataset(flat))
    assert err.value.where == str(path)


@pytest.mark.realdata
def test_hippocampus_plan_is_nnunets() -> None:
    """nnU-Net 2.8.1 plans MSD Hippocampus (these 208 cases) as 1 mm, patch 40x56x40, batch 7,
    4 stages 32/64/128/256, strides 1/2/2/2 (docs/nnunet.md#planning)."""
    info = load_dataset(shared_dataset("msd_hippocampus"))
    plans, _ = plan_dataset(info, num_foreground_voxels=20800)
    plan = load_plan(plans, "3d_fullres")
    assert plan.plan_spacing == (1.0, 1.0, 1.0)
    assert plan.patch_size == (40, 56, 40) and plan.roi_size == (40, 56, 40)
    assert plan.batch_size == 7
    assert plan.features_per_stage == (32, 64, 128, 256)
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 3
    check_plans_match(plan, info)


def test_plan_differences_name_every_differing_leaf() -> None:
    from medtoken.planning.plans import plan_differences

    ours = {"a": [1, 2.0], "b": {"c": 3}, "only": 1}
    theirs = {"a": [1, 2], "b": {"c": 4}, "x": 0}
    assert plan_differences(ours, ours) == []
    assert plan_differences(ours, theirs) == [
        "/only: only one side", "/x: only one side", "/b/c: medtoken 3 != nnU-Net 4"]
