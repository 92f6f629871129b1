"""Data-parallel training on CPU (gloo, 2 processes): agreement between ranks, rank-0 writes.

The in-process tests fork two ranks that join a gloo group (so nothing is re-imported) and call
the library directly, with a 60 s collective timeout so that a disagreement fails instead of
hanging. The ``torchrun`` tests launch the real command line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml

from medtoken.data.datasets import load_dataset
from medtoken.data.preprocess import plan_normalization
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import load_checkpoint, load_model_checkpoint
from medtoken.registry import build_model, get_config
from medtoken.train import fit as fit_module
from medtoken.train.config import TrainConfig
from medtoken.train.data import PatchSampler, load_cases
from medtoken.train.distributed import env_info, gather_split, split_for_rank
from medtoken.train.fit import fit
from medtoken.train.validate import validate

RUN_FILES = {"config.yaml", "log.csv", "checkpoint_last.pt", "checkpoint_best.pt", "validation"}
UNET = ("unet3d", {"channels": [4, 8]})
# BatchNorm in checkpointed blocks, and parameters without gradient (DDP must search for them)
TMUNET = ("tmunet3d_test", {"mstm.unused_dwconv": True})
NNUNET = ("nnunet", {})
NEEDS_DNA = pytest.mark.skipif(importlib.util.find_spec("dynamic_network_architectures") is None,
                               reason="needs dynamic_network_architectures (make setup)")
TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("ddp") / "d", num_cases=6, seed=4)
    ids = [f"case_{i:03d}" for i in range(6)]
    (root / "splits_final.json").write_text(json.dumps([{"train": ids[:3], "val": ids[3:]}]))
    return root


def _cfg(data: Path, **kw: Any) -> TrainConfig:
    base = {"data": str(data), "model": "unet3d", "roi_size": (16, 16, 16),
            "batch_size": 1, "steps_per_epoch": 2, "epochs": 2, "val_every": 1,
            "warmup_steps": 1}
    return TrainConfig(**{**base, **kw})


def _entry(rank: int, fn: Callable[..., Any], tmp: Path, world: int, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp / 'store'}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        torch.save(fn(rank, *args), tmp / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _on_two_ranks(tmp: Path, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """``fn(rank, *args)`` in two forked processes of one gloo group; their return values."""
    tmp.mkdir(parents=True, exist_ok=True)
    torch.multiprocessing.start_processes(_entry, args=(fn, tmp, 2, args), nprocs=2,
                                          join=True, start_method="fork")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _fit_and_digest(rank: int, cfg: TrainConfig, out: Path, overrides: dict[str, Any],
                    signal_rank1_at: int = 0) -> dict:
    """fit() on this rank; the digest of the model it ends with (a hook on ``_Trainer.run``)."""
    seen: dict[str, Any] = {}
    run, step = fit_module._Trainer.run, fit_module._Trainer.train_step
    calls = {"n": 0}

    def record(self: Any, progress: bool) -> Any:
        seen["model"] = self.model
        return run(self, progress)

    def step_then_signal(self: Any, index: int) -> float:
        calls["n"] += 1
        if calls["n"] == signal_rank1_at and rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, index)

    fit_module._Trainer.run = record  # forked process: patches only this rank
    fit_module._Trainer.train_step = step_then_signal
    result = fit(cfg, out, overrides, device="cpu")
    return {"digest": _digest(seen["model"].state_dict()), "steps": result.steps_done,
            "interrupted": result.interrupted_by, "best": result.best_metric,
            "rank": result.rank}


@pytest.mark.parametrize(("model", "overrides", "options"), [
    (*UNET, {"accumulate": 2}),
    pytest.param(*TMUNET, {"grad_checkpointing": True}, marks=pytest.mark.slow),
    # channels-last weights and gradients through DDP's buckets
    pytest.param(TMUNET[0], {**TMUNET[1], "channels_last": True}, {}, marks=pytest.mark.slow),
    # nnU-Net's batch Dice summed over ranks in the step; the memory probe on rank 0 alone
    pytest.param(*NNUNET, {"batch_size": 1, "roi_size": None}, marks=[pytest.mark.slow, NEEDS_DNA]),
])
def test_two_ranks_stay_identical_and_only_rank0_writes(data: Path, tmp_path: Path, model: str,
                                                        overrides: dict[str, Any],
                                                        options: dict[str, Any]) -> None:
    cfg = _cfg(data, model=model, **options)
    out = tmp_path / "run"
    results = _on_two_ranks(tmp_path / "pg", _fit_and_digest, cfg, out, overrides)
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["digest"] == results[1]["digest"]  # weights and buffers, after 4 steps
    assert results[0]["steps"] == results[1]["steps"] == 4
    assert results[0]["best"] == results[1]["best"]  # validation gathered on both ranks
    plans = {"plans.json"} if model == "nnunet" else set()  # the plan the run trained from
    assert {p.name for p in out.iterdir()} == RUN_FILES | plans  # no rank-suffixed/stray files
    state = load_checkpoint(out / "checkpoint_last.pt")
    assert _digest(state["model"]) == results[0]["digest"]
    assert not any(k.startswith("module.") or "_checkpoint_wrapped" in k for k in state["model"])
    load_model_checkpoint(out)  # strict load into a plain (unwrapped) model
    assert yaml.safe_load((out / "config.yaml").read_text())["runtime"]["world_size"] == 2
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_mean_fg_dice" in rows[0]
    summary = json.loads((out / "validation" / "summary.json").read_text())
    assert summary["num_cases"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["signal_to_rank1", "time_budget"])
def test_stop_decision_is_agreed(data: Path, tmp_path: Path, stop: str) -> None:
    if stop == "signal_to_rank1":
        cfg, signal_at = _cfg(data, epochs=3), 3
    else:  # ranks' clocks differ; a per-rank stop decision would deadlock the job
        cfg, signal_at = _cfg(data, epochs=1000, max_minutes=0.02, val_every=1000), 0
    out = tmp_path / "run"
    results = _on_two_ranks(tmp_path / "pg", _fit_and_digest, cfg, out, UNET[1], signal_at)
    assert results[0]["digest"] == results[1]["digest"]
    assert results[0]["steps"] == results[1]["steps"]
    state = load_checkpoint(out / "checkpoint_last.pt")
    assert state["step"] == results[0]["steps"]
    if stop == "signal_to_rank1":
        assert [r["interrupted"] for r in results] == ["SIGTERM", "SIGTERM"]
        assert state["step"] == 3 and not (out / "validation").exists()
    else:
        assert [r["interrupted"] for r in results] == [None, None]


def _val_setup(data: Path) -> tuple[Any, list[Any]]:
    """A tiny random-weight U-Net and three validation cases (3 cases: an uneven split)."""
    info = load_dataset(data)
    ids = list(info.case_ids)[:3]
    cases = load_cases(info, ids, plan_normalization(info, ids))
    torch.manual_seed(0)
    model = build_model(get_config("unet3d", channels=[4, 8], num_classes=3,
                                   roi_size=[16, 16, 16]))
    return model, cases


def _validate_split(rank: int, data: Path) -> list[float]:
    model, cases = _val_setup(data)
    mine = split_for_rank(cases, env_info())
    assert len(mine) == (2 if rank == 0 else 1)
    assert gather_split([c.case_id for c in mine], env_info()) == [c.case_id for c in cases]
    return validate(model, mine, (16, 16, 16), 0.25, torch.device("cpu"), env_info())


def test_split_validation_equals_single_process(data: Path, tmp_path: Path) -> None:
    results = _on_two_ranks(tmp_path / "pg", _validate_split, data)
    model, cases = _val_setup(data)
    single = validate(model, cases, (16, 16, 16), 0.25, torch.device("cpu"))
    assert len(single) == 2 and not np.isnan(single).any()
    assert results[0] == results[1] == single


def test_sampler_draws_per_rank_and_is_reproducible(data: Path) -> None:
    info = load_dataset(data)
    ids = list(info.case_ids)[:3]
    cases = load_cases(info, ids, plan_normalization(info, ids))
    r0, r0_again, r1 = (PatchSampler(cases, (16, 16, 16), 2, seed=7, rank=r) for r in (0, 0, 1))
    x0, y0 = r0.batch(5)
    x0b, y0b = r0_again.batch(5)
    x1, _ = r1.batch(5)
    assert torch.equal(x0, x0b) and torch.equal(y0, y0b)
    assert not torch.equal(x0, x1)


def _torchrun_cmd(data: Path, out: str, *extra: str, log_dir: Path | None = None) -> list[str]:
    redirect = ["--redirects", "3", "--log-dir", str(log_dir)] if log_dir else []
    return [*TORCHRUN, *redirect, "-m", "medtoken", "train", "--data", str(data),
            "--model", "unet3d", "--out", out, "--roi-size", "16", "16", "16",
            "--batch-size", "1", "--max-steps", "12", "--no-progress", "--set", "channels=[4,8]",
            "train.steps_per_epoch=2", "train.val_every=100", "train.warmup_steps=1", *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(cwd: Path, *args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_torchrun_cmd(*args, **kw), cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


def _sigterm_after_first_epoch(cwd: Path, data: Path, out: str) -> int:
    """Start a torchrun job, SIGTERM the launcher once epoch 1 is saved; the job's exit code."""
    proc = subprocess.Popen(_torchrun_cmd(data, out), cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(3000):
            if (cwd / out / "checkpoint_last.pt").exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # torchrun forwards it to every rank
        return proc.wait(timeout=120)
    finally:
        proc.kill()


@pytest.mark.slow
def test_torchrun_cli_resumes_exactly_and_only_rank0_speaks(data: Path, tmp_path: Path) -> None:
    assert _sigterm_after_first_epoch(tmp_path, data, "resumed") != 0
    stopped = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    assert 2 <= stopped["step"] < 12  # saved where the ranks agreed to stop
    logs = tmp_path / "logs"
    resumed = _torchrun(tmp_path, data, "resumed", "--resume", log_dir=logs)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = _torchrun(tmp_path, data, "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 12
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
    assert {p.name for p in (tmp_path / "resumed").iterdir()} == RUN_FILES
    rank_logs = {p.parent.name: p for p in logs.rglob("stdout.log")}
    assert set(rank_logs) == {"0", "1"}
    assert "trained 6 epochs (12 steps)" in rank_logs["0"].read_text()
    assert rank_logs["1"].read_text() == ""  # rank 1 prints nothing ...
    rank1_err = (rank_logs["1"].parent / "stderr.log").read_text()
    assert "epoch" not in rank1_err and "validation" not in rank1_err  # ... and logs no INFO
    assert "resumed from" in (rank_logs["0"].parent / "stderr.log").read_text()


def _vq_restart(rank: int) -> dict[str, torch.Tensor]:
    """One VQ epoch on rank-specific tokens, then a restart step: what each rank ends with."""
    from medtoken.tokens.vq import VectorQuantizer

    torch.manual_seed(0)  # identical initial codebooks
    vq = VectorQuantizer(num_codes=8, dim=4).train()
    gen = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    vq(torch.randn(1, 6, 4, generator=gen) + 10 * rank)
    stats = vq.epoch_stats()
    vq(torch.randn(1, 6, 4, generator=gen))  # restarts the dead codes from this rank's batch
    return {"codebook": vq.codebook.detach().clone(), "dead": vq.dead.clone(),
            "utilisation": torch.tensor(stats["vq_utilisation"])}


def test_vq_dead_code_restart_agrees_across_ranks(tmp_path: Path) -> None:
    a, b = _on_two_ranks(tmp_path, _vq_restart)
    torch.testing.assert_close(a["codebook"], b["codebook"], rtol=0, atol=0)
    assert a["utilisation"] == b["utilisation"]  # usage summed over both ranks' batches
