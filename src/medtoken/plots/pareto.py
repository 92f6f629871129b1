"""Accuracy against speed: validation/test Dice versus benchmark throughput, one point per model.

The points that no other point beats on both axes (the Pareto front) are joined by a line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtoken.plots.charts import pyplot, save_figure
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json

__all__ = ["ParetoPoint", "load_pareto_points", "pareto_front", "plot_pareto"]

LOG_SCALE_RATIO = 20  # use a log throughput axis when the fastest is this many times the slowest


@dataclass(frozen=True)
class ParetoPoint:
    """One model: its name, throughput (per second) and foreground mean Dice.

    Attributes:
        mode: the benchmark mode of the throughput (``volume``: cases/s, else items/s).
    """

    name: str
    throughput: float
    dice: float
    mode: str = "infer"


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(path, f"no such file ({what})")
    return read_json(path)


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
    records = _read_json(results, "benchmark results.json")
    if not isinstance(records, list) or not records:
        raise InputError(results, "expected a non-empty list of benchmark records")
    points = []
    for name, summary_path in summaries.items():
        record = _find_record(records, name, mode, results)
        summary = _read_json(Path(summary_path), "evaluation summary.json")
        try:
            dice = float(summary["foreground_mean"]["Dice"])
        except (KeyError, TypeError, ValueError):
            raise InputError(summary_path, "has no foreground_mean.Dice (is it a summary.json "
                             "of medtoken evaluate?)") from None
        points.append(ParetoPoint(name, float(record["throughput_per_s"]), dice,
                                  str(record.get("mode", "infer"))))
    return points


def pareto_front(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The points not dominated by another (faster and at least as accurate, or the reverse),
    sorted by throughput."""
    def dominated(p: ParetoPoint) -> bool:
        return any(q.throughput >= p.throughput and q.dice >= p.dice
                   and (q.throughput > p.throughput or q.dice > p.dice) for q in points)

    return sorted((p for p in points if not dominated(p)), key=lambda p: p.throughput)


def plot_pareto(points: Sequence[ParetoPoint], out: str | Path, title: str = "") -> Path:
    """Scatter of Dice against throughput with the Pareto front; returns ``out``."""
    if not points:
        raise ValueError("no points to plot")
    modes = sorted({p.mode for p in points})
    unit = "cases/s" if modes == ["volume"] else "items/s"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for p in points:
        ax.scatter(p.throughput, p.dice, s=50, zorder=3)
        ax.annotate(p.name, (p.throughput, p.dice), textcoords="offset points", xytext=(6, 4),
                    fontsize=9)
    front = pareto_front([p for p in points if not math.isnan(p.dice)])
    if len(front) > 1:
        ax.plot([p.throughput for p in front], [p.dice for p in front], color="black",
                linestyle="--", linewidth=1, label="Pareto front", zorder=2)
        ax.legend(fontsize=8)
    speeds = [p.throughput for p in points if p.throughput > 0]
    if speeds and max(speeds) / min(speeds) >= LOG_SCALE_RATIO:
        ax.set_xscale("log")
    ax.set_xlabel(f"throughput ({unit}, higher is faster)")
    ax.set_ylabel("foreground mean Dice")
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.1)
    ax.set_title(title or f"accuracy vs speed ({', '.join(modes)})")
    fig.tight_layout()
    return save_figure(fig, out)
