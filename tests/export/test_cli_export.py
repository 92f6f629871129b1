"""``medtoken export`` on the command line: output, and one-line errors for bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medtoken.cli.main import main


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_prints_verification_and_timing(checkpoint: Callable[..., Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(checkpoint("unet2d").parent), "-o", str(out),
                 "--verify", "--benchmark", "2", "--exporter", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert "exported unet (unet2d), window 32x32, batch 1, onnx via torchscript" in printed
    assert "verify random batch 1: max abs diff" in printed and " window: max abs diff" in printed
    assert "verified: max abs diff" in printed and "median of 2" in printed
    assert _files(tmp_path) == ["m.onnx", "m.onnx.json"]


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "tflite"], "--format: must be one of onnx, torchscript"),
    (["--exporter", "magic"], "--exporter: must be one of auto"),
    (["--opset", "11"], "--opset: must be >= 17"),
    (["--threads", "0"], "--threads: must be >= 1"),
    (["--benchmark", "-1"], "--benchmark: must be >= 0"),
])
def test_bad_options(args: list[str], message: str, checkpoint: Callable[..., Path],
                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    assert main(["export", "--model", str(checkpoint("unet2d")), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert _files(out.parent) == []


def test_bad_paths(checkpoint: Callable[..., Path], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = checkpoint("unet2d")
    before = _files(ckpt.parent)
    cases = [
        (tmp_path / "nothing_here", tmp_path / "m.onnx", "no such checkpoint file or run folder"),
        (tmp_path, tmp_path / "m.onnx", "no checkpoint_best.pt or checkpoint_last.pt"),
        (ckpt, tmp_path / "missing" / "m.onnx", "does not exist"),
        (ckpt.parent, ckpt, "would overwrite the checkpoint"),
        (ckpt, ckpt.parent, "is a folder"),
    ]
    for model, out, message in cases:
        assert main(["export", "--model", str(model), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("medtoken: error: ") and message in err, err
        assert len(err.splitlines()) == 1
    assert _files(ckpt.parent) == before and _files(tmp_path) == []
