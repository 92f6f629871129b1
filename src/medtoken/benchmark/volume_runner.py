"""Volume mode's timing loop: every (model, stitching) run in its own process, interleaved.

With several stitchings of one model, every run's labels are compared voxel by voxel with the
baseline run's (``labels_match_baseline``: the lowest share of equal voxels over the cases).

Warm-up: ``warmup`` untimed processes per run on the first case (they warm the page cache and
the CPU, not the process, which is fresh every time). Then case by case, every run once in a
fixed order (A B A B ...), so that the load of a shared machine hits all runs alike. See
:mod:`medtoken.benchmark.volume` for what one process measures.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtoken.benchmark.volume import VolumeCase, VolumeJob, run_volume_process
from medtoken.inference.slab import count_windows
from medtoken.utils.timing import summarize

__all__ = ["cases_for", "labels_match", "summarize_runs", "time_volume_runs"]


def cases_for(data: str | None, volume_size: Sequence[int] | None,
              spacing: Sequence[float] | None, count: int, in_channels: int,
              spatial_dims: int) -> list[VolumeCase]:
    """``count`` dataset cases spread over ``data``, or ``count`` generated cases (seeds
    ``0..count-1``) of ``volume_size``.

    Raises:
        InputError: the dataset does not match the models, or the size has the wrong dims.
    """
    from medtoken.benchmark.workload import pick_case_ids
    from medtoken.utils.errors import InputError

    if volume_size is not None:
        if len(volume_size) != spatial_dims:
            raise InputError("--volume-size", f"has {len(volume_size)} dims but --input-size "
                             f"has {spatial_dims}")
        if spacing is not None and len(spacing) != spatial_dims:
            raise InputError("--spacing", f"has {len(spacing)} values for {spatial_dims} dims")
        size, space = tuple(int(s) for s in volume_size), \
            tuple(float(s) for s in spacing) if spacing else None
        return [VolumeCase(f"generated{i:02d}", size=size, spacing=space, seed=i)
                for i in range(count)]
    from medtoken.data.datasets import load_dataset

    assert data is not None
    info = load_dataset(data)
    if info.num_channels != in_channels or info.spatial_dims != spatial_dims:
        raise InputError("--data", f"{data} is {info.spatial_dims}D with {info.num_channels} "
                         f"channel(s); --input-size gives {spatial_dims}D, C={in_channels}")
    return [VolumeCase(case_id, data=str(data)) for case_id in
            pick_case_ids(info.case_ids, count)]


def time_volume_runs(jobs: Mapping[str, VolumeJob], cases: Sequence[VolumeCase], warmup: int,
                     compare_to: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each job's per-case results (:func:`run_volume_process`), in case order.

    Args:
        jobs: name -> job (its ``case`` is replaced by each case in turn).
        warmup: untimed processes per job on the first case.
        compare_to: a job name: every run's labels are compared with that job's on the same
            case (``labels_agreement``: the share of equal voxels; the labels pass through
            temporary ``.npy`` files, deleted case by case).
    """
    def run(job: VolumeJob, case: VolumeCase, labels_out: str | None = None) -> dict[str, Any]:
        return run_volume_process(dataclasses.replace(job, case=dataclasses.asdict(case),
                                                      labels_out=labels_out))

    for job in jobs.values():
        for _ in range(warmup):
            run(job, cases[0])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    with tempfile.TemporaryDirectory(prefix="medtoken-volume-") as tmp:
        for case in cases:
            files = {name: str(Path(tmp) / f"{i}.npy") if compare_to else None
                     for i, name in enumerate(jobs)}
            for name, job in jobs.items():
                results[name].append({"case_id": case.case_id, **run(job, case, files[name])})
            if compare_to:
                reference = np.load(str(files[compare_to]))
                for name, path in files.items():
                    assert path is not None
                    labels = np.load(path)
                    results[name][-1]["labels_agreement"] = float(np.mean(labels == reference))
                    Path(path).unlink()
    return results


def summarize_runs(runs: Sequence[dict[str, Any]], roi_size: Sequence[int],
                   overlap: float) -> dict[str, Any]:
    """Record fields of one run over its cases: ``latency_ms`` (the predict call),
    ``process_ms`` (whole process), the memory peaks (max over cases), the median
    ``rss_auc_mb_s``, the windows per case and the per-case details."""
    gpu = [r["peak_gpu_mb"] for r in runs if r.get("peak_gpu_mb") is not None]
    shapes = [tuple(r["shape"]) for r in runs]
    return {
        "latency_ms": summarize([r["predict_s"] * 1e3 for r in runs]),
        "process_ms": summarize([r["process_s"] * 1e3 for r in runs]),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_mem_mb": max(r["peak_mem_mb"] for r in runs),
        "idle_rss_mb": statistics.median(r["idle_rss_mb"] for r in runs),
        "peak_gpu_mb": max(gpu) if gpu else None,
        "rss_auc_mb_s": statistics.median(r["rss_auc_mb_s"] for r in runs),
        "case_shapes": [list(s) for s in shapes],
        "windows_per_case": max(count_windows(s, roi_size, overlap) for s in shapes),
        "labels_match_baseline": labels_match(runs),
        "cases": [{k: r[k] for k in ("case_id", "predict_s", "process_s", "peak_rss_mb",
                                     "rss_auc_mb_s", "rss_samples", "labels_sha1",
                                     "labels_agreement") if k in r} for r in runs],
    }


def labels_match(runs: Sequence[dict[str, Any]]) -> float | None:
    """The lowest share of voxels equal to the baseline's over the cases (``None``: not
    compared)."""
    shares = [r["labels_agreement"] for r in runs if "labels_agreement" in r]
    return min(shares) if shares else None
