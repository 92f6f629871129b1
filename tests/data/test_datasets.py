"""Dataset layout detection and case listing (MSD, nnU-Net v2 raw, 2D folders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtoken.data.datasets import Case, list_input_cases, load_dataset
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.utils.errors import InputError
from tests.conftest import shared_dataset


def _edit_json(root: Path, **changes: object) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta))


def test_nnunet_layout(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "Dataset001_X", num_cases=3, num_channels=2)
    info = load_dataset(root)
    assert info.layout == "nnunet" and info.spatial_dims == 3
    assert info.case_ids == ("case_000", "case_001", "case_002")
    assert info.labels == {0: "background", 1: "structure_a", 2: "structure_b"}
    assert info.num_classes == 3 and info.num_channels == 2
    assert info.channel_names == ("MRI", "MRI1") and info.file_ending == ".nii.gz"
    case = info.case("case_001")
    assert [p.name for p in case.images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    assert case.label == root / "labelsTr" / "case_001.nii.gz"
    with pytest.raises(KeyError):
        info.case("nope")


def test_msd_layout_with_4d_images_and_folds(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "Task01", num_cases=3, layout="msd",
                                  num_channels=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][1]["fold"] = 1
    (root / "dataset.json").write_text(json.dumps(meta))
    info = load_dataset(root)
    assert info.layout == "msd" and info.spatial_dims == 3 and info.num_channels == 2
    assert info.labels == {0: "background", 1: "structure_a", 2: "structure_b"}
    assert all(len(c.images) == 1 for c in info.cases)
    assert info.folds == {"case_001": 1}


def test_folder2d_layout_with_spaces_and_parentheses(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "my data (2d)", spatial_dims=2, num_cases=3,
                                  layout="folder2d")
    info = load_dataset(root)
    assert info.layout == "folder2d" and info.spatial_dims == 2 and info.file_ending == ".png"
    assert info.case_ids == ("case (0)", "case (1)", "case (2)")
    assert info.channel_names == ("gray",) and info.num_classes == 3
    (root / "dataset.json").unlink()  # labels are then found by scanning the masks
    assert load_dataset(root).labels == {0: "background", 1: "class_1", 2: "class_2"}


def test_folder2d_binary_masks_and_rgb(tmp_path: Path) -> None:
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    for name in ("benign (1)", "malignant (12)"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}.png")
    info = load_dataset(tmp_path)
    assert info.labels == {0: "background", 1: "foreground"}
    assert info.channel_names == ("R", "G", "B")
    assert info.case("malignant (12)").label == tmp_path / "masks" / "malignant (12).png"


def test_hidden_and_underscore_files_are_ignored(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    for folder in ("imagesTr", "labelsTr"):
        (root / folder / "._case_000_0000.nii.gz").write_bytes(b"\x00junk")
        (root / folder / "._case_000.nii.gz").write_bytes(b"\x00junk")
        (root / folder / ".DS_Store").write_bytes(b"junk")
        (root / folder / "_notes.nii.gz").write_bytes(b"junk")
    assert load_dataset(root).case_ids == ("case_000", "case_001")


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a dataset: expected MSD"):
        load_dataset(tmp_path)
    with pytest.raises(InputError, match="dataset folder not found"):
        load_dataset(tmp_path / "missing")


def test_region_based_labels_are_rejected(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    _edit_json(root, labels={"background": 0, "whole": [1, 2], "core": 2})
    with pytest.raises(InputError, match="region-based labels are not supported"):
        load_dataset(root)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match=r"dataset.json: cannot read JSON"):
        load_dataset(root)


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_missing_label_names_the_file(tmp_path: Path, layout: str) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=3, layout=layout)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case_001.nii.gz: case case_001: label file not found"):
        load_dataset(root)


def test_msd_v1_style_listing_finds_channel_files(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2, num_channels=2)
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                for c in ("case_000", "case_001")]
    _edit_json(root, training=training, modality={"0": "T1", "1": "T2"})
    info = load_dataset(root)
    assert info.layout == "msd" and info.channel_names == ("T1", "T2")
    assert [p.name for p in info.case("case_001").images] == ["case_001_0000.nii.gz",
                                                              "case_001_0001.nii.gz"]


def test_list_input_cases_single_file_and_plain_folder(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=3,
                                  layout="folder2d")
    cases = list_input_cases(root / "images", num_channels=1)
    assert [c.case_id for c in cases] == ["case (0)", "case (1)", "case (2)"]
    assert all(c.label is None and len(c.images) == 1 for c in cases)
    single = list_input_cases(root / "images" / "case (1).png", num_channels=1)
    assert single == [Case("case (1)", (root / "images" / "case (1).png",), None)]


def test_list_input_cases_groups_nnunet_channels(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2, num_channels=2)
    cases = list_input_cases(root / "imagesTr", num_channels=2)
    assert [c.case_id for c in cases] == ["case_000", "case_001"]
    assert [p.name for p in cases[1].images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    with pytest.raises(InputError, match=r"'case_001' has channels 0000; expected 0000\.\.0001"):
        list_input_cases(root / "imagesTr", num_channels=2)


def test_list_input_cases_single_channel_names(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    assert [c.case_id for c in list_input_cases(root / "imagesTr", 1)] == ["case_000", "case_001"]
    one = list_input_cases(root / "imagesTr" / "case_000_0000.nii.gz", 1)
    assert one[0].case_id == "case_000"
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(root / "imagesTr" / "case_000_0000.nii.gz", plain / "scan a (1).nii.gz")
    (plain / ".hidden.nii.gz").write_bytes(b"")
    assert [c.case_id for c in list_input_cases(plain, 1)] == ["scan a (1)"]


def test_list_input_cases_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files found"):
        list_input_cases(tmp_path, 1)
    with pytest.raises(InputError, match="no such file or folder"):
        list_input_cases(tmp_path / "absent", 1)


@pytest.mark.realdata
def test_real_datasets_load() -> None:
    hippo = load_dataset(shared_dataset("msd_hippocampus"))
    assert hippo.layout == "msd" and len(hippo.cases) == 208
    assert hippo.num_classes == 3 and hippo.spatial_dims == 3 and hippo.num_channels == 1
    busi = load_dataset(shared_dataset("busi256"))
    assert busi.layout == "folder2d" and len(busi.cases) == 452 and busi.spatial_dims == 2
    assert busi.num_classes == 2
    assert all(c.label is not None and c.label.name == c.images[0].name for c in busi.cases)
