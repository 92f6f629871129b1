"""check_dataset reports every problem of a broken dataset in one pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medtoken.data.check import Problem, check_dataset
from medtoken.data.io import read_image, read_label, write_image, write_label
from medtoken.data.synthetic import make_synthetic_dataset


def _replace_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    old = nib.load(str(path))
    nib.save(nib.Nifti1Image(data, old.affine if affine is None else affine), str(path))


def _break_nnunet(root: Path) -> dict[str, str]:
    """Give cases 000..008 one problem each; returns case id -> expected message part."""
    images, labels = root / "imagesTr", root / "labelsTr"
    (labels / "case_000.nii.gz").unlink()
    lab, meta = read_label(labels / "case_001.nii.gz")
    _replace_nifti(labels / "case_001.nii.gz", lab[:-1].copy())
    lab, meta = read_label(labels / "case_002.nii.gz")
    lab[0, 0, 0] = 5
    write_label(lab, meta, labels / "case_002.nii.gz")
    img, meta = read_image(images / "case_003_0000.nii.gz")
    img[0, 1, 1, 1] = np.nan
    write_image(img, meta, images / "case_003_0000.nii.gz")
    write_image(np.full_like(img, 3.0), meta, images / "case_004_0000.nii.gz")
    data = (images / "case_005_0000.nii.gz").read_bytes()
    (images / "case_005_0000.nii.gz").write_bytes(data[: len(data) // 2])
    shifted = nib.load(str(labels / "case_006.nii.gz")).affine.copy()
    shifted[:3, 3] += 2.0
    _replace_nifti(labels / "case_006.nii.gz", read_label(labels / "case_006.nii.gz")[0], shifted)
    shutil.copy(images / "case_007_0000.nii.gz", images / "case_007_0001.nii.gz")
    (images / "case_008_0000.nii.gz").write_bytes(b"")
    return {"case_000": "label file not found", "case_001": "label shape",
            "case_002": "label values [5] are not in dataset.json labels",
            "case_003": "NaN or Inf", "case_004": "is constant",
            "case_005": "cannot read image", "case_006": "label affine differs",
            "case_007": "channel 0001 is not in channel_names", "case_008": "empty file"}


def test_clean_dataset_has_no_problems(tmp_path: Path) -> None:
    info, problems = check_dataset(make_synthetic_dataset(tmp_path / "d", num_cases=3))
    assert info is not None and len(info.cases) == 3 and problems == []


def test_every_problem_is_reported(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "broken (1)", num_cases=10)
    expected = _break_nnunet(root)
    info, problems = check_dataset(root)
    assert info is not None
    by_case: dict[str | None, list[str]] = {}
    for p in problems:
        by_case.setdefault(p.case_id, []).append(p.message)
    for case_id, part in expected.items():
        assert any(part in m for m in by_case.get(case_id, [])), (case_id, by_case.get(case_id))
    assert "case_009" not in by_case
    assert set(by_case) == set(expected)


def test_msd_duplicates_and_channel_count(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=3, layout="msd")
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append(dict(meta["training"][0]))
    meta["training"].append({"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"})
    meta["modality"] = {"0": "T1", "1": "T2"}
    (root / "dataset.json").write_text(json.dumps(meta))
    _, problems = check_dataset(root)
    messages = [str(p) for p in problems]
    assert any(m.startswith("case_000: ") and "duplicate case id" in m for m in messages)
    assert any(m.startswith("gone: ") and "image file not found" in m for m in messages)
    assert any(m.startswith("gone: ") and "label file not found" in m for m in messages)
    for case_id in ("case_000", "case_001", "case_002"):
        assert any(m.startswith(f"{case_id}: ") and "image has 1 channels, dataset.json names 2"
                   in m for m in messages)
    assert not any("numTraining" in m for m in messages)  # only checked without other problems


def test_numtraining_mismatch(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["numTraining"] = 5
    (root / "dataset.json").write_text(json.dumps(meta))
    _, problems = check_dataset(root)
    assert [p.message for p in problems] == ["numTraining is 5 but 2 cases were found"]


def test_folder2d_problems(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=4, layout="folder2d")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "case (0).png")
    (root / "masks" / "case (1).png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "orphan (9).png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "images" / "case (2).jpg")
    _, problems = check_dataset(root)
    messages = [str(p) for p in problems]
    assert any(m.startswith("case (0): ") and "label size (5, 5) differs from image size" in m
               for m in messages)
    assert any(m.startswith("case (1): ") and "no mask named case (1).png" in m for m in messages)
    assert any(m.startswith("orphan (9): ") and "mask has no image" in m for m in messages)
    assert any(m.startswith("case (2): ") and "duplicate case id" in m for m in messages)
    assert not any(m.startswith("case (3)") for m in messages)


def test_unloadable_layout(tmp_path: Path) -> None:
    info, problems = check_dataset(tmp_path)
    assert info is None and len(problems) == 1
    assert problems[0].case_id is None and "not a dataset" in problems[0].message


@pytest.mark.parametrize(("problem", "text"), [
    (Problem("case (1)", "/d/a.png", "bad"), "case (1): /d/a.png: bad"),
    (Problem(None, "/d/dataset.json", "bad"), "/d/dataset.json: bad"),
])
def test_problem_str(problem: Problem, text: str) -> None:
    assert str(problem) == text
