"""Benchmark records out: environment facts, baseline ratios, JSON, CSV, Markdown and charts.

Files written by :func:`write_results` (all atomically):

- ``results.json``: the list of records (one per model and benchmark point);
- ``results.csv``: the same, flattened (``latency_ms_median``, ...), nested values as JSON;
- ``results.md``: machine, date and the exact command line, then a table to paste;
- ``chart.png``: speed-up and memory relative to the baseline (absolute values without one);
- ``sweep.png``: with ``--sweep``, latency and memory against the swept value.
"""

from __future__ import annotations

import datetime
import json
import platform
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.tables import rows_to_csv

__all__ = ["add_baseline_ratios", "environment", "markdown_report", "write_results"]

GIT_TIMEOUT_S = 5
_CSV_SKIP = ("case_ids", "cases")


def cpu_model_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the medtoken source tree (``+dirty`` with local changes), if it is a repo."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha or None


def environment(device: torch.device) -> dict[str, Any]:
    """Machine and software facts recorded with every benchmark record."""
    from medtoken.utils.version import __version__

    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model_name(),
        "cpu_model": cpu_model_name(),
        "hostname": socket.gethostname(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if cuda else None,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        "medtoken_version": __version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def add_baseline_ratios(records: list[dict[str, Any]]) -> None:
    """Add ``speedup_vs_baseline`` (baseline median latency / this one) and
    ``memory_vs_baseline`` (this peak memory / the baseline's), per benchmark point, in place.

    Both are ``None`` where there is no baseline at the record's point or a value is missing.
    """
    baselines = {r["point"]: r for r in records if r.get("is_baseline")}
    for record in records:
        base = baselines.get(record["point"])
        record["baseline"] = base["spec"] if base else None
        record["speedup_vs_baseline"] = None
        record["memory_vs_baseline"] = None
        if base is None:
            continue
        median = record["latency_ms"]["median"]
        record["speedup_vs_baseline"] = base["latency_ms"]["median"] / median
        if base.get("peak_mem_mb") and record.get("peak_mem_mb") is not None:
            record["memory_vs_baseline"] = record["peak_mem_mb"] / base["peak_mem_mb"]


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key in _CSV_SKIP:
            continue
        if key == "latency_ms":
            row.update({f"latency_ms_{k}": v for k, v in value.items()})
        elif isinstance(value, (dict, list)):
            row[key] = json.dumps(value)
        else:
            row[key] = value
    return row


def csv_text(records: Sequence[dict[str, Any]]) -> str:
    """The records as CSV (columns: union of the flattened keys, first-seen order)."""
    return rows_to_csv([_flatten(r) for r in records])


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _table(records: Sequence[dict[str, Any]]) -> list[str]:
    unit = "cases/s" if records and records[0]["mode"] == "volume" else "items/s"
    compiled = any(r.get("compiled") for r in records)
    lines = [f"| model | mode | input | latency ms median (min–max) | {unit} | peak MB | GFLOPs "
             "| params M | speed-up | memory × |" + (" compile s |" if compiled else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if compiled else "")]
    for r in records:
        extra = f" {_fmt(r.get('compile_s'), '.1f')} |" if compiled else ""
        lat = r["latency_ms"]
        lines.append(
            f"| `{r['label']}`{' (baseline)' if r.get('is_baseline') else ''} | {r['mode']} "
            f"| {'x'.join(map(str, r['input_size']))} "
            f"| {lat['median']:.2f} ({lat['min']:.2f}–{lat['max']:.2f}) "
            f"| {r['throughput_per_s']:.3g} | {_fmt(r.get('peak_mem_mb'), '.1f')} "
            f"| {_fmt(r.get('gflops'), '.3g')} | {r['params'] / 1e6:.3g} "
            f"| {_fmt(r.get('speedup_vs_baseline'), '.2f')} "
            f"| {_fmt(r.get('memory_vs_baseline'), '.2f')} |{extra}")
    return lines


def _volume_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """Volume mode: the whole-case columns (process time, peak RSS, memory-time area)."""
    lines = ["| model | stitching | case | windows | predict s median (min–max) | process s "
             "median | peak RSS MB | peak GPU MB | RSS·time MB·s | speed-up | memory × "
             "| voxels = baseline |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lat, proc = r["latency_ms"], r["process_ms"]
        size = r.get("volume_size")
        case = "×".join(map(str, size)) if size else f"{r['num_cases']} of {r['data']}"
        match = r.get("labels_match_baseline")
        lines.append(
            f"| `{r['label']}`{' (baseline)' if r.get('is_baseline') else ''} "
            f"| {r['stitching']} | {case} | {r['windows_per_case']} "
            f"| {lat['median'] / 1e3:.2f} ({lat['min'] / 1e3:.2f}–{lat['max'] / 1e3:.2f}) "
            f"| {proc['median'] / 1e3:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {_fmt(r.get('peak_gpu_mb'), '.0f')} | {r['rss_auc_mb_s']:.0f} "
            f"| {_fmt(r.get('speedup_vs_baseline'), '.2f')} "
            f"| {_fmt(r.get('memory_vs_baseline'), '.2f')} "
            f"| {'–' if match is None else format(match, '.3%')} |")
    return [*lines, "", "predict s: the prediction call inside the process (as medtoken "
            "predict's); process s: the whole process from spawn to exit (imports, reading or "
            "generating the case, building the model). Peak RSS: the process's VmHWM. "
            "RSS·time: area under its VmRSS sampled every 50 ms (FLARE's memory-time area). "
            "Speed-up on predict s; memory × on the peak above the idle RSS. Voxels = baseline: "
            "the lowest share of voxels labelled as by the baseline run, over the cases (same "
            "model, other stitching).", ""]


def _profile_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """Where the time goes (``--profile``): forward ms and share per top-level submodule."""
    rows = [r for r in records if r.get("module_ms")]
    if not rows:
        return []
    lines = ["Where the forward time goes (median ms per top-level submodule, share of the "
             "forward):", "", "| model | submodule | ms | share |", "|---|---|---|---|"]
    for r in rows:
        total = r["module_ms"]["total"]
        for name, ms in r["module_ms"].items():
            if name != "total":
                lines.append(f"| `{r['label']}` | {name} | {ms:.1f} | {ms / total:.0%} |")
        lines.append(f"| `{r['label']}` | **forward** | {total:.1f} | 100% |")
    return [*lines, ""]


def markdown_report(records: Sequence[dict[str, Any]], command: str) -> str:
    """A Markdown page: machine, date, exact command line, the table and what the numbers mean."""
    first = records[0]
    lines = [
        "# medtoken benchmark", "",
        f"- date: {first['date']}",
        f"- machine: {first['hostname']}; CPU: {first['cpu_model']}; device: "
        f"{first['device']} ({first['device_name']})",
        f"- software: torch {first['torch_version']}"
        + (f", CUDA {first['cuda_version']}, cuDNN {first['cudnn_version']}"
           if first.get("cuda_version") else "")
        + f", medtoken {first['medtoken_version']}, git {first.get('git_commit') or 'unknown'}",
        f"- settings: mode {first['mode']}, dtype "
        f"{' and '.join(dict.fromkeys(r['dtype'] for r in records))}, threads {first['threads']}, "
        f"warm-up {first['warmup']}, repeats {first['repeats']} (interleaved)"
        + (f", overlap {first['overlap']}, {first.get('num_cases')} cases"
           if first["mode"] == "volume" else ""),
        "", "```", command, "```", "",
        *(_volume_table(records) if first["mode"] == "volume" else []),
        *_table(records), "",
        f"FLOPs: {first['flop_counter']}, one eval forward of the input batch"
        + (" (one sliding-window batch)" if first["mode"] == "volume" else "") + ". "
        f"Memory: {first.get('memory_method') or 'not measured'}. Speed-up = baseline median "
        "latency / model median latency; memory × = model peak / baseline peak."
        + (" Compile s: the first, compiling step of a `torch.compile`-d model (not in the "
           "repeats)." if any(r.get("compiled") for r in records) else ""), "",
        *_profile_table(records),
    ]
    return "\n".join(lines)


def write_results(records: Sequence[dict[str, Any]], out_dir: str | Path,
                  command: str) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv``, ``results.md``, ``chart.png`` (and ``sweep.png``
    for sweeps) into ``out_dir``; returns name -> path."""
    from medtoken.plots.charts import plot_benchmark_chart, plot_sweep

    if not records:
        raise ValueError("no records to write")
    records = [{**r, "command": command} for r in records]
    out = Path(out_dir)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md",
             "chart": out / "chart.png"}
    atomic_write_text(paths["json"], json.dumps(list(records), indent=2) + "\n")
    atomic_write_text(paths["csv"], csv_text(records))
    atomic_write_text(paths["md"], markdown_report(records, command))
    plot_benchmark_chart(records, paths["chart"])
    if records[0].get("sweep_key"):
        paths["sweep"] = plot_sweep(records, out / "sweep.png")
    return paths
