"""Where the time goes: forward wall time per top-level submodule of a model.

``medtoken benchmark --profile`` runs a few extra eval forwards of each model after the timed
steps, with hooks around every direct child module (SCD: ``encoder``, ``completion``,
``decoder``; TokenSeg: ``encoder``, ``tokenizer``, ``decoder``...). A child that is a container
(``nn.ModuleList`` / ``nn.ModuleDict``, never called itself) is timed through its members, added
up under its own name (TM-UNet: ``encoders``, ``enc_blocks``, ``dec_blocks``...). The per-child
medians say which part a speed-up can come from; the rest (``other``: the parent's own code
between children) is the forward's median time minus their sum. Children called more than once
per forward add up. Hooks do not change what is computed; they add a clock read per call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from medtoken.utils.timing import synchronize

__all__ = ["OTHER", "profile_children"]

OTHER = "other"  # forward time not spent inside any direct child


def _timed(name: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(label, module)`` to hook for the direct child ``name``: itself, or a container's
    members (recursively), all labelled ``name``."""
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
        return [pair for member in module.children() for pair in _timed(name, member)]
    return [(name, module)]


def _hooks(model: nn.Module, device: torch.device,
           spent: dict[str, float]) -> list[torch.utils.hooks.RemovableHandle]:
    starts: dict[int, float] = {}

    def pre(m: nn.Module, _a: Any) -> None:
        synchronize(device)
        starts[id(m)] = time.perf_counter()

    handles = []
    for name, module in (pair for n, c in model.named_children() for pair in _timed(n, c)):
        def post(m: nn.Module, _a: Any, _o: Any, name: str = name) -> None:
            synchronize(device)
            spent[name] = spent.get(name, 0.0) + (time.perf_counter() - starts.pop(id(m))) * 1e3

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def profile_children(model: nn.Module, forward: Callable[[], Any], device: torch.device,
                     steps: int = 3) -> dict[str, float]:
    """Median forward milliseconds per direct child of ``model`` over ``steps`` calls of
    ``forward`` (which runs the model once), plus :data:`OTHER` and ``"total"``.

    Returns:
        child name -> median ms, in the order the children were registered, then ``other`` and
        ``total``; children that never ran are left out.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    per_step: list[dict[str, float]] = []
    totals: list[float] = []
    for _ in range(steps):
        spent: dict[str, float] = {}
        handles = _hooks(model, device, spent)
        try:
            synchronize(device)
            start = time.perf_counter()
            forward()
            synchronize(device)
            totals.append((time.perf_counter() - start) * 1e3)
        finally:
            for handle in handles:
                handle.remove()
        per_step.append(spent)
    names = [n for n, _ in model.named_children() if any(n in s for s in per_step)]
    result = {n: statistics.median(s.get(n, 0.0) for s in per_step) for n in names}
    total = statistics.median(totals)
    result[OTHER] = max(0.0, total - sum(result.values()))
    result["total"] = total
    return result
