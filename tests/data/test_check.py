"""check_dataset reports every problem of a broken dataset in one pass."""

from __future__ import annotations

import gzip
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


def _msd_with_every_problem(root: Path) -> dict[str, list[str]]:
    """An MSD dataset in which cases 000..017 each have one or two problems (018, 019 are
    clean); returns case id -> expected message parts."""
    images, labels = root / "imagesTr", root / "labelsTr"
    meta = json.loads((root / "dataset.json").read_text())

    def image(i: int) -> Path:
        return images / f"case_{i:03d}.nii.gz"

    def label(i: int) -> Path:
        return labels / f"case_{i:03d}.nii.gz"

    label(0).unlink()
    image(1).unlink()
    _replace_nifti(label(2), read_label(label(2))[0][:-1].copy())
    shifted = nib.load(str(label(3))).affine.copy()
    shifted[:3, 3] += 2.0
    _replace_nifti(label(3), read_label(label(3))[0], shifted)
    lab, lab_meta = read_label(label(4))
    lab[0, 0, 0] = 7
    write_label(lab, lab_meta, label(4))
    for i, value in ((5, np.nan), (6, np.inf)):
        img, img_meta = read_image(image(i))
        img[0, 1, 1, 1] = value
        write_image(img, img_meta, image(i))
    for i, value in ((7, 0.0), (8, 3.0)):  # empty (all zero) and constant
        img, img_meta = read_image(image(i))
        write_image(np.full_like(img, value), img_meta, image(i))
    data = image(9).read_bytes()
    image(9).write_bytes(data[: len(data) // 2])  # truncated
    image(10).write_bytes(b"\x1f\x8b\x08 not a NIfTI")  # unreadable
    image(11).write_bytes(b"")  # empty file
    _replace_nifti(image(12), np.zeros((0, 8, 8), np.float32))  # no voxels
    meta["training"].append(dict(meta["training"][13]))  # duplicate case id
    volume = nib.load(str(image(14)))
    _replace_nifti(image(14), np.stack([np.asarray(volume.dataobj)] * 2, -1))  # 2 channels
    # a 2D image whose mask has another size
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(images / "case_015.png")
    Image.fromarray(np.ones((5, 5), np.uint8)).save(labels / "case_015.png")
    meta["training"][15] = {"image": "./imagesTr/case_015.png",
                            "label": "./labelsTr/case_015.png"}
    _replace_nifti(label(16), read_label(label(16))[0].astype(np.float32) + 0.5)
    data = label(17).read_bytes()
    label(17).write_bytes(data[: len(data) // 3])  # truncated label
    (root / "dataset.json").write_text(json.dumps(meta))
    return {"case_000": ["label file not found"], "case_001": ["image file not found"],
            "case_002": ["label shape"], "case_003": ["label affine differs"],
            "case_004": ["label values [7] are not in dataset.json labels"],
            "case_005": ["1 NaN or Inf"], "case_006": ["1 NaN or Inf"],
            "case_007": ["is constant (every voxel is 0)"],
            "case_008": ["is constant (every voxel is 3)"],
            "case_009": ["cannot read image"], "case_010": ["cannot read image"],
            "case_011": ["empty file (0 bytes)"], "case_012": ["cannot read image"],
            "case_013": ["duplicate case id"],
            "case_014": ["image has 2 channels, dataset.json names 1"],
            "case_015": ["label size (5, 5) differs from image size (8, 8)",
                         "image is 2D, the dataset is 3D"],
            "case_016": ["label values must be integers"], "case_017": ["cannot read image"]}


def test_one_pass_reports_every_kind_of_problem_with_case_ids(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=20, layout="msd", seed=2)
    expected = _msd_with_every_problem(root)
    _, problems = check_dataset(root)
    by_case: dict[str | None, list[str]] = {}
    for p in problems:
        by_case.setdefault(p.case_id, []).append(str(p))
    for case_id, parts in expected.items():
        for part in parts:
            assert any(part in m for m in by_case.get(case_id, [])), (case_id, part, by_case)
    assert set(by_case) == set(expected)  # case_018 and case_019 are clean
    assert not any("constant" in m for m in by_case["case_015"])


def test_cli_lists_every_problem_and_train_refuses_the_dataset(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medtoken.cli.main import main

    root = make_synthetic_dataset(tmp_path / "d", num_cases=20, layout="msd", seed=2)
    expected = _msd_with_every_problem(root)
    assert main(["check-dataset", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"problem(s) found in {root}")
    for case_id in expected:
        assert any(line.startswith(f"medtoken: error: {case_id}: ") for line in err), case_id
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--model", "unet3d", "--out", str(run),
                 "--max-steps", "1", "--no-progress"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "case_000: label file not found (and " in line
    assert not run.exists()


def _single_problem(root: Path, kind: str) -> str:
    """Give case_001 of an nnU-Net dataset one pixel-level problem; returns the message part."""
    if kind == "label value":
        lab, meta = read_label(root / "labelsTr" / "case_001.nii.gz")
        lab[0, 0, 0] = 7
        write_label(lab, meta, root / "labelsTr" / "case_001.nii.gz")
        return "label values [7]"
    shifted = nib.load(str(root / "labelsTr" / "case_001.nii.gz")).affine.copy()
    shifted[:3, 3] += 2.0
    path = root / "labelsTr" / "case_001.nii.gz"
    _replace_nifti(path, read_label(path)[0], shifted)
    return "label affine differs"


@pytest.mark.parametrize("kind", ["label value", "affine"])
def test_train_refuses_pixel_level_problems_before_training(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medtoken.cli.main import main

    root = make_synthetic_dataset(tmp_path / "d", num_cases=5, seed=3)
    part = _single_problem(root, kind)
    run = tmp_path / "run"
    code = main(["train", "--data", str(root), "--model", "unet3d", "--out", str(run),
                 "--max-steps", "1", "--batch-size", "1", "--no-progress", "--roi-size",
                 "16", "16", "16", "--set", "channels=[4,8]", "train.steps_per_epoch=1",
                 "--fold", "all"])
    err = capsys.readouterr().err
    assert code == 2 and "case_001" in err and part in err
    assert not (run / "checkpoint_last.pt").exists()


def _zero_pixdim(path: Path, axis: int) -> None:
    """Set ``pixdim[axis + 1]`` of a .nii.gz file to 0 in its bytes (nibabel would repair it)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    offset = 76 + 4 * (axis + 1)  # pixdim: float32[8] at byte 76 of the NIfTI-1 header
    raw[offset:offset + 4] = bytes(4)  # 0.0 in either byte order
    path.write_bytes(gzip.compress(bytes(raw)))


def test_zero_voxel_size_is_reported(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=3)
    _zero_pixdim(root / "imagesTr" / "case_001_0000.nii.gz", 1)
    _zero_pixdim(root / "labelsTr" / "case_001.nii.gz", 1)
    _, problems = check_dataset(root)
    messages = [str(p) for p in problems]
    assert any(m.startswith("case_001: ") and "voxel size" in m and "zero" in m
               for m in messages), messages
    assert not any(m.startswith(("case_000", "case_002")) for m in messages)


def test_zero_affine_column_with_nonzero_pixdim_is_reported(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    path = root / "imagesTr" / "case_000_0000.nii.gz"
    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[:3, 2] = 0.0
    header = img.header.copy()
    header.set_qform(None, code=0)
    header.set_sform(affine, code=1)  # pixdim stays 1; the sform has a zero column
    broken = nib.Nifti1Image(np.asarray(img.dataobj), None, header=header)
    nib.save(broken, str(path))
    _, problems = check_dataset(root)
    assert any(p.case_id == "case_000" and "affine has a zero voxel size on axis [2]"
               in p.message for p in problems), [str(p) for p in problems]


def test_label_with_a_fourth_axis_is_reported(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    path = root / "labelsTr" / "case_001.nii.gz"
    labels = read_label(path)[0]
    _replace_nifti(path, labels[..., None])  # (X, Y, Z) -> (X, Y, Z, 1)
    _, problems = check_dataset(root)
    assert [(p.case_id, "label map has 4 axes" in p.message) for p in problems] == [
        ("case_001", True)]
