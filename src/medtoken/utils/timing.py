"""Interleaved wall-clock timing with warm-up and device synchronisation.

All models are warmed up first; then each repetition runs every model once, in a fixed order
(A B A B ...), so that machine drift (thermal throttling, other processes, clock changes) hits all
of them alike. On CUDA the device is synchronised before and after each timed step, so a step's
time covers its kernels and not only their launch.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch

__all__ = ["summarize", "synchronize", "time_interleaved"]


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on a CUDA ``device``; no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(steps: Mapping[str, Callable[[int], None]], warmup: int, repeats: int,
                     device: torch.device) -> dict[str, list[float]]:
    """Time every step ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    Args:
        steps: name -> step; a step's argument is the repetition index.
        warmup: untimed calls per step before timing starts.
        repeats: timed calls per step.

    Returns:
        name -> step times in milliseconds, in the order they ran.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for step in steps.values():
        for index in range(warmup):
            step(index)
    synchronize(device)
    gc.collect()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step(index)
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """Median, min, max and quartiles (q1, q3) of step times, in milliseconds."""
    if not times_ms:
        raise ValueError("no times to summarize")
    ordered = sorted(times_ms)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": q1, "q3": q3, "n": len(ordered)}
