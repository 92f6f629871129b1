"""Optimiser and learning-rate schedule, as named by :class:`~medtoken.train.config.TrainConfig`.

Optimisers: ``adamw`` and ``adam`` (``betas``), ``sgd`` (``momentum``, ``nesterov``); weight
decay never applies to biases, norms and other 1-D parameters. ``layer_decay`` < 1 scales the
learning rate of ViT encoder block ``k`` of ``n`` (parameters named ``encoder.blocks.k.``) by
``layer_decay ** (n - k)`` and of the patch embedding, class token and position embedding by
``layer_decay ** (n + 1)`` (BEiT/MAE-style; everything else 1).

Schedules run on *progress* in [0, 1]: the larger of steps done / step budget and seconds spent /
time budget, so that a run limited by ``--max-minutes`` still anneals to the end of its budget.

- ``warmup_cosine``: linear warm-up over ``warmup_steps``, then cosine from ``lr`` to
  ``min_lr_ratio * lr`` over the budget (per step);
- ``exponential``: ``lr * lr_gamma ** epoch``, the epoch counted in ``steps_per_epoch`` steps
  (PyTorch's ``ExponentialLR`` stepped once per epoch);
- ``poly``: ``lr * (1 - progress) ** poly_exponent`` (per step).

``exponential`` and ``poly`` take ``warmup_steps`` too (0 in their recipes).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from medtoken.train.config import TrainConfig

__all__ = ["ProgressSchedule", "build_optimizer", "layer_lr_scale", "load_optimizer_state",
           "optimizer_from_config", "schedule_from_config"]

_BLOCK = re.compile(r"^encoder\.blocks\.(\d+)\.")
_EMBEDDINGS = ("encoder.patch_embed.", "encoder.cls_token", "encoder.pos_embed")


def layer_lr_scale(name: str, num_blocks: int, decay: float) -> float:
    """The learning-rate factor of parameter ``name`` under layer decay ``decay``."""
    if decay == 1.0 or num_blocks == 0:
        return 1.0
    match = _BLOCK.match(name)
    if match:
        return float(decay ** (num_blocks - int(match.group(1))))
    if name.startswith(_EMBEDDINGS):
        return float(decay ** (num_blocks + 1))
    return 1.0


def _param_groups(model: torch.nn.Module, weight_decay: float,
                  layer_decay: float) -> list[dict[str, Any]]:
    """One group per (decay or not, lr scale); groups carry ``lr_scale`` for the schedule."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    blocks = {int(m.group(1)) for n, _ in named if (m := _BLOCK.match(n))}
    num_blocks = max(blocks) + 1 if blocks else 0
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in named:
        key = (p.ndim > 1, layer_lr_scale(name, num_blocks, layer_decay))
        groups.setdefault(key, []).append(p)
    ordered = sorted(groups.items(), key=lambda kv: (-kv[0][1], not kv[0][0]))  # scale 1 first
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
            for (decay, scale), params in ordered]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, name: str = "adamw",
                    betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.99,
                    nesterov: bool = True, layer_decay: float = 1.0) -> torch.optim.Optimizer:
    """``adamw``, ``adam`` or ``sgd`` without weight decay on 1-D parameters (see the module).

    The fused implementation is used whenever every parameter is a floating-point tensor on the
    CPU or a CUDA device: PyTorch otherwise defaults to one small loop per tensor on the CPU,
    2.3-5.9x slower per step for medtoken's models (``scd_hippo``: 58 ms against 18 ms fused;
    docs/benchmarks.md, "The optimiser step"); the update is the same up to rounding.
    """
    groups = _param_groups(model, weight_decay, layer_decay)
    fused = _can_fuse([p for g in groups for p in g["params"]])
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, fused=fused)
    raise ValueError(f"unknown optimizer {name!r}")


def _can_fuse(params: list[torch.nn.Parameter]) -> bool | None:
    """``True`` when PyTorch's fused optimiser kernels take ``params``; else ``None`` (its
    default choice)."""
    ok = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                              for p in params)
    return True if ok else None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping the kernels ``optimizer`` was built with.

    PyTorch restores the saved groups' ``fused``/``foreach`` and places each saved ``step``
    by them, so a checkpoint written before the fused kernels were chosen would switch them off
    (or, forced back on afterwards, leave ``step`` on the CPU for CUDA parameters): the current
    choice is written into the saved groups before they are loaded.

    Per-parameter state (Adam's moments, SGD's momentum) is then laid out in memory as its
    parameter is: the fused kernels walk parameter, gradient and state in memory order, so
    moments saved in another layout (a TM-UNet checkpoint from before its weights went
    channels-last) would be paired with other elements, silently.
    """
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    saved = state.get("param_groups", [])
    if len(saved) == len(kernels):  # otherwise PyTorch's own error says what does not match
        state = {**state, "param_groups": [{**g, **k} for g, k in zip(saved, kernels,
                                                                          strict=True)]}
    optimizer.load_state_dict(state)
    for param, param_state in optimizer.state.items():
        for key, value in param_state.items():
            if (torch.is_tensor(value) and value.shape == param.shape
                    and value.stride() != param.stride()):
                param_state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def optimizer_from_config(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names, over ``model``'s trainable parameters."""
    return build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.betas,
                           cfg.momentum, cfg.nesterov, cfg.layer_decay)


class ProgressSchedule:
    """Learning rate as a function of training progress (see the module for the kinds).

    Args:
        optimizer: its groups' ``lr`` is set on every :meth:`step` (times a group's
            ``lr_scale``, default 1).
        base_lr: peak learning rate.
        max_steps: step budget (``None`` = unlimited).
        max_seconds: time budget (``None`` = unlimited).
        warmup_steps: linear warm-up length.
        min_lr_ratio: floor of the cosine, as a fraction of ``base_lr``.
        kind: ``warmup_cosine``, ``exponential`` or ``poly``.
        gamma: per-epoch factor of ``exponential``.
        steps_per_epoch: the epoch of ``exponential``.
        exponent: exponent of ``poly``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, max_steps: int | None,
                 max_seconds: float | None, warmup_steps: int, min_lr_ratio: float = 0.01,
                 kind: str = "warmup_cosine", gamma: float = 0.98, steps_per_epoch: int = 1,
                 exponent: float = 0.9) -> None:
        if kind not in ("warmup_cosine", "exponential", "poly"):
            raise ValueError(f"unknown schedule {kind!r}")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.kind, self.gamma, self.exponent = kind, gamma, exponent
        self.steps_per_epoch = steps_per_epoch
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
        """The (unscaled) learning rate for the next step."""
        if self.step_count < self.warmup_steps:
            return self.base_lr * (self.step_count + 1) / self.warmup_steps
        if self.kind == "exponential":
            return float(self.base_lr * self.gamma ** (self.step_count // self.steps_per_epoch))
        if self.kind == "poly":
            return float(self.base_lr * (1.0 - self.progress()) ** self.exponent)
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress()))
        return self.base_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

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


def schedule_from_config(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> ProgressSchedule:
    """The schedule ``cfg`` names, over its step and time budgets."""
    return ProgressSchedule(optimizer, cfg.lr, cfg.total_steps,
                            cfg.max_minutes * 60 if cfg.max_minutes else None, cfg.warmup_steps,
                            cfg.min_lr_ratio, cfg.scheduler, cfg.lr_gamma, cfg.steps_per_epoch,
                            cfg.poly_exponent)
