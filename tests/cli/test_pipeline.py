"""The CLI end to end: train a few steps → predict → evaluate, on synthetic and real data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset
from tests.conftest import shared_dataset

TINY_UNET3D = ["channels=[4,8]"]
TINY_UNET2D = ["channels=[4,8,16]"]


def _train(data: Path, run: Path, model: str, model_sets: list[str], *extra: str) -> int:
    return main(["train", "--data", str(data), "--model", model, "--out", str(run),
                 "--max-steps", "2", "--batch-size", "1", "--no-progress",
                 "--set", *model_sets, "train.steps_per_epoch=1", "train.val_every=1",
                 "train.warmup_steps=1", *extra])


@pytest.fixture(scope="module")
def trained_3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipeline3d")
    data = make_synthetic_dataset(root / "data", spatial_dims=3, num_cases=5, seed=1)
    run = root / "run"
    assert _train(data, run, "unet3d", TINY_UNET3D, "--roi-size", "16", "16", "16") == 0
    return data, run


def test_train_writes_run_folder(trained_3d: tuple[Path, Path]) -> None:
    _, run = trained_3d
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "log.csv", "checkpoint_last.pt", "checkpoint_best.pt",
            "validation"} <= names
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss") and len(log) == 3
    assert "val_dice_structure_a" in log[0]
    summary = json.loads((run / "validation" / "summary.json").read_text())
    assert summary["num_cases"] == 1 and set(summary["mean"]) == {"1", "2"}


def test_predict_keeps_geometry_and_evaluate_scores(trained_3d: tuple[Path, Path],
                                                    tmp_path: Path, capsys) -> None:
    data, run = trained_3d
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "-i", str(data / "imagesTr"), "-o", str(out),
                 "--no-progress"]) == 0
    images = sorted((data / "imagesTr").iterdir())
    preds = sorted(out.iterdir())
    assert [p.name for p in preds] == [p.name.replace("_0000", "") for p in images]
    for image, pred in zip(images, preds, strict=True):
        a, b = nib.load(image), nib.load(pred)
        assert a.shape == b.shape
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
        assert np.issubdtype(b.get_data_dtype(), np.integer)
        assert set(np.unique(np.asarray(b.dataobj))) <= {0, 1, 2}
    assert main(["evaluate", "--gt", str(data / "labelsTr"), "--pred", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cases"] == 5
    assert {"Dice", "HD95_mm", "NSD"} <= set(summary["foreground_mean"])
    assert "fg mean" in capsys.readouterr().out


def test_predict_skip_existing_and_refuses_input_folder(trained_3d: tuple[Path, Path],
                                                       tmp_path: Path, capsys) -> None:
    data, run = trained_3d
    image = sorted((data / "imagesTr").iterdir())[0]
    out = tmp_path / "p"
    assert main(["predict", "--model", str(run), "-i", str(image), "-o", str(out)]) == 0
    assert main(["predict", "--model", str(run), "-i", str(image), "-o", str(out),
                 "--skip-existing"]) == 0
    assert "kept 1 existing" in capsys.readouterr().out
    assert main(["predict", "--model", str(run), "-i", str(data / "imagesTr"),
                 "-o", str(data / "imagesTr")]) == 2
    assert "output folder holds input files" in capsys.readouterr().err


def test_existing_run_needs_resume_or_overwrite(trained_3d: tuple[Path, Path], capsys) -> None:
    data, run = trained_3d
    assert _train(data, run, "unet3d", TINY_UNET3D, "--roi-size", "16", "16", "16") == 2
    assert "--resume" in capsys.readouterr().err


def test_2d_pipeline_writes_png(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "data2d", spatial_dims=2, num_cases=5, seed=2,
                                  layout="folder2d")
    run = tmp_path / "run2d"
    assert _train(data, run, "unet2d", TINY_UNET2D, "--roi-size", "32", "32") == 0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "-i", str(data / "images"), "-o", str(out)]) == 0
    assert all(p.suffix == ".png" for p in out.iterdir())
    assert main(["evaluate", "--gt", str(data / "masks"), "--pred", str(out)]) == 0


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "model", "sets", "patch"), [
    # one window per case keeps whole-fold validation cheap
    ("msd_hippocampus", "unet3d", TINY_UNET3D, ["40", "56", "40"]),
    ("busi256", "unet2d", TINY_UNET2D, ["256", "256"]),
])
def test_real_data_train_predict_evaluate(name: str, model: str, sets: list[str],
                                          patch: list[str], tmp_path: Path) -> None:
    data = shared_dataset(name)
    run = tmp_path / "run"
    assert _train(data, run, model, sets, "--roi-size", *patch,
                  "--set", "train.val_every=1000") == 0
    summary = json.loads((run / "validation" / "summary.json").read_text())
    assert summary["num_cases"] > 40  # the whole validation fold, predicted and scored


def test_several_folds_train_into_fold_folders_and_predict_as_one_ensemble(
        tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "data2d", spatial_dims=2, num_cases=5, seed=3,
                                  layout="folder2d")
    cv = tmp_path / "cv"
    assert _train(data, cv, "unet2d", TINY_UNET2D, "--roi-size", "32", "32",
                  "--fold", "0", "1") == 0
    assert sorted(p.name for p in cv.iterdir()) == ["fold_0", "fold_1"]
    validated = [json.loads((cv / f / "validation" / "summary.json").read_text())["num_cases"]
                 for f in ("fold_0", "fold_1")]
    assert validated == [1, 1]  # 5 cases, 5 folds: each fold validates on its own case
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(cv), "-i", str(data / "images"), "-o", str(out)]) == 0
    assert len(list(out.iterdir())) == 5


def test_fold_all_with_other_folds_is_refused(tmp_path: Path, capsys) -> None:
    assert _train(tmp_path / "missing", tmp_path / "cv", "unet2d", TINY_UNET2D,
                  "--fold", "0", "all") == 2
    assert "--fold: 'all' trains on every case" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


@pytest.mark.parametrize(("folds", "existing", "message"), [
    (["0", "1", "9"], None, "fold 9 is out of range"),
    (["0", "1"], "fold_1", "already holds a training run"),
])
def test_bad_fold_list_is_refused_before_training(folds: list[str], existing: str | None,
                                                  message: str, tmp_path: Path, capsys) -> None:
    data = make_synthetic_dataset(tmp_path / "data2d", spatial_dims=2, num_cases=5, seed=3,
                                  layout="folder2d")
    cv = tmp_path / "cv"
    if existing:
        (cv / existing).mkdir(parents=True)
        (cv / existing / "config.yaml").write_text("train: {}\n")
    assert _train(data, cv, "unet2d", TINY_UNET2D, "--fold", *folds) == 2
    assert message in capsys.readouterr().err
    assert not (cv / "fold_0").exists()  # nothing trained or written


def test_resume_of_a_fold_without_a_run_is_refused_before_training(tmp_path: Path,
                                                                   capsys) -> None:
    data = make_synthetic_dataset(tmp_path / "data2d", spatial_dims=2, num_cases=5, seed=3,
                                  layout="folder2d")
    assert _train(data, tmp_path / "cv", "unet2d", TINY_UNET2D, "--fold", "0", "1",
                  "--resume") == 2
    assert "--resume given but this folder holds no run" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()
