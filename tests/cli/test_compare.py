"""``medtoken compare``: run naming, the steps read from log.csv, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoken.cli.compare import parse_runs, parse_summaries, steps_trained
from medtoken.cli.main import main
from medtoken.utils.errors import InputError


def _run_folder(path: Path, steps: int = 40) -> Path:
    path.mkdir(parents=True)
    (path / "log.csv").write_text(f"epoch,step,loss\n1,20,0.5\n2,{steps},0.4\n")
    return path


def test_runs_are_named(tmp_path: Path) -> None:
    a, b = _run_folder(tmp_path / "a"), _run_folder(tmp_path / "b")
    assert parse_runs([f"tok={a}", f"unet3d:channels=[4,8]={b}"]) == [
        ("tok", a), ("unet3d:channels=[4,8]", b)]  # split at the last '=': specs are names
    with pytest.raises(InputError, match="given twice"):
        parse_runs([f"x={a}", f"x={b}"])
    with pytest.raises(InputError, match="expected NAME=RUN"):
        parse_runs([str(a)])
    with pytest.raises(InputError, match="no such run folder"):
        parse_runs([f"x={tmp_path / 'missing'}"])


def test_steps_come_from_the_last_log_row(tmp_path: Path) -> None:
    assert steps_trained(_run_folder(tmp_path / "a", steps=1234)) == 1234
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"log\.csv: no such file"):
        steps_trained(tmp_path / "empty")
    (tmp_path / "empty" / "log.csv").write_text("epoch,step\n")
    with pytest.raises(InputError, match="numeric 'step'"):
        steps_trained(tmp_path / "empty")


def test_a_run_without_final_validation_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_folder(tmp_path / "a")
    code = main(["compare", "--runs", f"a={run}", "--data", str(tmp_path), "-o",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "summary.json: no such file" in err[0]
    assert not (tmp_path / "out").exists()


def test_summaries_name_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_summaries(["a=s.json"], {"a", "b"}) == {"a": Path("s.json")}
    with pytest.raises(InputError, match="none of the runs"):
        parse_summaries(["c=s.json"], {"a", "b"})
    run = _run_folder(tmp_path / "a")
    argv = ["compare", "--runs", f"a={run}", "--data", str(tmp_path), "-o", str(tmp_path / "out")]
    assert main([*argv, "--summaries", f"a={tmp_path / 'none.json'}"]) == 2
    assert "none.json: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")  # not an evaluate summary: refused before any model is loaded
    assert main([*argv, "--summaries", f"a={bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no foreground_mean.Dice" in err[0]
    assert not (tmp_path / "out").exists()
