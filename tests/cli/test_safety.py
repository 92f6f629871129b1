"""Inputs are never modified, and outputs never land on inputs or on another run.

Every file of the dataset (and of a prediction folder being evaluated) is hashed before and after
each command; refused commands must leave their targets byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset


def _hashes(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _train_argv(data: Path, out: Path, *extra: str, channels: str = "[4,8]") -> list[str]:
    return ["train", "--data", str(data), "--model", "unet3d", "--out", str(out),
            "--max-steps", "1", "--batch-size", "1", "--no-progress", "--roi-size", "16", "16",
            "16", "--set", f"channels={channels}", "train.steps_per_epoch=1",
            "train.warmup_steps=1", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("safety") / "data", num_cases=5, seed=5)


@pytest.fixture(scope="module")
def run_dir(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("safety_run") / "run"
    before = _hashes(data)
    assert main(_train_argv(data, run)) == 0
    assert _hashes(data) == before, "train changed or added files in the dataset"
    return run


def test_predict_evaluate_check_leave_inputs_unchanged(data: Path, run_dir: Path,
                                                       tmp_path: Path) -> None:
    before = _hashes(data)
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(run_dir), "-i", str(data / "imagesTr"), "-o",
                 str(pred), "--no-progress"]) == 0
    predictions = _hashes(pred)
    assert main(["evaluate", "--gt", str(data / "labelsTr"), "--pred", str(pred)]) == 0
    after_eval = _hashes(pred)
    assert set(after_eval) - set(predictions) == {"summary.json", "summary.csv"}
    assert {k: after_eval[k] for k in predictions} == predictions  # predictions untouched
    assert main(["check-dataset", str(data)]) == 0
    assert _hashes(data) == before
    assert main(["evaluate", "--gt", str(data / "labelsTr"), "--pred", str(data / "labelsTr"),
                 "-o", str(tmp_path / "self.json")]) == 0  # a folder scored against itself
    assert _hashes(data) == before


def _refused_output_folders(data: Path, tmp_path: Path) -> list[tuple[str, str]]:
    """(input, output) pairs where the output folder is an input folder by another name."""
    image = sorted((data / "imagesTr").iterdir())[0]
    link = tmp_path / "link_to_inputs"
    link.symlink_to(data / "imagesTr", target_is_directory=True)
    return [(str(image), str(image.parent)),  # a single file into its own folder
            (str(data / "imagesTr"), str(link)),  # a symlink to the input folder
            (str(data / "imagesTr"), str(data / "labelsTr" / ".." / "imagesTr"))]


def test_predict_refuses_an_output_folder_that_is_an_input_folder(
        data: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _hashes(data)
    for source, out in _refused_output_folders(data, tmp_path):
        assert main(["predict", "--model", str(run_dir), "-i", source, "-o", out]) == 2, out
        assert "the output folder holds input files" in capsys.readouterr().err
    assert _hashes(data) == before


def test_evaluate_refuses_an_output_that_could_be_a_label_file(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _hashes(data)
    target = data / "labelsTr" / "case_000.nii.gz"
    assert main(["evaluate", "--gt", str(data / "labelsTr"), "--pred", str(data / "labelsTr"),
                 "-o", str(target)]) == 2
    assert "--out: must name a .json file" in capsys.readouterr().err
    assert _hashes(data) == before


def test_train_refuses_a_run_folder_of_another_configuration(
        data: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = _hashes(run)
    refusals = [
        (_train_argv(data, run),
         "already holds a training run; pass --resume to continue it or --overwrite"),
        (_train_argv(data, run, "--resume", "--lr", "0.5"),
         "--resume with a different configuration (train: lr)"),
        (_train_argv(data, run, "--resume", channels="[4,16]"),
         "--resume with a different configuration (model: channels)"),
    ]
    for argv, message in refusals:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert _hashes(run) == before, f"refused {argv} changed the run folder"
    assert main(_train_argv(data, run, "--overwrite", "--lr", "0.5")) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.5


@pytest.mark.parametrize("kind", ["file", "no run"])
def test_train_refuses_an_out_that_is_a_file_or_resume_without_a_run(
        kind: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("precious")
        argv = _train_argv(data, out)
    else:
        argv = _train_argv(data, out, "--resume")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert ("exists and is not a folder" if kind == "file" else "holds no run") in err
    assert out.read_text() == "precious" if kind == "file" else not out.exists()
