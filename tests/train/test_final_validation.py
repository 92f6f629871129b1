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
