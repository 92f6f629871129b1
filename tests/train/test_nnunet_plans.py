"""Training from nnU-Net plans: one plans reader (``planning.load_plan``), the model built from
a plan in medtoken's axis order, planning from the dataset, spacing, batch size, plans.json in
the run folder, and a tiny end-to-end run whose predictions keep each input's geometry."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medtoken.cli.main import main
from medtoken.data.datasets import load_dataset
from medtoken.data.io import read_label
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.nnunet import NNUNetConfig
from medtoken.planning import plans as planning
from medtoken.registry import create_model
from medtoken.train import nnunet_plans
from medtoken.train.config import TrainConfig
from medtoken.train.nnunet_plans import resolve_plan
from medtoken.utils.errors import InputError
from tests.conftest import shared_dataset

pytest.importorskip("dynamic_network_architectures")

FEW_SAMPLES = 3000  # foreground intensities sampled by the planner in tests (nnU-Net: 10e7)


@pytest.fixture(autouse=True)
def _fast_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan with few intensity samples: the statistics do not change the architecture."""
    monkeypatch.setattr(nnunet_plans, "plan_dataset", functools.partial(
        planning.plan_dataset, num_foreground_voxels=FEW_SAMPLES))


def _arch(dims: int) -> dict[str, Any]:
    first = [1] * dims
    second = [2] * dims if dims == 2 else [1, 2, 2]  # (z, y, x): z is not pooled
    return {"network_class_name":
            "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": 3, "features_per_stage": [4, 8, 16],
                "kernel_sizes": [[1] + [3] * (dims - 1), [3] * dims, [3] * dims],
                "strides": [first, second, [2] * dims], "n_conv_per_stage": [2, 2, 2],
                "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _write_plans(path: Path, channels: int = 1) -> Path:
    """A small nnUNetPlans.json as nnU-Net writes it (3D entries in (z, y, x) order, no
    transpose), without medtoken's own key."""
    common = {"normalization_schemes": ["ZScoreNormalization"] * channels,
              "use_mask_for_norm": [False] * channels}
    plans = {
        "dataset_name": "Dataset999_Synthetic", "plans_name": "nnUNetPlans",
        "transpose_forward": [0, 1, 2], "image_reader_writer": "SimpleITKIO",
        "original_median_shape_after_transp": [20, 20, 20],
        "foreground_intensity_properties_per_channel": {str(c): {} for c in range(channels)},
        "configurations": {
            "3d_fullres": {"batch_size": 3, "patch_size": [8, 16, 24],
                           "spacing": [1.2, 1.0, 0.9], "batch_dice": False,
                           "architecture": _arch(3), **common},
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "batch_size": 5},
            "2d": {"batch_size": 12, "patch_size": [32, 32], "spacing": [1.0, 0.9],
                   "batch_dice": True, "architecture": _arch(2), **common},
        }}
    path.write_text(json.dumps(plans))
    return path


def _anisotropic_dataset(root: Path) -> Path:
    """4 cases of 4 mm slices along medtoken's axis 0 (nnU-Net's axis 2, so the planner's
    transpose_forward moves it first) and 1 mm pixels; shapes differ per axis."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(4):
        shape = (12, 40, 56)  # medtoken (x, y, z); x is the coarse axis
        affine = np.diag([4.0, 1.0, 1.0, 1.0])
        labels = np.zeros(shape, np.uint8)
        labels[3:-3, 10:26, 14:40] = 1
        image = rng.normal(100, 20, shape).astype(np.float32)
        image[labels > 0] += 50
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / f"c_{i:03d}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(labels, affine), str(root / "labelsTr" / f"c_{i:03d}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2"}, "labels": {"background": 0, "a": 1}, "numTraining": 4,
        "file_ending": ".nii.gz"}))
    return root


@pytest.fixture(scope="module")
def data3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("nn") / "d", num_cases=5, seed=4)


def test_plans_from_medtoken_plan_give_the_model_its_axes(tmp_path: Path) -> None:
    """``medtoken plan`` -> ``--plans`` -> model: each axis's patch, stride and kernel land on the
    medtoken axis they belong to (nnU-Net's order is mapped back exactly once)."""
    data = _anisotropic_dataset(tmp_path / "Dataset010_Aniso")
    out = tmp_path / "nnUNetPlans.json"
    assert main(["plan", str(data), "-o", str(out), "--foreground-samples",
                 str(FEW_SAMPLES)]) == 0
    written = json.loads(out.read_text())
    conf = written["configurations"]["3d_fullres"]
    assert written["transpose_forward"] == [2, 0, 1]  # plan axes: (x, z, y) in medtoken terms
    cfg, run = resolve_plan(TrainConfig(data=str(data), model="nnunet", plans=str(out)),
                            load_dataset(data))
    assert run.plan is not None and cfg.batch_size == conf["batch_size"]
    fields = NNUNetConfig.fields_from_plan(run.plan)
    patch = conf["patch_size"]
    assert fields["roi_size"] == [patch[0], patch[2], patch[1]]
    kw = conf["architecture"]["arch_kwargs"]
    for ours, theirs in zip(fields["strides"], kw["strides"], strict=True):
        assert ours == [theirs[0], theirs[2], theirs[1]]
    assert fields["strides"][1] == [1, 2, 2]  # the 4 mm axis 0 is not pooled first
    assert fields["kernel_sizes"][0] == [1, 3, 3]  # nor convolved across at full resolution
    assert run.spacing == (4.0, 1.0, 1.0)
    model = create_model("nnunet3d", in_channels=1, num_classes=2, **fields)
    assert model.config.roi_size == tuple(fields["roi_size"])
    assert all(r % m == 0 for r, m in zip(fields["roi_size"], model.input_multiple,
                                          strict=True))


def test_hand_written_plans_are_read_in_array_axis_order(data3d: Path, tmp_path: Path) -> None:
    _, run = resolve_plan(TrainConfig(model="nnunet", plans=str(_write_plans(
        tmp_path / "p.json"))), load_dataset(data3d))
    assert run.plan is not None and run.plan.configuration == "3d_fullres"
    fields = NNUNetConfig.fields_from_plan(run.plan)
    assert fields["roi_size"] == [24, 16, 8] and run.spacing == (0.9, 1.0, 1.2)
    assert fields["strides"] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    assert fields["kernel_sizes"][0] == [3, 3, 1]
    assert fields["batch_dice"] is False and fields["features_per_stage"] == [4, 8, 16]


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
    cfg = TrainConfig(model="nnunet", plans=str(path), configuration=change.get("configuration"))
    with pytest.raises(InputError, match=match):
        resolve_plan(cfg, load_dataset(data3d))


def test_labels_of_a_dataset_json_beside_the_plans_must_match(data3d: Path,
                                                              tmp_path: Path) -> None:
    path = _write_plans(tmp_path / "p.json")
    cfg, info = TrainConfig(model="nnunet", plans=str(path)), load_dataset(data3d)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1,
                                                                  "b": 2}}))
    resolve_plan(cfg, info)  # synthetic data: labels 0, 1, 2
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
    with pytest.raises(InputError, match=r"labels \[0, 1\]"):
        resolve_plan(cfg, info)


def test_missing_configuration_names_the_known_ones(data3d: Path, tmp_path: Path) -> None:
    path = _write_plans(tmp_path / "p.json")
    plans = json.loads(path.read_text())
    del plans["configurations"]["3d_fullres"], plans["configurations"]["3d_cascade_fullres"]
    path.write_text(json.dumps(plans))
    with pytest.raises(InputError, match="no configuration '3d_fullres'; the plans have 2d"):
        resolve_plan(TrainConfig(model="nnunet", plans=str(path)), load_dataset(data3d))


def test_resolve_picks_preset_batch_size_and_spacing(data3d: Path, tmp_path: Path) -> None:
    info = load_dataset(data3d)
    plans = str(_write_plans(tmp_path / "p.json"))
    cfg, run = resolve_plan(TrainConfig(data=str(data3d), model="nnunet", plans=plans), info)
    assert cfg.model == "nnunet3d" and cfg.batch_size == 3 and run.spacing == (0.9, 1.0, 1.2)
    assert run.facts()["plans"] == {"configuration": "3d_fullres", "source": plans}
    cfg, run = resolve_plan(TrainConfig(model="nnunet3d", plans=plans, batch_size=1,
                                        spacing="native"), info)
    assert cfg.batch_size == 1 and run.spacing is None and run.plan is not None
    cfg, run = resolve_plan(TrainConfig(model="unet3d", spacing="1,1,2"), info)
    assert cfg.batch_size == 2 and run.spacing == (1.0, 1.0, 2.0) and run.plan is None
    cfg, run = resolve_plan(TrainConfig(model="unet3d"), info)
    assert run.spacing is None and run.plans is None
    with pytest.raises(InputError, match="plans configure the nnunet models"):
        resolve_plan(TrainConfig(model="unet3d", plans=plans), info)
    with pytest.raises(InputError, match="--spacing"):
        resolve_plan(TrainConfig(model="unet3d", spacing="1,2"), info)


def test_without_plans_the_dataset_is_planned(data3d: Path) -> None:
    info = load_dataset(data3d)
    expected, _ = planning.plan_dataset(info, num_foreground_voxels=FEW_SAMPLES)
    conf = expected["configurations"]["3d_fullres"]
    cfg, run = resolve_plan(TrainConfig(model="nnunet"), info)
    assert run.plans == expected and run.source is None
    assert run.plan is not None and run.plan.configuration == "3d_fullres"
    assert cfg.batch_size == conf["batch_size"]
    roi = NNUNetConfig.fields_from_plan(run.plan)["roi_size"]
    assert roi == conf["patch_size"][::-1]  # no transpose here
    assert run.facts()["plans"]["source"] == "planned from the dataset"
    cfg, run = resolve_plan(TrainConfig(model="unet3d", spacing="plan"), info)
    assert run.plan is None and run.spacing == tuple(conf["spacing"][::-1])


def test_nnunet_on_2d_data_is_the_2d_configuration(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d2", spatial_dims=2, num_cases=3, seed=1)
    cfg, run = resolve_plan(TrainConfig(model="nnunet"), load_dataset(data))
    assert cfg.model == "nnunet2d" and run.plan is not None and run.plan.configuration == "2d"
    assert run.spacing == (1.0, 1.0)  # PNGs: 1 mm, nothing to resample
    assert run.plans is not None and list(run.plans["configurations"]) == ["2d"]


@pytest.mark.slow
def test_train_from_plans_then_predict_keeps_input_geometry(data3d: Path, tmp_path: Path) -> None:
    from medtoken.inference.predict import predict_cases
    from medtoken.models.checkpoint import load_checkpoint, load_model_checkpoint
    from medtoken.train.fit import fit

    plans = _write_plans(tmp_path / "p.json")
    cfg = TrainConfig(data=str(data3d), model="nnunet_test", plans=str(plans), batch_size=1,
                      steps_per_epoch=2, epochs=1, warmup_steps=1, val_every=100)
    fit(cfg, tmp_path / "run", device="cpu")
    assert json.loads((tmp_path / "run" / "plans.json").read_text()) == json.loads(
        plans.read_text())
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


@pytest.mark.slow
@pytest.mark.realdata
def test_hippocampus_is_planned_as_nnunet_plans_it() -> None:
    """The model ``train --model nnunet`` builds for Hippocampus is nnU-Net's 3d_fullres plan."""
    info = load_dataset(shared_dataset("msd_hippocampus"))
    cfg, run = resolve_plan(TrainConfig(model="nnunet"), info)
    assert run.plan is not None and cfg.batch_size == 7 and run.spacing == (1.0, 1.0, 1.0)
    fields = NNUNetConfig.fields_from_plan(run.plan)
    assert fields["roi_size"] == [40, 56, 40]
    assert fields["features_per_stage"] == [32, 64, 128, 256]
    assert fields["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]


def test_only_configs_built_from_plans_take_one() -> None:
    """train/ asks the config (``uses_plan``, ``plan_presets``), not the family name."""
    from medtoken.models.base import ModelConfig
    from medtoken.train.nnunet_plans import plan_preset

    assert NNUNetConfig.uses_plan and not ModelConfig.uses_plan
    assert plan_preset("nnunet", 3) == "nnunet3d" and plan_preset("nnunet", 2) == "nnunet2d"
    assert plan_preset("nnunet_test", 3) == "nnunet_test" and plan_preset("unet3d", 3) == "unet3d"
    with pytest.raises(NotImplementedError, match="take no nnU-Net plan"):
        ModelConfig.fields_from_plan(None)  # type: ignore[arg-type]
