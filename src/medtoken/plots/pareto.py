"""Accuracy against cost: validation/test Dice versus throughput, latency or peak memory, one
point per model, one panel per cost axis.

The points that no other point beats on both axes of a panel (its Pareto front) are joined by a
line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from medtoken.plots.charts import pyplot, save_figure
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json

__all__ = ["AXES", "ParetoPoint", "SummaryScores", "default_axes", "load_pareto_points",
           "pareto_front", "plot_pareto", "summary_scores"]

LOG_SCALE_RATIO = 20  # use a log cost axis when the largest is this many times the smallest
AXES = ("throughput", "latency", "memory")  # the cost axes a panel can show


@dataclass(frozen=True)
class ParetoPoint:
    """One model: its name, throughput (per second) and foreground mean Dice.

    Attributes:
        mode: the benchmark mode of the throughput (``volume``: cases/s, else items/s).
        latency_ms: median time of one benchmark step (``volume``: one whole case).
        peak_mem_mb: peak memory (MiB) when measured: on CPU the process's peak RSS above its
            idle RSS, on CUDA the peak allocated GPU memory.
    """

    name: str
    throughput: float
    dice: float
    mode: str = "infer"
    latency_ms: float | None = None
    peak_mem_mb: float | None = None

    def cost(self, axis: str) -> float | None:
        """The point's value on cost ``axis`` (one of :data:`AXES`)."""
        if axis == "throughput":
            return self.throughput
        if axis == "latency":
            return self.latency_ms
        if axis == "memory":
            return self.peak_mem_mb
        raise ValueError(f"unknown axis '{axis}' (expected one of {', '.join(AXES)})")


class SummaryScores(NamedTuple):
    """The foreground means of a ``summary.json`` of ``medtoken evaluate``."""

    dice: float  # NaN when the file says null
    hd95_mm: float | None  # None when the file has no such key
    nsd: float | None


def summary_scores(path: str | Path) -> SummaryScores:
    """Dice, HD95 and NSD of the foreground mean of a ``summary.json`` of ``medtoken evaluate``.

    Raises:
        InputError: the file is missing or holds no ``foreground_mean.Dice``.
    """
    summary = read_json(path, "evaluation summary.json")
    try:
        mean = summary["foreground_mean"]
        dice = math.nan if mean["Dice"] is None else float(mean["Dice"])
        hd95, nsd = (None if mean.get(k) is None else float(mean[k]) for k in ("HD95_mm", "NSD"))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(path, "has no foreground_mean.Dice (is it a summary.json of medtoken "
                         "evaluate?)") from None
    return SummaryScores(dice, hd95, nsd)


def _canonical(name: str) -> str:
    """``unet3d:channels=[4,8]`` spelled as benchmark records spell specs (``[4, 8]``)."""
    from medtoken.config import parse_spec

    try:
        return parse_spec(name).text
    except InputError:
        return name


def _find_record(records: Sequence[dict[str, Any]], name: str, mode: str | None,
                 results: Path) -> dict[str, Any]:
    """The record whose ``label``, ``spec`` or ``model`` is ``name`` (in ``mode`` if given)."""
    pool = [r for r in records if mode is None or r.get("mode") == mode]
    for field in ("label", "spec", "model"):
        found = [r for r in pool if r.get(field) in (name, _canonical(name))]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            modes = sorted({str(r.get("mode")) for r in found})
            raise InputError(results, f"'{name}' matches {len(found)} records (modes: "
                             f"{', '.join(modes)}); name one by its label or pass --mode")
    names = sorted({str(r.get("label")) for r in pool})
    raise InputError(results, f"no record for '{name}'" + (f" in mode {mode}" if mode else "")
                     + "; labels: " + ", ".join(names))


def load_pareto_points(results: str | Path, summaries: Mapping[str, str | Path],
                       mode: str | None = None) -> list[ParetoPoint]:
    """Pair each ``NAME -> summary.json`` with the benchmark record named ``NAME``.

    Args:
        results: a ``results.json`` written by ``medtoken benchmark``.
        summaries: model name (a record's label, spec or preset) -> ``summary.json`` of
            ``medtoken evaluate`` (its ``foreground_mean.Dice`` is used).
        mode: only consider records of this benchmark mode.
    """
    results = Path(results)
    records = read_json(results, "benchmark results.json")
    if not isinstance(records, list) or not records:
        raise InputError(results, "expected a non-empty list of benchmark records")
    points = []
    for name, summary_path in summaries.items():
        record = _find_record(records, name, mode, results)
        dice = summary_scores(summary_path).dice
        latency = record.get("latency_ms")
        memory = record.get("peak_mem_mb")
        points.append(ParetoPoint(
            name, float(record["throughput_per_s"]), dice, str(record.get("mode", "infer")),
            float(latency["median"]) if isinstance(latency, dict) else None,
            None if memory is None else float(memory)))
    return points


def pareto_front(points: Sequence[ParetoPoint], axis: str = "throughput") -> list[ParetoPoint]:
    """The points not dominated by another on Dice and the cost ``axis`` (higher throughput or
    lower latency/memory is better), sorted along that axis; points without a value are left
    out."""
    sign = 1.0 if axis == "throughput" else -1.0  # turn every axis into "higher is better"
    valued = [(p, sign * c) for p in points if (c := p.cost(axis)) is not None
              and not math.isnan(p.dice)]

    def dominated(p: ParetoPoint, gain: float) -> bool:
        return any(g >= gain and q.dice >= p.dice and (g > gain or q.dice > p.dice)
                   for q, g in valued)

    front = [(p, g) for p, g in valued if not dominated(p, g)]
    return [p for p, _ in sorted(front, key=lambda pg: sign * pg[1])]


def default_axes(points: Sequence[ParetoPoint]) -> tuple[str, ...]:
    """Whole-case latency and peak memory when every point is a whole-case (volume) measure
    with both values, else throughput."""
    if points and all(p.mode == "volume" and p.latency_ms is not None
                      and p.peak_mem_mb is not None for p in points):
        return ("latency", "memory")
    return ("throughput",)


def _axis_label(axis: str, modes: list[str]) -> str:
    volume = modes == ["volume"]
    if axis == "throughput":
        return f"throughput ({'cases/s' if volume else 'items/s'}, higher is faster)"
    if axis == "latency":
        what = "whole-case time" if volume else "latency per step"
        return f"{what} (s, median; lower is faster)"
    return "peak memory (MiB; CPU: RSS above the idle process; lower is better)"


def _panel(ax: Any, points: Sequence[ParetoPoint], axis: str, modes: list[str]) -> None:
    scale = 1e-3 if axis == "latency" else 1.0  # latency is drawn in seconds
    shown = [(p, c * scale) for p in points if (c := p.cost(axis)) is not None]
    for p, x in shown:
        ax.scatter(x, p.dice, s=50, zorder=3)
        ax.annotate(p.name, (x, p.dice), textcoords="offset points", xytext=(6, 4), fontsize=9)
    front = pareto_front(points, axis)
    if len(front) > 1:
        ax.plot([c * scale for p in front if (c := p.cost(axis)) is not None],
                [p.dice for p in front], color="black", linestyle="--", linewidth=1,
                label="Pareto front", zorder=2)
        ax.legend(fontsize=8)
    values = [x for _, x in shown if x > 0]
    if values and max(values) / min(values) >= LOG_SCALE_RATIO:
        ax.set_xscale("log")
    ax.set_xlabel(_axis_label(axis, modes))
    ax.set_ylabel("foreground mean Dice")
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.1)


def plot_pareto(points: Sequence[ParetoPoint], out: str | Path, title: str = "",
                axes: Sequence[str] | None = None) -> Path:
    """Dice against each cost axis (default: :func:`default_axes`), one panel per axis, with
    the Pareto fronts; returns ``out``."""
    if not points:
        raise ValueError("no points to plot")
    axes = tuple(axes) if axes else default_axes(points)
    for axis in axes:
        if axis not in AXES:
            raise ValueError(f"unknown axis '{axis}' (expected one of {', '.join(AXES)})")
        missing = [p.name for p in points if p.cost(axis) is None]
        if missing:
            raise InputError(f"--x {axis}", f"no {axis} measured for {', '.join(missing)}")
    modes = sorted({p.mode for p in points})
    plt = pyplot()
    fig, panels = plt.subplots(1, len(axes), figsize=(7 * len(axes), 5), squeeze=False)
    for ax, axis in zip(panels[0], axes, strict=True):
        _panel(ax, points, axis, modes)
    fig.suptitle(title or f"accuracy vs cost ({', '.join(modes)})")
    fig.tight_layout()
    return save_figure(fig, out)
