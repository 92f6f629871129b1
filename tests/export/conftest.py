"""Tiny checkpoints of every family (no training: fresh weights, real dataset facts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medtoken.config import to_dict
from medtoken.data.datasets import load_dataset
from medtoken.data.preprocess import plan_normalization
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import save_checkpoint
from medtoken.registry import create_model

# preset -> overrides giving a model that exports in seconds (window 16^3 / 32^2)
TINY: dict[str, dict[str, Any]] = {
    "unet3d": {"channels": [4, 8], "roi_size": [16, 16, 16]},
    "unet2d": {"channels": [4, 8], "roi_size": [32, 32]},
    "dynunet3d": {"roi_size": [16, 16, 16], "base_filters": 4, "max_filters": 8,
                  "max_stages": 3, "spacing": [1.0, 1.0, 1.5]},
    "monai_unetr3d": {"roi_size": [16, 16, 16], "hidden_size": 32, "mlp_dim": 64,
                      "num_heads": 2, "feature_size": 4},
    "scd_test": {}, "scd2d_test": {}, "tmunet3d_test": {},
    "tmunet_test": {"roi_size": [32, 32]}, "tokenseg_test": {}, "tokenseg2d_test": {},
}


def _spread_scores(model: torch.nn.Module) -> None:
    """Give SCD's fresh score networks distinct scores: at initialisation all tokens score
    log(1/2) to within float rounding, and top-k over such ties is not reproducible anywhere."""
    for name, param in model.named_parameters():
        if "score_net" in name:
            torch.nn.init.normal_(param, std=0.5)


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("export_data")
    return {3: make_synthetic_dataset(root / "d3", spatial_dims=3, num_cases=2, seed=1),
            2: make_synthetic_dataset(root / "d2", spatial_dims=2, num_cases=2, seed=2,
                                      layout="folder2d")}


def make_checkpoint(folder: Path, preset: str, data: Path, **overrides: Any) -> Path:
    """Write ``folder/checkpoint_last.pt`` for a fresh ``preset`` model on dataset ``data``."""
    info = load_dataset(data)
    fill = {"in_channels": info.num_channels, "num_classes": info.num_classes}
    model = create_model(preset, **{**fill, **TINY.get(preset, {}), **overrides}).eval()
    _spread_scores(model)
    facts = {"root": str(info.root), "layout": info.layout,
             "labels": {str(k): v for k, v in info.labels.items()},
             "channel_names": list(info.channel_names), "file_ending": info.file_ending,
             "spatial_dims": info.spatial_dims, "normalization": plan_normalization(info).to_dict()}
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "checkpoint_last.pt", {
        "family": type(model.config).family, "preset": preset,
        "model_config": to_dict(model.config), "model": model.state_dict(), "epoch": 1,
        "step": 2, "dataset": facts})
    return folder / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, datasets: dict[int, Path]):
    """``checkpoint(preset, **overrides)`` -> a checkpoint file (cached per arguments)."""
    cache: dict[str, Path] = {}

    def make(preset: str, **overrides: Any) -> Path:
        key = f"{preset}{sorted(overrides.items())}"
        if key not in cache:
            dims = 2 if "2d" in preset or preset == "tmunet_test" else 3
            folder = tmp_path_factory.mktemp(preset)
            cache[key] = make_checkpoint(folder, preset, datasets[dims], **overrides)
        return cache[key]

    return make
