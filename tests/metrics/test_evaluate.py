"""Folder evaluation end to end on tiny NIfTI and PNG files written in tmp_path."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import monai
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medtoken.metrics.case import METRIC_NAMES, compute_case_metrics
from medtoken.metrics.evaluate import _both_empty_metrics, evaluate_folder
from medtoken.utils.errors import InputError

SPACING = (1.0, 1.0, 3.0)


def _save_nifti(path: Path, arr: np.ndarray, spacing: tuple[float, ...] = SPACING) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.astype(np.uint8), np.diag([*spacing, 1.0])), path)


def _save_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)


def _strict_json(path: Path) -> dict:
    def reject(token: str) -> None:
        raise AssertionError(f"non-strict JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture
def nifti_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Three 6x6x4 cases; label 2 only in case_b. Hand-computed Dice per case below."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    ref = np.zeros((6, 6, 4), dtype=np.uint8)
    ref[1:3, 1:3, 1] = 1  # 4 voxels
    # case_a: perfect label 1 -> Dice 1
    _save_nifti(gt / "case_a.nii.gz", ref)
    _save_nifti(pred / "case_a.nii.gz", ref)
    # case_b: label 1 shrunk to 2 voxels (TP 2, FN 2 -> Dice 4/6); label 2 FP only (ref empty)
    p = ref.copy()
    p[2, 1:3, 1] = 0
    p[5, 5, 3] = 2
    _save_nifti(gt / "case_b.nii.gz", ref)
    _save_nifti(pred / "case_b.nii.gz", p)
    # case_c: both empty -> label 1 NaN (left out of the nanmean)
    _save_nifti(gt / "case_c.nii.gz", np.zeros_like(ref))
    _save_nifti(pred / "case_c.nii.gz", np.zeros_like(ref))
    return gt, pred


def test_nifti_summary_fields_and_means(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    summary = evaluate_folder(gt, pred, nsd_tolerance_mm=2.0)
    on_disk = _strict_json(pred / "summary.json")
    assert on_disk["labels"] == [1, 2] and summary["num_cases"] == 3
    cases = on_disk["metric_per_case"]
    assert [Path(c["reference_file"]).name for c in cases] == [
        "case_a.nii.gz", "case_b.nii.gz", "case_c.nii.gz"]
    assert all(Path(c["prediction_file"]).parent == pred for c in cases)
    assert cases[1]["metrics"]["1"]["Dice"] == pytest.approx(4 / 6)
    assert cases[1]["metrics"]["2"]["empty_reference"] == 1
    assert cases[1]["metrics"]["2"]["Dice"] == 0.0
    assert cases[2]["metrics"]["1"]["Dice"] is None  # NaN written as null
    assert cases[0]["metrics"]["2"]["TN"] == 6 * 6 * 4  # absent label filled as "both empty"
    assert set(cases[0]["metrics"]["1"]) == set(METRIC_NAMES)
    assert on_disk["mean"]["1"]["Dice"] == pytest.approx((1 + 4 / 6) / 2)  # nanmean
    assert on_disk["mean"]["2"]["Dice"] == 0.0
    assert on_disk["foreground_mean"]["Dice"] == pytest.approx(((1 + 4 / 6) / 2 + 0) / 2)
    assert on_disk["nsd_tolerance_mm"] == 2.0
    assert f"MONAI {monai.__version__}" in on_disk["implementation"]
    assert on_disk["spacing_source"] and on_disk["empty_policy"]
    assert sorted(cases[0]["spacing"]) == sorted(SPACING)
    assert math.isnan(summary["metric_per_case"][2]["metrics"]["1"]["Dice"])


def test_nifti_csv_has_one_row_per_case_and_label(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    evaluate_folder(gt, pred)
    with open(pred / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["case"], r["label"]) for r in rows] == [
        (c, lab) for c in ("case_a", "case_b", "case_c") for lab in ("1", "2")]
    assert set(METRIC_NAMES) <= set(rows[0])
    assert float(rows[2]["Dice"]) == pytest.approx(4 / 6)
    assert math.isnan(float(rows[4]["Dice"]))


def test_hd95_uses_reference_spacing_in_mm(tmp_path: Path) -> None:
    # voxels 2 apart along the 3 mm axis -> 6 mm, whatever axis order the reader uses
    ref = np.zeros((4, 4, 4), dtype=np.uint8)
    p = ref.copy()
    ref[1, 1, 0], p[1, 1, 2] = 1, 1
    _save_nifti(tmp_path / "gt" / "c.nii.gz", ref)
    _save_nifti(tmp_path / "pred" / "c.nii.gz", p)
    summary = evaluate_folder(tmp_path / "gt", tmp_path / "pred", labels=[1])
    assert summary["mean"]["1"]["HD95_mm"] == pytest.approx(6.0)


def test_png_masks_0_255_are_read_as_labels(tmp_path: Path) -> None:
    ref = np.zeros((8, 8), dtype=np.uint8)
    ref[2:6, 2:6] = 1  # 16 pixels
    p = np.zeros_like(ref)
    p[2:6, 2:4] = 1  # 8 pixels, all inside -> Dice 2*8 / (16 + 8) = 2/3
    _save_png(tmp_path / "gt" / "img1.png", ref)
    _save_png(tmp_path / "pred" / "img1.png", p)
    _save_png(tmp_path / "gt" / "img2.png", ref)
    _save_png(tmp_path / "pred" / "img2.png", ref)
    out = tmp_path / "eval" / "scores.json"
    summary = evaluate_folder(tmp_path / "gt", tmp_path / "pred", output=out)
    assert summary["labels"] == [1]
    assert summary["mean"]["1"]["Dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert _strict_json(out)["foreground_mean"]["Dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert (tmp_path / "eval" / "scores.csv").is_file()
    assert not (tmp_path / "pred" / "summary.json").exists()


def test_explicit_label_absent_everywhere_is_null(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    evaluate_folder(gt, pred, labels=[1, 7])
    on_disk = _strict_json(pred / "summary.json")
    assert on_disk["mean"]["7"]["Dice"] is None
    assert on_disk["foreground_mean"]["Dice"] is None  # plain mean over labels, as nnU-Net
    assert on_disk["mean"]["7"]["empty_reference"] == 1.0


def test_rerun_ignores_its_own_outputs(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    (pred / "case_a.npz").write_bytes(b"")  # probabilities beside predictions are not images
    first = evaluate_folder(gt, pred)
    second = evaluate_folder(gt, pred)
    assert second["num_cases"] == first["num_cases"] == 3


def test_missing_prediction_names_the_reference(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    (pred / "case_b.nii.gz").unlink()
    with pytest.raises(InputError, match=re.escape("case_b.nii.gz")):
        evaluate_folder(gt, pred)


def test_missing_reference_names_the_prediction(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    _save_nifti(pred / "extra_case.nii.gz", np.zeros((6, 6, 4), dtype=np.uint8))
    with pytest.raises(InputError, match=re.escape("extra_case.nii.gz")):
        evaluate_folder(gt, pred)


def test_shape_mismatch_names_the_prediction(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    _save_nifti(pred / "case_c.nii.gz", np.zeros((6, 5, 4), dtype=np.uint8))
    with pytest.raises(InputError, match=re.escape("case_c.nii.gz")) as info:
        evaluate_folder(gt, pred)
    assert info.value.where == str(pred / "case_c.nii.gz")


def test_many_missing_references_are_listed_briefly(nifti_folders: tuple[Path, Path]) -> None:
    gt, pred = nifti_folders
    for i in range(7):
        _save_nifti(pred / f"extra_{i}.nii.gz", np.zeros((6, 6, 4), dtype=np.uint8))
    with pytest.raises(InputError, match=re.escape("extra_4.nii.gz, ... (7 in all)")):
        evaluate_folder(gt, pred)


def test_empty_reference_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="no label files"):
        evaluate_folder(tmp_path / "gt", tmp_path / "pred")


def test_absent_label_fill_matches_case_metrics() -> None:
    zeros = np.zeros((3, 4), dtype=np.uint8)
    expected = compute_case_metrics(zeros, zeros, [1], (1.0, 1.0))["1"]
    filled = _both_empty_metrics(zeros.size)
    assert filled.keys() == expected.keys()
    for name, value in expected.items():
        assert (math.isnan(value) and math.isnan(filled[name])) or value == filled[name], name
