"""Training from nnU-Net plans: reading nnUNetPlans.json, resolving presets, spacing, batch size,
and a tiny end-to-end run whose predictions keep each input's geometry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtoken.data.datasets import load_dataset
from medtoken.data.io import read_label
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.train.config import TrainConfig
from medtoken.train.nnunet_plans import read_plans, resolve_plan
from medtoken.utils.errors import InputError

pytest.importorskip("dynamic_network_architectures")


def _arch(dims: int, patch: list[int]) -> dict[str, Any]:
    conv = "Conv3d" if dims == 3 else "Conv2d"
    first = [1] * dims
    second = [2] * dims if dims == 2 else [1, 2, 2]  # (z, y, x): z is not pooled
    return {"network_class_name":
            "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": 3, "features_per_stage": [4, 8, 16],
                "conv_op": f"torch.nn.modules.conv.{conv}",
                "kernel_sizes": [[3] * dims, [3] * dims, [3] * dims],
                "strides": [first, second, [2] * dims], "n_conv_per_stage": [2, 2, 2],
                "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _write_plans(path: Path, channels: int = 1) -> Path:
    """A small nnUNetPlans.json in nnU-Net's layout (3D entries in (z, y, x) order)."""
    plans = {
        "dataset_name": "Dataset999_Synthetic", "plans_name": "nnUNetPlans",
        "foreground_intensity_properties_per_channel": {str(c): {} for c in range(channels)},
        "configurations": {
            "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 3,
                           "patch_size": [8, 16, 24], "spacing": [1.2, 1.0, 0.9],
                           "batch_dice": False, "architecture": _arch(3, [8, 16, 24])},
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "batch_size": 5},
            "2d": {"batch_size": 12, "patch_size": [32, 32], "spacing": [1.0, 0.9],
                   "batch_dice": True, "architecture": _arch(2, [32, 32])},
        }}
    path.write_text(json.dumps(plans))
    return path


@pytest.fixture(scope="module")
def data3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("nn") / "d", num_cases=5, seed=4)


def test_plans_are_read_in_array_axis_order(data3d: Path, tmp_path: Path) -> None:
    plan = read_plans(_write_plans(tmp_path / "p.json"), None, load_dataset(data3d))
    assert plan.name == "3d_fullres" and plan.batch_size == 3
    assert plan.roi_size == (24, 16, 8) and plan.spacing == (0.9, 1.0, 1.2)
    assert plan.model_fields["strides"] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    assert plan.model_fields["batch_dice"] is False
    assert plan.model_fields["features_per_stage"] == [4, 8, 16]


@pytest.mark.parametrize(("change", "match"), [
    ({"configuration": "2d"}, "does not fit this 3D dataset"),
    ({"channels": 2}, "2 channel"),
    ({"network": "ResidualEncoderUNet"}, "not supported"),
])
def test_plans_for_other_data_are_refused(data3d: Path, tmp_path: Path, change: dict,
                                          match: str) -> None:
    path = _write_plans(tmp_path / "p.json", channels=change.get("channels", 1))
    if "network" in change:
        plans = json.loads(path.read_text())
        plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "x." \
            + change["network"]
        path.write_text(json.dumps(plans))
    with pytest.raises(InputError, match=match):
        read_plans(path, change.get("configuration"), load_dataset(data3d))


def test_labels_of_a_dataset_json_beside_the_plans_must_match(data3d: Path,
                                                              tmp_path: Path) -> None:
    path = _write_plans(tmp_path / "p.json")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1,
                                                                  "b": 2}}))
    read_plans(path, None, load_dataset(data3d))  # synthetic data: labels 0, 1, 2
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
    with pytest.raises(InputError, match=r"labels \[0, 1\]"):
        read_plans(path, None, load_dataset(data3d))


def test_missing_configuration_names_the_known_ones(data3d: Path, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"configurations": {"2d": {}}}))
    with pytest.raises(InputError, match=r"no configuration '3d_fullres' \(it has: 2d\)"):
        read_plans(path, None, load_dataset(data3d))


def test_resolve_picks_preset_batch_size_and_spacing(data3d: Path, tmp_path: Path) -> None:
    info = load_dataset(data3d)
    plans = str(_write_plans(tmp_path / "p.json"))
    cfg, run = resolve_plan(TrainConfig(data=str(data3d), model="nnunet", plans=plans), info)
    assert cfg.model == "nnunet3d" and cfg.batch_size == 3 and run.spacing == (0.9, 1.0, 1.2)
    cfg, run = resolve_plan(TrainConfig(model="nnunet3d", plans=plans, batch_size=1,
                                        spacing="native"), info)
    assert cfg.batch_size == 1 and run.spacing is None and run.plan is not None
    cfg, run = resolve_plan(TrainConfig(model="unet3d", spacing="1,1,2"), info)
    assert cfg.batch_size == 2 and run.spacing == (1.0, 1.0, 2.0) and run.plan is None
    cfg, run = resolve_plan(TrainConfig(model="unet3d"), info)
    assert run.spacing is None
    with pytest.raises(InputError, match="plans configure the nnunet models"):
        resolve_plan(TrainConfig(model="unet3d", plans=plans), info)
    with pytest.raises(InputError, match="--spacing"):
        resolve_plan(TrainConfig(model="unet3d", spacing="1,2"), info)


def test_nnunet_on_2d_data_is_the_2d_configuration(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d2", spatial_dims=2, num_cases=3, seed=1)
    info = load_dataset(data)
    cfg, run = resolve_plan(TrainConfig(model="nnunet"), info)
    assert cfg.model == "nnunet2d" and run.plan is not None and run.plan.name == "2d"
    assert run.spacing == (1.0, 1.0)  # PNGs: 1 mm, nothing to resample


@pytest.mark.slow
def test_train_from_plans_then_predict_keeps_input_geometry(data3d: Path, tmp_path: Path) -> None:
    from medtoken.inference.predict import predict_cases
    from medtoken.train.checkpoint import load_checkpoint, load_model_checkpoint
    from medtoken.train.fit import fit

    cfg = TrainConfig(data=str(data3d), model="nnunet_test",
                      plans=str(_write_plans(tmp_path / "p.json")), batch_size=1,
                      steps_per_epoch=2, epochs=1, warmup_steps=1, val_every=100)
    fit(cfg, tmp_path / "run", device="cpu")
    state = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert state["dataset"]["target_spacing"] == [0.9, 1.0, 1.2]
    assert state["model_config"]["roi_size"] == [24, 16, 8]
    assert state["model_config"]["strides"] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    loaded = load_model_checkpoint(tmp_path / "run")
    info = load_dataset(data3d)
    cases = [info.case(c) for c in info.case_ids[:2]]
    report = predict_cases(loaded, cases, tmp_path / "pred")
    for written, case in zip(report.written, cases, strict=True):
        pred, pmeta = read_label(written)
        ref, rmeta = read_label(case.label)
        assert pred.shape == ref.shape
        np.testing.assert_array_equal(pmeta.affine, rmeta.affine)
