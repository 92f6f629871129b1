"""Interrupted training: SIGINT/SIGTERM stop with a checkpoint (exit 130/143); after SIGKILL,
``--resume`` continues from the last complete checkpoint to the weights of an uninterrupted run.

The training loop saves ``checkpoint_last.pt`` at every epoch end (and on SIGINT/SIGTERM), so
with ``train.steps_per_epoch=2`` a killed run loses at most one step. The process tests start
``python -m medtoken train`` and are slow (the child imports torch); one in-process test of the
same path stays in the default run.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import load_checkpoint

STEPS = 40  # the step budget of the runs that get killed (20 epochs of 2 steps)
POLL_S = 0.005


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("interrupt") / "d", num_cases=5, seed=6)


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "unet3d", "--out", str(out),
            "--batch-size", "2", "--roi-size", "16", "16", "16", "--no-progress",
            "--set", "channels=[4,8]", "train.steps_per_epoch=2", "train.warmup_steps=1",
            "train.val_every=1000", *extra]


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "medtoken", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_first_epoch(proc: subprocess.Popen[str], run: Path) -> None:
    """Until ``checkpoint_last.pt`` exists: epoch 1 is complete (it is written atomically)."""
    deadline = time.monotonic() + 240
    while not (run / "checkpoint_last.pt").exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint after 240 s")
        time.sleep(POLL_S)


def _log(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "log.csv").read_text().splitlines()))


def _no_temporaries(run: Path) -> bool:
    return not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_sigint_stops_with_checkpoint_and_exit_130(data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """In process: SIGINT arrives during step 3 (mid-epoch 2); the step finishes, the state is
    saved, ``main`` returns 130 and names the checkpoint."""
    from medtoken.train import fit as fit_module

    original = fit_module._Trainer.train_step

    def step_then_interrupt(self, step: int) -> float:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, step)

    monkeypatch.setattr(fit_module._Trainer, "train_step", step_then_interrupt)
    run = tmp_path / "run"
    assert main(_train_args(data, run, "--max-steps", "10")) == 130
    assert "stopped by SIGINT" in capsys.readouterr().out
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert (state["epoch"], state["step"]) == (1, 3)
    assert not (run / "validation").exists() and _no_temporaries(run)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_to_the_process_saves_and_exits(signum: int, code: int, data: Path,
                                               tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start(_train_args(data, run, "--epochs", "1000"))
    _wait_for_first_epoch(proc, run)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name}" in out and "--resume" in out
    assert "Traceback" not in err
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert state["epoch"] >= 1 and state["step"] >= 2
    assert not (run / "validation").exists() and _no_temporaries(run)
    # the stopped run continues under a budget it has not reached yet
    budget = str(state["step"] + 2)
    assert main(_train_args(data, run, "--epochs", "1000", "--max-steps", budget,
                            "--resume")) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == int(budget)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(data: Path, tmp_path: Path) -> None:
    args = ("--max-steps", str(STEPS))
    assert main(_train_args(data, tmp_path / "straight", *args)) == 0
    run = tmp_path / "killed"
    proc = _start(_train_args(data, run, *args))
    _wait_for_first_epoch(proc, run)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(run / "checkpoint_last.pt")
    assert 1 <= killed_at["epoch"] < STEPS // 2, killed_at["epoch"]
    assert main(_train_args(data, run, *args, "--resume")) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    b = load_checkpoint(run / "checkpoint_last.pt")
    assert a["step"] == b["step"] == STEPS and a["epoch"] == b["epoch"]
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-6)
    same = ("epoch", "step", "loss", "lr")  # same batches and schedule, epoch by epoch
    assert [[r[k] for k in same] for r in _log(run)] == \
        [[r[k] for k in same] for r in _log(tmp_path / "straight")]
