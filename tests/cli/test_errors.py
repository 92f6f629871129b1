"""The error contract across commands: one line on stderr naming the file or option and the
problem, exit 2 for bad input or usage, 1 for an internal failure, a traceback only with --debug.

In-process through ``main`` for the commands; in a subprocess for the real exit codes of
``python -m medtoken`` (with commands that do not import torch, so each process takes ~1 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset

Argv = Callable[[Path, Path], list[str]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("errors") / "data", num_cases=5, seed=4)


@pytest.fixture(scope="module")
def run_dir(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("errors_run") / "run"
    assert main(_train_argv(data, run)) == 0
    return run


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "unet3d", "--out", str(out),
            "--max-steps", "1", "--batch-size", "1", "--no-progress", "--roi-size", "16", "16",
            "16", "--set", "channels=[4,8]", "train.steps_per_epoch=1", "train.warmup_steps=1",
            *extra]


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("medtoken: error: ") and "Traceback" not in err
    return lines[0]


def _corrupt_file(folder: Path) -> Path:
    folder.mkdir()
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a NIfTI file")
    return folder / "broken.nii.gz"


# (name, argv builder from (dataset, tmp_path), substrings the one line must contain)
USER_ERRORS: list[tuple[str, Argv, tuple[str, ...]]] = [
    ("unknown preset", lambda d, t: ["train", "--data", str(d), "--model", "unetr_btvc",
                                     "--out", str(t / "r")],
     ("--model", "unknown model preset 'unetr_btvc'", "valid presets: unetr_btcv, ")),
    ("unknown preset to show", lambda d, t: ["models", "--show", "unet_3d"],
     ("unknown model preset 'unet_3d'", "valid presets: unet3d, ", "unet2d, ")),
    ("missing data", lambda d, t: _train_argv(t / "no_such_data", t / "r"),
     ("no_such_data", "dataset folder not found")),
    ("bad model --set key", lambda d, t: _train_argv(d, t / "r", "chanels=[4,8]"),
     ("unknown key 'chanels'", "valid keys: channels, ")),
    ("bad train --set key", lambda d, t: _train_argv(d, t / "r", "train.step_per_epoch=1"),
     ("--set train.*", "unknown key 'step_per_epoch'", "valid keys: steps_per_epoch, ")),
    ("bad --set syntax", lambda d, t: _train_argv(d, t / "r", "channels"), ("channels",)),
    ("evaluate mismatched", lambda d, t: ["evaluate", "--gt", str(d / "labelsTr"),
                                          "--pred", str(d / "imagesTr")],
     ("no prediction for reference file(s) case_000.nii.gz",)),
    ("evaluate missing folder", lambda d, t: ["evaluate", "--gt", str(t / "gone"),
                                              "--pred", str(d / "labelsTr")],
     ("gone", "is not a folder")),
    ("check-dataset missing", lambda d, t: ["check-dataset", str(t / "gone")],
     ("gone", "dataset folder not found")),
    ("unknown option", lambda d, t: ["evaluate", "--gt", "a", "--pred", "b", "--frobnicate"],
     ("unrecognized arguments: --frobnicate",)),
    ("missing required option", lambda d, t: ["evaluate", "--gt", "x"],
     ("--pred", "required")),
]


@pytest.mark.parametrize(("argv", "parts"), [(a, p) for _, a, p in USER_ERRORS],
                         ids=[name for name, _, _ in USER_ERRORS])
def test_user_error_is_one_line_exit_2(argv: Argv, parts: tuple[str, ...], data: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv(data, tmp_path)) == 2
    line = _one_error_line(capsys.readouterr().err)
    for part in parts:
        assert part in line, (part, line)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_corrupt_nifti_to_predict_names_the_file(run_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = _corrupt_file(tmp_path / "in")
    assert main(["predict", "--model", str(run_dir), "-i", str(bad), "-o",
                 str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert any(str(bad) in line and "cannot read image" in line for line in lines)
    assert lines[-1] == "medtoken: error: 1 case(s) could not be predicted: broken"


def test_predict_with_missing_checkpoint_is_one_line(tmp_path: Path, data: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model", str(tmp_path / "norun"), "-i", str(data / "imagesTr"),
                 "-o", str(tmp_path / "out")]) == 2
    assert "norun: no such checkpoint file or run folder" in _one_error_line(
        capsys.readouterr().err)


def test_debug_shows_the_traceback_of_a_user_error(tmp_path: Path) -> None:
    from medtoken.utils.errors import InputError

    with pytest.raises(InputError, match="dataset folder not found"):
        main(["--debug", *_train_argv(tmp_path / "nothing", tmp_path / "r")])


# --- real processes --------------------------------------------------------------------------

_BOOM = ("import runpy, sys, medtoken.cli.models as m\n"
         "def boom(args):\n    raise RuntimeError('kaput')\n"
         "m.run = boom\nsys.argv = ['medtoken', *sys.argv[1:]]\n"
         "runpy.run_module('medtoken', run_name='__main__')\n")


def _run(args: list[str], code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "medtoken", *args] if code is None else \
        [sys.executable, "-c", code, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          check=False)


def test_process_exit_code_2_for_bad_input(tmp_path: Path) -> None:
    done = _run(["check-dataset", str(tmp_path / "missing")])
    assert done.returncode == 2
    assert "missing: dataset folder not found" in _one_error_line(done.stderr)


def test_process_exit_code_1_for_internal_failure_traceback_only_with_debug() -> None:
    done = _run(["models"], code=_BOOM)
    assert done.returncode == 1
    line = _one_error_line(done.stderr.replace("medtoken: internal error", "medtoken: error"))
    assert "RuntimeError: kaput" in line and "--debug" in line
    debug = _run(["--debug", "models"], code=_BOOM)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and "kaput" in debug.stderr



def test_closed_stdout_pipe_is_not_an_error() -> None:
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first byte, as with `| head -0`
    try:
        done = subprocess.run([sys.executable, "-m", "medtoken", "models"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == "", done.stderr
