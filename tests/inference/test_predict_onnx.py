"""Prediction from an exported model equals prediction from its checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.export.runtime import ExportedModel
from tests.export.conftest import make_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3D dataset, a fresh tiny U-Net run, and its static- and dynamic-batch ONNX exports."""
    root = tmp_path_factory.mktemp("predict_onnx")
    data = make_synthetic_dataset(root / "data", spatial_dims=3, num_cases=3, seed=3)
    run = make_checkpoint(root / "run", "unet3d", data).parent
    paths = {"data": data, "run": run}
    for name, extra in (("static", []), ("dynamic", ["--dynamic-batch"])):
        paths[name] = root / f"{name}.onnx"
        assert main(["export", "--model", str(run), "-o", str(paths[name]),
                     "--exporter", "torchscript", *extra]) == 0
    return paths


def _predict(model: Path, images: Path, out: Path, *extra: str) -> list[np.ndarray]:
    assert main(["predict", "--model", str(model), "-i", str(images), "-o", str(out),
                 "--no-progress", *extra]) == 0
    return [np.asarray(nib.load(p).dataobj) for p in sorted(out.iterdir())]


@pytest.mark.parametrize("export", ["static", "dynamic"])
def test_onnx_predictions_equal_checkpoint_predictions(exported: dict[str, Path], export: str,
                                                       tmp_path: Path) -> None:
    images = exported["data"] / "imagesTr"
    reference = _predict(exported["run"], images, tmp_path / "torch")
    onnx = _predict(exported[export], images, tmp_path / "onnx")
    assert len(onnx) == len(reference) == 3
    agree = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(onnx, reference,
                                                                      strict=True)]))
    assert agree >= 0.9999
    assert len(np.unique(np.concatenate([r.ravel() for r in reference]))) > 1  # not trivial
    for image, pred in zip(sorted(images.iterdir()), sorted((tmp_path / "onnx").iterdir()),
                           strict=True):
        np.testing.assert_allclose(nib.load(image).affine, nib.load(pred).affine, atol=1e-5)


def test_fixed_batch_export_gets_one_window_per_call(exported: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    run = ExportedModel.__call__

    def record(self: ExportedModel, x: torch.Tensor) -> torch.Tensor:
        batches.append(x.shape[0])
        return run(self, x)

    monkeypatch.setattr(ExportedModel, "__call__", record)
    image = sorted((exported["data"] / "imagesTr").iterdir())[0]
    _predict(exported["static"], image, tmp_path / "a", "--tta")
    assert batches and set(batches) == {1}
    batches.clear()
    _predict(exported["dynamic"], image, tmp_path / "b")
    assert max(batches) == 2  # the checkpoint path's windows per call


def test_2d_onnx_prediction_writes_png(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=1, seed=4,
                                  layout="folder2d")
    run = make_checkpoint(tmp_path / "run", "unet2d", data).parent
    model = tmp_path / "m.onnx"
    assert main(["export", "--model", str(run), "-o", str(model), "--exporter",
                 "torchscript"]) == 0
    for source, out in ((run, tmp_path / "p1"), (model, tmp_path / "p2")):
        assert main(["predict", "--model", str(source), "-i", str(data / "images"), "-o",
                     str(out), "--no-progress"]) == 0
    first, second = (np.asarray(Image.open(next(p.iterdir()))) for p in
                     (tmp_path / "p1", tmp_path / "p2"))
    assert np.mean(first == second) >= 0.9999


@pytest.mark.parametrize(("damage", "message"), [
    ("no model", "m.onnx: no such exported model file"),
    ("missing", "m.onnx.json: missing"),
    ("field", "m.onnx.json: field 'roi_size' must be 3 positive integers"),
    ("window", "does not match the sidecar"),
    ("model", "m.onnx: cannot load the ONNX model"),
])
def test_bad_export_is_one_line_error(exported: dict[str, Path], tmp_path: Path, damage: str,
                                      message: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(exported["static"], model)
    sidecar = json.loads(Path(f"{exported['static']}.json").read_text())
    if damage == "field":
        sidecar["roi_size"] = [16, 16]
    if damage == "window":
        sidecar["roi_size"] = [32, 32, 32]
    if damage == "model":
        model.write_bytes(b"not an onnx file")
    if damage == "no model":
        model.unlink()
    if damage != "missing":
        Path(f"{model}.json").write_text(json.dumps(sidecar))
    image = sorted((exported["data"] / "imagesTr").iterdir())[0]
    assert main(["predict", "--model", str(model), "-i", str(image), "-o",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_compiled_prediction_equals_eager_and_exports_refuse_compile(
        exported: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import functools

    from medtoken.inference import predict
    from medtoken.utils.compile import maybe_compile

    calls: list[bool] = []

    def traced(fn, enabled: bool, **kw):  # dynamo without inductor: fast; record the call
        calls.append(enabled)
        return functools.partial(maybe_compile, backend="eager")(fn, enabled, **kw)

    monkeypatch.setattr(predict, "maybe_compile", traced)
    images = exported["data"] / "imagesTr"
    eager = _predict(exported["run"], images, tmp_path / "eager")
    compiled = _predict(exported["run"], images, tmp_path / "compiled", "--compile")
    assert calls == [True]  # once for all cases
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_array_equal(a, b)
    assert main(["predict", "--model", str(exported["static"]), "-i", str(images), "-o",
                 str(tmp_path / "x"), "--compile"]) == 2
    assert "--compile: applies to checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
