"""Optimiser and learning-rate schedule.

AdamW with linear warm-up then cosine decay. The schedule runs on *progress* in [0, 1]: the larger
of steps done / step budget and seconds spent / time budget, so that a run limited by
``--max-minutes`` still anneals to the end of its budget.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["ProgressSchedule", "build_optimizer"]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms and embeddings (1-D parameters)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


class ProgressSchedule:
    """Warm-up + cosine learning rate as a function of training progress.

    Args:
        optimizer: its groups' ``lr`` is set on every :meth:`step`.
        base_lr: peak learning rate.
        max_steps: step budget (``None`` = unlimited).
        max_seconds: time budget (``None`` = unlimited).
        warmup_steps: linear warm-up length.
        min_lr_ratio: floor of the cosine, as a fraction of ``base_lr``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, max_steps: int | None,
                 max_seconds: float | None, warmup_steps: int, min_lr_ratio: float = 0.01) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.step_count = 0
        self.seconds = 0.0
        self._apply()

    def progress(self) -> float:
        """Fraction of the budget used, in [0, 1]."""
        parts = [0.0]
        if self.max_steps:
            parts.append(self.step_count / self.max_steps)
        if self.max_seconds:
            parts.append(self.seconds / self.max_seconds)
        return min(1.0, max(parts))

    def lr(self) -> float:
        """The learning rate for the next step."""
        if self.step_count < self.warmup_steps:
            return self.base_lr * (self.step_count + 1) / self.warmup_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress()))
        return self.base_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, seconds: float) -> None:
        """Record one optimiser step that took ``seconds`` of training time."""
        self.step_count += 1
        self.seconds += seconds
        self._apply()

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.seconds = float(state["seconds"])
        self._apply()
