"""``train --val``: the final validation of an existing run, without training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medtoken.cli.main import main
from tests.inference.conftest import train_tiny_run


def _val(data: Path, run: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--model", "unet3d", "--out", str(run), "--val",
                 *extra])


def test_val_recomputes_the_runs_validation(tmp_path_factory: pytest.TempPathFactory,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, run = train_tiny_run(tmp_path_factory, "val", seed=5)
    before = json.loads((run / "validation" / "summary.json").read_text())
    shutil.rmtree(run / "validation")
    log = (run / "log.csv").read_text()
    assert _val(data, run) == 0
    after = json.loads((run / "validation" / "summary.json").read_text())
    assert after["foreground_mean"] == before["foreground_mean"]  # same checkpoint, same cases
    assert after["num_cases"] == before["num_cases"] == 1
    assert (run / "log.csv").read_text() == log  # nothing trained
    assert "validated" in capsys.readouterr().out

    assert _val(data, run, "--fold", "1") == 2  # the run is of fold 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a run of fold 0, not 1" in err[0]
    (run / "checkpoint_best.pt").unlink()
    assert _val(data, run) == 2
    assert "checkpoint_best.pt: no such file" in capsys.readouterr().err


def test_val_with_tta_is_predict_with_tta(tmp_path_factory: pytest.TempPathFactory,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``--val --tta`` scores what ``predict --tta`` writes for the validation case, and says so."""
    data, run = train_tiny_run(tmp_path_factory, "val_tta", seed=6)
    plain_summary = json.loads((run / "validation" / "summary.json").read_text())
    assert plain_summary["tta"] is False
    plain = (run / "validation").glob("*.nii.gz")
    (case,) = [p.name for p in plain]
    assert _val(data, run, "--tta") == 0
    assert "mirroring TTA" in capsys.readouterr().out
    mirrored = json.loads((run / "validation" / "summary.json").read_text())
    assert mirrored["tta"] is True
    assert mirrored["foreground_mean"] != plain_summary["foreground_mean"]  # mirroring was used

    out = tmp_path_factory.mktemp("val_tta_predict")
    assert main(["predict", "--model", str(run), "-i", str(data / "imagesTr" /
                 case.replace(".nii.gz", "_0000.nii.gz")), "-o", str(out / "pred"), "--tta",
                 "--no-progress"]) == 0
    gt = out / "gt"
    gt.mkdir()
    (gt / case).symlink_to(data / "labelsTr" / case)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(out / "pred")]) == 0
    scored = json.loads((out / "pred" / "summary.json").read_text())
    assert scored["foreground_mean"] == mirrored["foreground_mean"]
