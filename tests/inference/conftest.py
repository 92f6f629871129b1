"""Fixtures of the inference tests: tiny runs (fresh weights) on a synthetic 3D dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset
from tests.export.conftest import make_checkpoint


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two cases, two different tiny runs, a copy of the first, and a fold folder of both."""
    root = tmp_path_factory.mktemp("ensemble")
    data = make_synthetic_dataset(root / "data", num_cases=2, seed=3)
    torch.manual_seed(0)
    a = make_checkpoint(root / "folds" / "fold_0", "unet3d", data).parent
    torch.manual_seed(1)
    b = make_checkpoint(root / "folds" / "fold_1", "unet3d", data).parent
    shutil.copytree(a, root / "copy")
    inputs = root / "in"
    inputs.mkdir()
    for image in sorted((data / "imagesTr").iterdir()):
        shutil.copy(image, inputs / image.name.replace("_0000", ""))
    return {"data": data, "a": a, "b": b, "copy": root / "copy", "folds": root / "folds",
            "in": inputs}


def predict_cli(out: Path, inputs: Path, *models: Path | str, extra: tuple[str, ...] = ()) -> int:
    """``medtoken predict --model MODELS -i inputs -o out --no-progress EXTRA``."""
    return main(["predict", "--model", *map(str, models), "-i", str(inputs), "-o", str(out),
                 "--no-progress", *extra])




def train_tiny_run(tmp_path_factory: pytest.TempPathFactory, name: str,
                   seed: int) -> tuple[Path, Path]:
    """A 5-case synthetic 3D dataset and a one-step tiny ``unet3d`` run trained on it."""
    root = tmp_path_factory.mktemp(name)
    data = make_synthetic_dataset(root / "data", num_cases=5, seed=seed)
    run = root / "run"
    assert main(["train", "--data", str(data), "--model", "unet3d", "--out", str(run),
                 "--max-steps", "1", "--batch-size", "1", "--no-progress", "--roi-size", "16",
                 "16", "16", "--set", "channels=[4,8]", "train.steps_per_epoch=1",
                 "train.warmup_steps=1"]) == 0
    return data, run
