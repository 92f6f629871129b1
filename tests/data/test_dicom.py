"""DICOM series input: geometry equal to the same image as NIfTI, folders of series, bad series."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtoken.cli.main import main
from medtoken.data.check import check_dataset
from medtoken.data.datasets import list_input_cases, load_dataset
from medtoken.data.dicom import is_dicom_file, is_dicom_folder
from medtoken.data.io import read_image, read_label, write_label
from medtoken.utils.errors import InputError

from .dicom_series import oblique_sitk_image, write_dicom_series

sitk = pytest.importorskip("SimpleITK")


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2000, size=(5, 7, 6))  # (z, y, x)


def test_series_reads_as_the_same_image_written_as_nifti(tmp_path: Path) -> None:
    image = oblique_sitk_image(_volume())
    series = write_dicom_series(image, tmp_path / "series")
    sitk.WriteImage(image, str(tmp_path / "same.nii.gz"))
    arr, meta = read_image(series)
    ref, ref_meta = read_image(tmp_path / "same.nii.gz")
    assert arr.shape == ref.shape == (1, 6, 7, 5)  # (C, x, y, z) as nibabel
    assert np.array_equal(arr, ref)
    assert np.allclose(meta.affine, ref_meta.affine, atol=1e-4)
    assert np.allclose(meta.spacing, (0.8, 0.9, 2.5), atol=1e-5)
    assert meta.file_ending == ".nii.gz" and meta.source == str(series)


def test_labels_of_a_series_are_nifti_with_its_geometry(tmp_path: Path) -> None:
    series = write_dicom_series(oblique_sitk_image(_volume()), tmp_path / "series")
    _, meta = read_image(series)
    labels = np.zeros(meta.spatial_shape, dtype=np.uint8)
    labels[1:3, 2:4, 1:4] = 1
    out = tmp_path / f"series{meta.file_ending}"
    write_label(labels, meta, out)
    img = nib.load(out)
    assert np.allclose(img.affine, meta.affine, atol=1e-5)
    assert np.array_equal(np.asarray(img.dataobj), labels)


def test_detection(tmp_path: Path) -> None:
    series = write_dicom_series(oblique_sitk_image(_volume()), tmp_path / "series")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "x.nii.gz")
    assert is_dicom_file(next(series.iterdir())) and not is_dicom_file(tmp_path / "x.nii.gz")
    assert is_dicom_folder(series) and not is_dicom_folder(tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"skip": (2,)}, "missing slices or non-uniform slice positions"),
    ({"pixel_spacing": {3: (0.5, 0.5)}}, "inconsistent pixel spacing across slices"),
])
def test_bad_series_is_one_line_naming_the_folder(tmp_path: Path, kwargs: dict,
                                                  message: str) -> None:
    series = write_dicom_series(oblique_sitk_image(_volume()), tmp_path / "bad", **kwargs)
    with pytest.raises(InputError, match=message) as err:
        read_image(series)
    assert err.value.where == str(series) and "\n" not in str(err.value)


def test_two_series_in_one_folder_and_no_series(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_dicom_series(oblique_sitk_image(_volume(0)), folder, series_uid="1.2.3.4.1")
    write_dicom_series(oblique_sitk_image(_volume(1)), tmp_path / "b", series_uid="1.2.3.4.2")
    for i, f in enumerate(sorted((tmp_path / "b").iterdir())):
        f.rename(folder / f"other_{i}.dcm")
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_image(folder)
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no readable DICOM series"):
        read_image(tmp_path / "nothing")
    with pytest.raises(InputError, match="not as a label map"):
        read_label(folder)


@pytest.fixture
def series_folder(tmp_path: Path) -> Path:
    """Three cases, one DICOM series folder each."""
    root = tmp_path / "dicoms"
    for i, case in enumerate(("pat_a", "pat_b", "pat_c")):
        write_dicom_series(oblique_sitk_image(_volume(i)), root / case)
    return root


def test_folder_of_series_lists_cases_and_passes_check_dataset(
        series_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = list_input_cases(series_folder, 1)
    assert [c.case_id for c in cases] == ["pat_a", "pat_b", "pat_c"]
    assert cases[0].images == (series_folder / "pat_a",)
    assert [c.case_id for c in list_input_cases(series_folder / "pat_b", 1)] == ["pat_b"]
    info, problems = check_dataset(series_folder)
    assert problems == [] and info is not None and info.layout == "dicom"
    assert main(["check-dataset", str(series_folder)]) == 0
    assert "dicom layout, 3 cases, 3D, 1 channel(s), images only" in capsys.readouterr().out
    with pytest.raises(InputError, match="a training dataset needs labels"):
        load_dataset(series_folder)


def test_check_dataset_names_the_bad_series(series_folder: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (series_folder / "pat_b" / "slice_002.dcm").unlink()
    _, problems = check_dataset(series_folder)
    assert len(problems) == 1 and problems[0].case_id == "pat_b"
    assert "missing slices" in problems[0].message
    assert main(["check-dataset", str(series_folder)]) == 2
    assert "pat_b" in capsys.readouterr().err
