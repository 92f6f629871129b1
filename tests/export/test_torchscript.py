"""TorchScript export: traced, frozen, verified against eager PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medtoken.export import ExportOptions, export_model, load_exported
from medtoken.export.torchscript import load_torchscript
from medtoken.models.checkpoint import load_model_checkpoint


@pytest.mark.parametrize("preset", [
    "unet3d", "scd_test", "tokenseg2d_test"])
def test_torchscript_export_verifies(preset: str, checkpoint: Callable[..., Path],
                                     tmp_path: Path) -> None:
    out = tmp_path / "model.ts"
    result = export_model(ExportOptions(model=checkpoint(preset), output=out,
                                        format="torchscript", verify=True))
    sidecar = result.sidecar
    assert sidecar["format"] == "torchscript" and sidecar["exporter"] == "jit.trace"
    assert sidecar["opset"] is None and sidecar["verification"]["passed"]
    module = load_torchscript(out)
    model = load_model_checkpoint(checkpoint(preset)).model
    x = torch.randn(1, model.in_channels, *model.config.roi_size)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), atol=1e-4, rtol=0)
    loaded = load_exported(out)  # prediction wraps it like an ONNX file
    assert loaded.model.max_batch_size == 1 and loaded.model(x).shape == model(x).shape
