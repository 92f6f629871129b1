"""Benchmark charts: ratios to the baseline as bars, and sweeps as lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtoken.utils.atomic import atomic_path

__all__ = ["plot_benchmark_chart", "plot_sweep", "pyplot", "save_figure", "sweep_series"]

DPI = 100
BAR_HEIGHT_IN = 0.45  # figure height per bar
BASELINE_COLOUR = "tab:gray"
MODEL_COLOUR = "tab:blue"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str | Path) -> Path:
    """Save ``fig`` as a PNG at ``out`` atomically and close it."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    pyplot().close(fig)
    return Path(out)


def _bars(ax: Any, labels: Sequence[str], values: Sequence[float | None], colours: list[str],
          title: str, reference: float | None) -> None:
    shown = [0.0 if v is None else float(v) for v in values]
    ax.barh(range(len(labels)), shown, color=colours)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_title(title)
    if reference is not None:
        ax.axvline(reference, color="black", linewidth=1, linestyle="--")
    for i, v in enumerate(values):
        ax.text(shown[i], i, " n/a" if v is None else f" {v:.3g}", va="center", fontsize=8)
    ax.margins(x=0.2)


def plot_benchmark_chart(records: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Horizontal bars per record: speed-up and memory relative to the baseline (dashed line at
    1), or median latency and peak memory when there is no baseline."""
    plt = pyplot()
    labels = [r["label"] for r in records]
    colours = [BASELINE_COLOUR if r.get("is_baseline") else MODEL_COLOUR for r in records]
    ratios = any(r.get("speedup_vs_baseline") is not None for r in records)
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.5 + BAR_HEIGHT_IN * len(records)),
                             squeeze=False)
    if ratios:
        base = next((r["label"] for r in records if r.get("is_baseline")), "baseline")
        _bars(axes[0, 0], labels, [r.get("speedup_vs_baseline") for r in records], colours,
              "speed-up vs baseline (higher is faster)", 1.0)
        _bars(axes[0, 1], [""] * len(labels), [r.get("memory_vs_baseline") for r in records],
              colours, "peak memory / baseline (lower is leaner)", 1.0)
        fig.suptitle(f"{records[0]['mode']} on {records[0]['device_name']}; baseline: {base}")
    else:
        _bars(axes[0, 0], labels, [r["latency_ms"]["median"] for r in records], colours,
              "median latency (ms)", None)
        _bars(axes[0, 1], [""] * len(labels), [r.get("peak_mem_mb") for r in records], colours,
              "peak memory (MB)", None)
        fig.suptitle(f"{records[0]['mode']} on {records[0]['device_name']}")
    fig.tight_layout()
    return save_figure(fig, out)


def _positions(values: Sequence[Any]) -> tuple[list[float], list[str] | None]:
    """x positions of sweep values: the numbers themselves, or 0, 1, ... with tick labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    return [float(i) for i in range(len(values))], [str(v) for v in values]


def sweep_series(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """One line per model and variant: label (``base_spec`` + the record's ``variant``, e.g.
    `` [compiled]``) -> its records in point order."""
    series: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        series.setdefault(r["base_spec"] + r.get("variant", ""), []).append(r)
    return {label: sorted(rows, key=lambda r: r["point"]) for label, rows in series.items()}


def plot_sweep(records: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Median latency (band: min–max) and peak memory against the swept value, one line per
    model and variant (:func:`sweep_series`)."""
    plt = pyplot()
    key = records[0]["sweep_key"]
    values = list(dict.fromkeys(r["point"] for r in records))
    point_values = {r["point"]: r["sweep_value"] for r in records}
    scaling = key == "roi_size"  # a scaling curve: x = voxels (tokens), log-log axes
    if scaling:
        xs, ticks = [float(math.prod(point_values[p])) for p in values], None
    else:
        xs, ticks = _positions([point_values[p] for p in values])
    x_of = dict(zip(values, xs, strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), squeeze=False)
    for spec, rows in sweep_series(records).items():
        x = [x_of[r["point"]] for r in rows]
        median = [r["latency_ms"]["median"] for r in rows]
        line = axes[0, 0].plot(x, median, marker="o", label=spec)[0]
        axes[0, 0].fill_between(x, [r["latency_ms"]["min"] for r in rows],
                                [r["latency_ms"]["max"] for r in rows],
                                color=line.get_color(), alpha=0.2)
        memory = [r.get("peak_mem_mb") for r in rows]
        if any(m is not None for m in memory):
            axes[0, 1].plot(x, [float("nan") if m is None else m for m in memory], marker="o",
                            color=line.get_color(), label=spec)
    for ax, ylabel in zip(axes[0], ("median latency (ms)", "peak memory (MB)"), strict=True):
        ax.set_xlabel("voxels (= tokens of a full-resolution layer)" if scaling else key)
        if scaling:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ticks is not None:
            ax.set_xticks(xs, ticks)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{records[0]['mode']} sweep over {key} on {records[0]['device_name']}")
    fig.tight_layout()
    return save_figure(fig, out)
