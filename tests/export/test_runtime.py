"""The exported-model runtime: what counts as an export, and the model-like interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medtoken.export import ExportOptions, export_model, is_exported, load_exported
from medtoken.models.checkpoint import load_model_checkpoint


def test_is_exported(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "traced.ts").write_bytes(b"x")
    (tmp_path / "traced.ts.json").write_text("{}")
    assert is_exported(tmp_path / "m.onnx") and is_exported(tmp_path / "M.ONNX")
    assert is_exported(tmp_path / "traced.ts")
    assert not is_exported(tmp_path / "model.pt") and not is_exported(tmp_path / "run")


@pytest.mark.parametrize("dynamic", [False, True])
def test_exported_model_acts_like_the_model(dynamic: bool, checkpoint: Callable[..., Path],
                                            tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    export_model(ExportOptions(model=checkpoint("unet2d"), output=out, exporter="torchscript",
                               dynamic_batch=dynamic))
    loaded = load_exported(out)
    model = load_model_checkpoint(checkpoint("unet2d")).model
    exported = loaded.model
    assert (exported.spatial_dims, exported.in_channels, exported.num_classes) == (2, 1, 3)
    assert exported.fixed_input_size == (32, 32)
    assert exported.max_batch_size == (None if dynamic else 1)
    assert loaded.dataset["normalization"] == {"schemes": ["zscore"], "ct_stats": [None]}
    assert loaded.state["family"] == "unet" and loaded.path == out
    x = torch.randn(2 if dynamic else 1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x), atol=1e-4, rtol=0)
