"""`medtoken predict` with several runs, probabilities, the memory refusal and the Python API."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medtoken.data.io import read_image, write_image
from medtoken.inference import memory
from medtoken.inference.ensemble import expand_members
from medtoken.inference.options import PredictOptions
from medtoken.inference.predict import estimate_for
from medtoken.models.checkpoint import load_model_checkpoint
from tests.export.conftest import make_checkpoint
from tests.inference.conftest import predict_cli as _predict


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(str(p)).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


def test_ensemble_of_two_identical_runs_equals_one_run(runs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    extra = ("--save-probabilities", "--probabilities-dtype", "float32")
    assert _predict(tmp_path / "one", runs["in"], runs["a"], extra=extra) == 0
    assert _predict(tmp_path / "two", runs["in"], runs["a"], runs["copy"], extra=extra) == 0
    one, two = _labels(tmp_path / "one"), _labels(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) == 2
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])
    for npz in sorted((tmp_path / "one").glob("*.npz")):
        np.testing.assert_allclose(np.load(npz)["probabilities"],
                                   np.load(tmp_path / "two" / npz.name)["probabilities"],
                                   atol=1e-6)


def test_a_folder_of_folds_is_the_ensemble_of_its_folds(runs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    assert expand_members([runs["folds"]]) == [runs["a"], runs["b"]]
    assert expand_members([runs["a"]]) == [runs["a"]]
    assert _predict(tmp_path / "folder", runs["in"], runs["folds"]) == 0
    assert _predict(tmp_path / "listed", runs["in"], runs["a"], runs["b"]) == 0
    assert _predict(tmp_path / "single", runs["in"], runs["a"]) == 0
    folder, listed = _labels(tmp_path / "folder"), _labels(tmp_path / "listed")
    for name in folder:
        np.testing.assert_array_equal(folder[name], listed[name])


def test_members_that_differ_are_refused_before_anything_is_written(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = make_checkpoint(tmp_path / "three", "unet3d", runs["data"], num_classes=4).parent
    out = tmp_path / "out"
    assert _predict(out, runs["in"], runs["a"], other) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(other) in err[0] and "classes 4 differ from 3" in err[0], err
    assert not out.exists()


def test_probabilities_sum_to_one_and_their_argmax_is_the_labels(
        runs: dict[str, Path], tmp_path: Path) -> None:
    for dtype, stitching in (("float16", "slab"), ("float32", "slab"), ("float32", "full")):
        out = tmp_path / f"{dtype}{stitching}"
        assert _predict(out, runs["in"], runs["a"], extra=(
            "--save-probabilities", "--probabilities-dtype", dtype, "--stitching",
            stitching)) == 0
        for label_file in sorted(out.glob("*.nii.gz")):
            labels = np.asarray(nib.load(str(label_file)).dataobj)
            image, _ = read_image(runs["in"] / label_file.name)
            probs = np.load(out / label_file.name.replace(".nii.gz", ".npz"))["probabilities"]
            assert probs.dtype == np.dtype(dtype) and probs.shape == (3, *image.shape[1:])
            np.testing.assert_allclose(probs.sum(0), 1.0, atol=2e-3 if dtype == "float16"
                                       else 1e-5)
            top = np.sort(probs.astype(np.float32), 0)
            clear = top[-1] - top[-2] > (2e-3 if dtype == "float16" else 0)
            np.testing.assert_array_equal(probs.argmax(0)[clear], labels[clear])
            assert clear.mean() > 0.9  # a fresh model is near-uniform: many near-ties
        assert not list(out.glob(".*"))  # no temporaries left


def test_a_case_too_large_is_refused_and_the_others_predicted(
        runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(runs["in"], inputs)
    image, meta = read_image(inputs / "case_000.nii.gz")
    big = np.zeros((64, 64, 64), np.float32)
    big_meta = type(meta)((64, 64, 64), meta.spacing, meta.affine, meta.file_ending, "big")
    write_image(big[None], big_meta, inputs / "big.nii.gz")
    loaded = load_model_checkpoint(runs["a"])
    small = estimate_for([loaded], image.shape[1:], PredictOptions()).total_bytes
    large = estimate_for([loaded], big.shape, PredictOptions()).total_bytes
    assert large > 2 * small
    limit = (small + large) // 2
    monkeypatch.setattr(memory, "available_memory", lambda device: limit)
    out = tmp_path / "out"
    assert _predict(out, inputs, runs["a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]
    assert any("big.nii.gz: estimated peak" in line and "--force-memory" in line
               for line in err), err
    assert err[-1] == "medtoken: error: 1 case(s) could not be predicted: big"
    assert _predict(out, inputs, runs["a"], extra=("--force-memory", "--skip-existing")) == 0
    assert (out / "big.nii.gz").is_file()


def test_threads_sets_torch_threads(runs: dict[str, Path], tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        assert _predict(tmp_path / "t", runs["in"], runs["a"], extra=("--threads", "1")) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
