"""predict on DICOM series folders: same labels and geometry as the same image as NIfTI; a bad
series is named and the other cases are still predicted."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtoken.cli.main import main
from tests.data.dicom_series import oblique_sitk_image, write_dicom_series
from tests.inference.conftest import train_tiny_run

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny_run(tmp_path_factory, "predict_dicom", seed=3)


@pytest.mark.slow  # trains a one-step model (~7 s on a loaded CPU)
def test_dicom_input_predicts_like_nifti(trained: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data, run = trained
    dicoms, niftis = tmp_path / "dicoms", tmp_path / "niftis"
    niftis.mkdir()
    for i, image_file in enumerate(sorted((data / "imagesTr").iterdir())[:3]):
        volume = sitk.GetArrayFromImage(sitk.ReadImage(str(image_file)))  # (z, y, x)
        image = oblique_sitk_image(np.rint(volume * 100))  # int16 for DICOM
        case = f"pat_{i}"
        write_dicom_series(image, dicoms / case)
        sitk.WriteImage(image, str(niftis / f"{case}.nii.gz"))
    (dicoms / "pat_2" / "slice_003.dcm").unlink()  # a series with a missing slice
    out_d, out_n = tmp_path / "out_d", tmp_path / "out_n"
    assert main(["predict", "--model", str(run), "-i", str(dicoms), "-o", str(out_d),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pat_2" in err and "missing slices" in err
    assert sorted(p.name for p in out_d.iterdir()) == ["pat_0.nii.gz", "pat_1.nii.gz"]
    assert main(["predict", "--model", str(run), "-i", str(niftis), "-o", str(out_n),
                 "--no-progress"]) == 0
    for case in ("pat_0", "pat_1"):
        from_dicom = nib.load(out_d / f"{case}.nii.gz")
        from_nifti = nib.load(out_n / f"{case}.nii.gz")
        assert np.array_equal(np.asarray(from_dicom.dataobj), np.asarray(from_nifti.dataobj))
        assert np.allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
