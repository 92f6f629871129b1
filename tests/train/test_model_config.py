"""The run's model config: preset -> dataset facts -> the user's overrides (the user wins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medtoken.cli.main import main
from medtoken.data.datasets import DatasetInfo, load_dataset
from medtoken.data.preprocess import plan_normalization
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import load_checkpoint
from medtoken.registry import get_config
from medtoken.train.config import TrainConfig
from medtoken.train.data import LoadedCase, derive_roi_size, load_cases
from medtoken.train.model_config import resolve_model_config
from medtoken.utils.errors import InputError


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("cfg") / "d", num_cases=5, seed=5)


@pytest.fixture(scope="module")
def loaded(data: Path) -> tuple[DatasetInfo, list[LoadedCase]]:
    info = load_dataset(data)
    ids = [c.case_id for c in info.cases]
    return info, load_cases(info, ids, plan_normalization(info, ids))


def _resolve(loaded, model: str, overrides: dict | None = None, roi=None):
    info, cases = loaded
    cfg = TrainConfig(data="d", model=model, roi_size=roi)
    return resolve_model_config(cfg, info, dict(overrides or {}), cases)


def _train(data: Path, run: Path, *sets: str) -> int:
    return main(["train", "--data", str(data), "--model", "unet3d", "--out", str(run),
                 "--max-steps", "1", "--batch-size", "1", "--no-progress", "--set",
                 "channels=[4,8]", *sets, "train.steps_per_epoch=1", "train.val_every=100",
                 "train.warmup_steps=1"])


def test_set_roi_size_and_num_classes_reach_the_run(data: Path, tmp_path: Path) -> None:
    """Issue 16: these crashed with 'got multiple values for keyword argument'."""
    assert load_dataset(data).num_classes == 3
    assert _train(data, tmp_path / "run", "roi_size=[16,16,8]", "num_classes=3") == 0
    model = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]
    assert (model["roi_size"], model["num_classes"]) == ([16, 16, 8], 3)
    state = load_checkpoint(tmp_path / "run")
    assert state["model_config"]["roi_size"] == [16, 16, 8]


def test_num_classes_contradicting_the_labels_is_refused(data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert _train(data, tmp_path / "run", "num_classes=4") == 2
    err = capsys.readouterr().err
    assert "num_classes=4 contradicts the dataset (3 classes" in err
    assert not (tmp_path / "run").exists()


def test_dataset_facts_fill_the_preset(loaded) -> None:
    info, cases = loaded
    cfg = _resolve(loaded, "dynunet3d")
    assert (cfg.in_channels, cfg.num_classes) == (info.num_channels, info.num_classes)
    median = np.median(np.array([c.meta.spacing for c in cases]), axis=0)
    assert cfg.spacing == tuple(round(float(s), 4) for s in median)
    preset = get_config("dynunet3d")
    multiple = (16, 32, 32)  # the preset's DynUNet strides
    assert cfg.roi_size == derive_roi_size(cases, preset.roi_size, multiple)


def test_user_overrides_win_over_dataset_facts(loaded) -> None:
    cfg = _resolve(loaded, "dynunet3d", {"spacing": [2.0, 2.0, 2.0]}, roi=(32, 64, 64))
    assert (cfg.spacing, cfg.roi_size) == ((2.0, 2.0, 2.0), (32, 64, 64))
    assert _resolve(loaded, "unet3d", {"roi_size": [8, 16, 24]}).roi_size == (8, 16, 24)


def test_fixed_input_models_keep_their_window(loaded) -> None:
    assert _resolve(loaded, "scd_test").roi_size == get_config("scd_test").roi_size


def test_roi_size_option_and_set_roi_size_must_agree(loaded) -> None:
    same = _resolve(loaded, "unet3d", {"roi_size": [16, 16, 16]}, roi=(16, 16, 16))
    assert same.roi_size == (16, 16, 16)
    with pytest.raises(InputError, match="contradicts --set roi_size"):
        _resolve(loaded, "unet3d", {"roi_size": [16, 16, 16]}, roi=(8, 8, 8))


def test_in_channels_contradicting_the_images_is_refused(loaded) -> None:
    with pytest.raises(InputError, match="in_channels=2 contradicts the dataset"):
        _resolve(loaded, "unet3d", {"in_channels": 2})
    assert _resolve(loaded, "unet3d", {"in_channels": 1}).in_channels == 1
