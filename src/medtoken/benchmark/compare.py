"""Side-by-side comparison of trained runs: validation Dice, whole-case time and peak memory.

Used by ``medtoken compare`` and ``medtoken demo``: each run's final-validation ``summary.json``
gives the Dice; the best checkpoint's model is timed on whole cases of the dataset with the
benchmark's volume workload (sliding window, Gaussian blending, argmax; all models interleaved
after a warm-up) and its peak memory is measured in a fresh process
(:mod:`medtoken.benchmark.memory`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from medtoken.benchmark.memory import MemoryJob, measure_peak_memory
from medtoken.benchmark.workload import build_workload, load_volume_cases
from medtoken.config import to_dict
from medtoken.plots.pareto import ParetoPoint, plot_pareto, summary_scores
from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.jsonio import nan_to_none
from medtoken.utils.timing import summarize, time_interleaved

__all__ = ["RunComparison", "compare_runs", "comparison_table", "pareto_points",
           "run_summary", "write_comparison"]

SW_BATCH_SIZE = 2  # medtoken predict's sliding-window batch


@dataclass(frozen=True)
class RunComparison:
    """One trained model's row of the comparison."""

    name: str
    params: int
    steps: int  # the optimiser step of the timed (best) checkpoint, which the Dice validates
    dice: float
    case_ms: float
    peak_mem_mb: float | None
    hd95_mm: float | None = None
    nsd: float | None = None
    trained_steps: int | None = None  # the run's last step, when it went on past its best

    @property
    def steps_cell(self) -> str:
        """``steps``, or ``"S of T"`` when the run trained on past its best checkpoint."""
        if self.trained_steps is None or self.trained_steps == self.steps:
            return str(self.steps)
        return f"{self.steps} of {self.trained_steps}"


def _memory(model: Any, data: Path, case_id: str, device: torch.device) -> float | None:
    roi = list(model.window_size)
    job = MemoryJob(family=type(model.config).family, config=to_dict(model.config),
                    mode="volume", input_size=[SW_BATCH_SIZE, model.in_channels, *roi],
                    device=str(device), threads=torch.get_num_threads(), steps=1,
                    data=str(data), case_ids=[case_id])
    return measure_peak_memory(job, "isolated")[0]


def compare_runs(runs: Sequence[tuple[str, Path, int]], data: str | Path, device: torch.device,
                 cases: int = 4, warmup: int = 1,
                 summaries: Mapping[str, Path] | None = None) -> list[RunComparison]:
    """Compare trained runs on the same whole cases.

    Args:
        runs: ``(name, run folder, optimiser steps trained)`` per model; the row's ``steps`` is
            the step of the best checkpoint (the one timed and validated), ``trained_steps``
            these.
        data: the dataset the cases are read from (``cases`` of them, spread over its ids).
        cases: timed whole cases per model (interleaved, after ``warmup`` untimed ones).
        summaries: run name -> the ``summary.json`` of ``medtoken evaluate`` to take its Dice
            from, instead of the run's final validation (a run not finished yet).

    Returns:
        one :class:`RunComparison` per run, in order.
    """
    from medtoken.models.checkpoint import load_model_checkpoint

    scores = {name: summary_scores((summaries or {}).get(name, run_summary(folder)))
              for name, folder, _ in runs}  # bad summaries fail before anything is timed
    loaded = {name: load_model_checkpoint(folder, device=device) for name, folder, _ in runs}
    models = {name: run.model for name, run in loaded.items()}
    first = next(iter(models.values()))
    volume = load_volume_cases(data, cases, first.in_channels, first.spatial_dims)
    largest = volume.case_ids[volume.largest]
    memory = {name: _memory(m, Path(data), largest, device) for name, m in models.items()}
    steps = {}
    for name, model in models.items():
        roi = model.window_size
        steps[name] = build_workload(model, "volume", (SW_BATCH_SIZE, model.in_channels, *roi),
                                     device, cases=volume).step
    times = time_interleaved(steps, warmup, len(volume.case_ids), device)
    rows = []
    for name, _, trained in runs:
        rows.append(RunComparison(
            name, sum(p.numel() for p in models[name].parameters()),
            int(loaded[name].state.get("step", trained)), scores[name].dice,
            summarize(times[name])["median"], memory[name], scores[name].hd95_mm,
            scores[name].nsd, trained))
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def comparison_table(rows: Sequence[RunComparison]) -> str:
    """A Markdown table of the rows, with each model's ratios to the last row (the baseline)."""
    base = rows[-1]
    lines = ["| model | params M | steps | val mean fg Dice | HD95 mm | NSD | "
             "whole-case ms (median) | peak MB | time × | memory × |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = _fmt(r.peak_mem_mb, ".0f")
        mem_ratio = ("–" if r.peak_mem_mb is None or not base.peak_mem_mb
                     else f"{r.peak_mem_mb / base.peak_mem_mb:.2f}")
        lines.append(f"| `{r.name}`{' (baseline)' if r is base else ''} | {r.params / 1e6:.2f} "
                     f"| {r.steps_cell} | {r.dice:.4f} | {_fmt(r.hd95_mm, '.2f')} "
                     f"| {_fmt(r.nsd, '.3f')} | {r.case_ms:.0f} | {mem} "
                     f"| {r.case_ms / base.case_ms:.2f} | {mem_ratio} |")
    return "\n".join(lines)


def run_summary(run_dir: str | Path) -> Path:
    """The ``summary.json`` of a run's final validation."""
    return Path(run_dir) / "validation" / "summary.json"


def pareto_points(rows: Sequence[RunComparison]) -> list[ParetoPoint]:
    """One whole-case point per row (cases/s, median case time, peak memory)."""
    return [ParetoPoint(r.name, 1e3 / r.case_ms, r.dice, "volume", r.case_ms, r.peak_mem_mb)
            for r in rows]


def write_comparison(rows: Sequence[RunComparison], out: Path, title: str = "") -> list[Path]:
    """Write ``comparison.md`` (the table), ``comparison.json`` (the rows) and ``pareto.png``
    (Dice against whole-case time and against peak memory) into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    table, records, picture = out / "comparison.md", out / "comparison.json", out / "pareto.png"
    atomic_write_text(table, f"# {title or 'medtoken compare'}\n\n{comparison_table(rows)}\n")
    atomic_write_text(records, json.dumps([nan_to_none(asdict(r)) for r in rows], indent=2)
                      + "\n")
    axes = ("latency", "memory") if all(r.peak_mem_mb is not None for r in rows) else ("latency",)
    plot_pareto(pareto_points(rows), picture, title=title, axes=axes)
    return [table, records, picture]
