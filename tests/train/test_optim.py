"""Warm-up + cosine schedule over a step or time budget."""

from __future__ import annotations

import itertools

import pytest
import torch

from medtoken.train.optim import ProgressSchedule, build_optimizer


def _opt() -> torch.optim.Optimizer:
    return build_optimizer(torch.nn.Linear(2, 2), lr=1.0, weight_decay=0.1)


def test_no_weight_decay_on_biases() -> None:
    opt = _opt()
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[1]["params"][0].ndim == 1


def test_warmup_then_cosine_to_floor() -> None:
    opt = _opt()
    sched = ProgressSchedule(opt, base_lr=1.0, max_steps=10, max_seconds=None, warmup_steps=2,
                             min_lr_ratio=0.1)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        sched.step(0.0)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] == pytest.approx(0.1)
    assert sched.finished()


def test_time_budget_drives_progress_and_state_round_trips() -> None:
    opt = _opt()
    sched = ProgressSchedule(opt, 1.0, max_steps=None, max_seconds=100.0, warmup_steps=0)
    sched.step(50.0)
    assert sched.progress() == pytest.approx(0.5)
    other = ProgressSchedule(_opt(), 1.0, None, 100.0, 0)
    other.load_state_dict(sched.state_dict())
    assert other.lr() == pytest.approx(sched.lr())
