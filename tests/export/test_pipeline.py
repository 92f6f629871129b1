"""``export_model`` end to end: every family exports, verifies, and writes model + sidecar."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medtoken.export import ExportOptions, export_model, read_sidecar, sidecar_path
from medtoken.export.runtime import ExportedModel
from medtoken.utils.errors import InputError

Checkpoint = Callable[..., Path]

# the TorchScript-based exporter takes about a second for these; dynamo takes 5-30 s
FAST = ["unet3d", "unet2d", "dynunet3d", "monai_unetr3d", "scd_test", "scd2d_test"]


def _export(checkpoint: Path, out: Path, **options: object) -> dict:
    result = export_model(ExportOptions(model=checkpoint.parent, output=out, verify=True,
                                        **options))  # type: ignore[arg-type]
    assert result.path == out and result.sidecar_path == sidecar_path(out)
    assert json.loads(result.sidecar_path.read_text()) == result.sidecar
    return result.sidecar


def _assert_verified(sidecar: dict, names: list[str]) -> None:
    verification = sidecar["verification"]
    assert verification["passed"] and verification["skipped"] == []
    assert [c["name"] for c in verification["checks"][:-1]] == names
    assert verification["checks"][-1]["name"].endswith(" window")  # the real case
    assert verification["max_abs_diff"] <= 1e-4 and verification["label_disagreement"] <= 1e-4


@pytest.mark.parametrize("preset", FAST)
def test_fast_families_export_and_verify(preset: str, checkpoint: Checkpoint,
                                         tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    sidecar = _export(checkpoint(preset), out, exporter="torchscript")
    _assert_verified(sidecar, ["random batch 1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]
    assert sidecar["exporter"] == "torchscript" and sidecar["opset"] == 18
    assert sidecar["preset"] == preset and sidecar["batch_size"] == 1
    assert read_sidecar(out)["roi_size"] == sidecar["model_config"]["roi_size"]


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "exporter", "dynamic", "overrides"), [
    ("unet3d", "auto", False, {}),
    ("scd_test", "dynamo", True, {}),
    ("tokenseg_test", "auto", False, {}),  # VQ lookup, stable top-K, sparse decoder
    ("tokenseg2d_test", "auto", True, {}),
    ("tmunet3d_test", "torchscript", False, {}),
    ("tmunet_test", "torchscript", False, {"mstm.mlstm_mode": "recurrent"}),
    ("tmunet_test", "torchscript", False, {"mstm.mlstm_mode": "parallel"}),
])
def test_every_family_exports_and_verifies(preset: str, exporter: str, dynamic: bool,
                                           overrides: dict, checkpoint: Checkpoint,
                                           tmp_path: Path) -> None:
    sidecar = _export(checkpoint(preset, **overrides), tmp_path / "m.onnx", exporter=exporter,
                      dynamic_batch=dynamic)
    _assert_verified(sidecar, ["random batch 1", "random batch 3"] if dynamic
                     else ["random batch 1"])
    assert sidecar["exporter"] == ("dynamo" if exporter == "auto" else exporter)
    if preset.startswith("tmunet"):
        expected = overrides.get("mstm.mlstm_mode", "chunkwise")
        assert sidecar["variant"]["mlstm_mode"] == sidecar["model_config"]["mstm"]["mlstm_mode"]
        assert sidecar["variant"]["mlstm_mode"] == expected


def test_sidecar_holds_what_prediction_needs(checkpoint: Checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "d.onnx"
    sidecar = _export(checkpoint("dynunet3d"), out, exporter="torchscript", benchmark=3)
    assert sidecar["spacing"] == [1.0, 1.0, 1.5]  # the model's target spacing
    assert sidecar["roi_size"] == [16, 16, 16] and sidecar["default_overlap"] == 0.5
    assert sidecar["labels"] == {"0": "background", "1": "structure_a", "2": "structure_b"}
    assert sidecar["normalization"]["schemes"] == ["zscore"]
    assert sidecar["family"] == "dynunet" and sidecar["format"] == "onnx"
    assert sidecar["dynamic_batch"] is False and sidecar["model_file"] == "d.onnx"
    assert sidecar["source"]["checkpoint"].endswith("checkpoint_last.pt")
    timing = sidecar["benchmark"]
    assert timing["repeats"] == 3 and timing["threads"] == 1 and timing["eager_ms"] > 0
    assert timing["ratio"] == pytest.approx(timing["exported_ms"] / timing["eager_ms"])
    unet = _export(checkpoint("unet3d"), tmp_path / "u.onnx", exporter="torchscript")
    assert unet["spacing"] is None and unet["benchmark"] is None


def test_dynamic_batch_is_checked_at_other_batch_sizes(checkpoint: Checkpoint,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    sidecar = _export(checkpoint("unet3d"), out, exporter="torchscript", dynamic_batch=True)
    _assert_verified(sidecar, ["random batch 1", "random batch 3"])
    assert sidecar["dynamic_batch"] is True and sidecar["batch_size"] is None
    runtime = ExportedModel(out, sidecar)
    assert runtime.max_batch_size is None
    assert runtime(torch.zeros(5, 1, 16, 16, 16)).shape == (5, 3, 16, 16, 16)


@pytest.mark.slow
def test_verification_catches_a_baked_batch_size(checkpoint: Checkpoint,
                                                 tmp_path: Path) -> None:
    """The TorchScript-based exporter bakes TM-UNet's example batch size into a broadcast."""
    failed = r"verification failed.*the export failed to run: random batch 1"
    with pytest.raises(InputError, match=failed):
        _export(checkpoint("tmunet3d_test"), tmp_path / "m.onnx", exporter="torchscript",
                dynamic_batch=True)
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_writes_nothing(checkpoint: Checkpoint, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = ExportedModel.__call__
    monkeypatch.setattr(ExportedModel, "__call__", lambda self, x: run(self, x) + 1e-3)
    with pytest.raises(InputError, match=r"max abs diff 0\.001 \(limit 0\.0001\)") as err:
        _export(checkpoint("unet2d"), tmp_path / "m.onnx", exporter="torchscript")
    assert "nothing was written" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_auto_falls_back_when_dynamo_fails(checkpoint: Checkpoint, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("no translation for aten.something")

    monkeypatch.setattr("medtoken.export.onnx._export_dynamo", broken)
    with caplog.at_level(logging.WARNING):
        sidecar = _export(checkpoint("unet2d"), tmp_path / "m.onnx")
    assert sidecar["exporter"] == "torchscript"
    assert "dynamo exporter failed" in caplog.text
    monkeypatch.setattr("medtoken.export.onnx._export_torchscript", broken)
    with pytest.raises(RuntimeError, match=r"dynamo exporter: .*; torchscript exporter: "):
        _export(checkpoint("unet2d"), tmp_path / "n.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_verify_says_when_the_dataset_is_gone(tmp_path: Path, datasets: dict[int, Path]) -> None:
    from tests.export.conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "run", "unet2d", datasets[2])
    state = torch.load(ckpt, weights_only=True)
    state["dataset"]["root"] = str(tmp_path / "moved")
    torch.save(state, ckpt)
    sidecar = _export(ckpt, tmp_path / "m.onnx", exporter="torchscript")
    verification = sidecar["verification"]
    assert verification["passed"] and len(verification["checks"]) == 1
    assert "not found" in verification["skipped"][0]
