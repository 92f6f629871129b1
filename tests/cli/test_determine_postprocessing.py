"""CLI round trip: determine-postprocessing on a hand-made run folder, then postprocess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtoken.cli.main import main
from medtoken.metrics.evaluate import evaluate_pairs
from tests.postprocessing.conftest import BIG, SMALL, cube, save_nifti

SHAPE = (12, 12, 12)


def _validation(run: Path, gt: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """What training's final validation leaves: RUN/validation/{case}.nii.gz + summary.json."""
    pairs = []
    for case, (pred, ref) in cases.items():
        pairs.append((save_nifti(run / "validation" / f"{case}.nii.gz", pred),
                      save_nifti(gt / f"{case}.nii.gz", ref)))
    evaluate_pairs(pairs, [1], 1.0, run / "validation" / "summary.json")


def _noisy(case: str) -> tuple[np.ndarray, np.ndarray]:
    return cube(SHAPE, (1, BIG), (1, SMALL)), cube(SHAPE, (1, BIG))


def test_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, gt = tmp_path / "run", tmp_path / "gt"
    _validation(run, gt, {"c1": _noisy("c1"), "c2": (cube(SHAPE, (1, BIG)),) * 2})
    assert main(["determine-postprocessing", "--run", str(run)]) == 0
    assert "kept" in capsys.readouterr().out
    plan = json.loads((run / "postprocessing.json").read_text())
    assert plan["postprocessing_kwargs"] == [{"labels_or_regions": [1]}]
    assert plan["labels"] == [1] and plan["num_cases"] == 2
    out = tmp_path / "pp"
    assert main(["postprocess", "-i", str(run / "validation"), "-o", str(out),
                 "--plan", str(run / "postprocessing.json")]) == 0
    fixed = np.asarray(nib.load(out / "c1.nii.gz").dataobj)
    assert np.array_equal(fixed, cube(SHAPE, (1, BIG)))
    assert sorted(p.name for p in out.iterdir()) == ["c1.nii.gz", "c2.nii.gz"]


def test_fold_folders_and_moved_references(tmp_path: Path) -> None:
    parent, gt = tmp_path / "cv", tmp_path / "gt"
    _validation(parent / "fold_0", gt, {"c1": _noisy("c1")})
    _validation(parent / "fold_1", gt, {"c2": (cube(SHAPE, (1, BIG)),) * 2})
    # a dataset in nnU-Net raw layout holding the references under their case ids
    data = tmp_path / "Dataset001_X"
    for case in ("c1", "c2"):
        save_nifti(data / "imagesTr" / f"{case}_0000.nii.gz", cube(SHAPE, (1, BIG)))
    shutil.copytree(gt, data / "labelsTr")
    (data / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "x": 1},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    shutil.rmtree(gt)  # the summaries now name files that are gone
    assert main(["determine-postprocessing", "--run", str(parent)]) == 2
    assert main(["determine-postprocessing", "--run", str(parent), "--data", str(data)]) == 0
    plan = json.loads((parent / "postprocessing.json").read_text())
    assert plan["num_cases"] == 2 and plan["decisions"][0]["kept"]


def test_bad_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty_run").mkdir()
    assert main(["determine-postprocessing", "--run", str(tmp_path / "empty_run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no cross-validation predictions" in err and "\n" not in err
    (tmp_path / "cv" / "fold_0").mkdir(parents=True)
    assert main(["determine-postprocessing", "--run", str(tmp_path / "cv")]) == 2
    assert "fold_0: has no validation/summary.json" in capsys.readouterr().err
    labels = tmp_path / "labels"
    save_nifti(labels / "a.nii.gz", cube(SHAPE, (2, BIG)))
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"labels": [1], "postprocessing_fns": [],
                                "postprocessing_kwargs": []}))
    assert main(["postprocess", "-i", str(labels), "-o", str(tmp_path / "o"),
                 "--plan", str(plan)]) == 2
    assert "holds labels [2]" in capsys.readouterr().err
    assert main(["postprocess", "-i", str(labels), "-o", str(labels), "--plan", str(plan)]) == 2
    assert not (tmp_path / "o").exists()
