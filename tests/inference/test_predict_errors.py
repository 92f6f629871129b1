"""Prediction over a folder with bad cases: the good ones are predicted, each bad one is named,
nothing is written for it, and the command exits non-zero."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medtoken.cli.main import main
from tests.inference.conftest import train_tiny_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny_run(tmp_path_factory, "predict_errors", seed=7)


def _break(folder: Path, case: str, how: str) -> None:
    """Replace ``{case}.nii.gz`` in ``folder`` by a bad file (or add one)."""
    path = folder / f"{case}.nii.gz"
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "two channels":
        img = nib.load(str(path))
        volume = np.asarray(img.dataobj)
        nib.save(nib.Nifti1Image(np.stack([volume, volume], -1), img.affine), str(path))
    elif how == "2D":
        path.unlink()
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / f"{case}.png")


@pytest.mark.parametrize(("how", "message"), [
    ("truncated", "cannot read image"),
    ("empty", "empty file (0 bytes)"),
    ("two channels", "has 2 channel(s); the model expects 1"),
    ("2D", "is 2D; the model is 3D"),
])
def test_one_bad_case_is_named_and_the_others_predicted(
        how: str, message: str, trained: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, run = trained
    inputs = tmp_path / "in"
    inputs.mkdir()
    for image in sorted((data / "imagesTr").iterdir()):  # case_000_0000 -> case_000
        shutil.copy(image, inputs / image.name.replace("_0000", ""))
    _break(inputs, "case_002", how)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(run), "-i", str(inputs), "-o", str(out),
                 "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        f"case_00{i}.nii.gz" for i in (0, 1, 3, 4)]  # nothing (not even a temporary) for 002
    for good in (0, 1, 3, 4):
        assert nib.load(str(out / f"case_00{good}.nii.gz")).shape == \
            nib.load(str(inputs / f"case_00{good}.nii.gz")).shape
    err = captured.err.strip().splitlines()
    assert any("case_002" in line and message in line for line in err), err
    assert err[-1] == "medtoken: error: 1 case(s) could not be predicted: case_002"
    assert "wrote 4 prediction(s)" in captured.out and "Traceback" not in captured.err
