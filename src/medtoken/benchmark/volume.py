"""Volume mode: whole cases predicted by ``medtoken predict``'s code, one process per run.

Each (model, stitching, case) run is a fresh Python process (``python -c``) that reads or
generates its case, builds the model (weights seeded, so that runs of the same model agree),
and predicts it with :func:`medtoken.inference.predict.predict_array` (the code of
``medtoken predict`` and :func:`medtoken.predict`). The parent runs the models interleaved,
case by case (A B A B ...), and measures each process:

- ``process_s``: wall time from spawn to exit (imports, reading or generating the case,
  building the model, prediction; what ``time medtoken predict`` would show);
- ``predict_s``: inside the child, the :func:`predict_array` call alone (normalisation, memory
  estimate, sliding window, stitching, labels);
- ``peak_rss_mb``: the child's ``VmHWM`` (its own high-water mark, absolute);
  ``peak_mem_mb``: the same above the idle RSS after the imports;
  ``peak_gpu_mb``: ``torch.cuda.max_memory_allocated`` on CUDA;
- ``labels_sha1``, and on request the labels themselves (``labels_out``), so that runs of the
  same model can be compared voxel by voxel;
- ``rss_auc_mb_s``: the area under the memory-time curve (FLARE's efficiency measure, here of
  the resident memory): the parent reads ``VmRSS`` from ``/proc/PID/status`` every
  :data:`SAMPLE_S` seconds while the child runs and integrates MB over seconds with the
  trapezoidal rule (:func:`memory_time_area`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SAMPLE_S", "VolumeCase", "VolumeJob", "memory_time_area", "parse_volume_size",
           "run_volume_child", "run_volume_process"]

SAMPLE_S = 0.05  # RSS sampling period of the parent, seconds
MIB = 2**20
CHILD_TIMEOUT_S = 4 * 3600
MODEL_SEED = 0
_CHILD_CODE = "from medtoken.benchmark.volume import run_volume_child; run_volume_child()"


@dataclass(frozen=True)
class VolumeCase:
    """One case of volume mode: a dataset case (``data`` + ``case_id``) or a generated one."""

    case_id: str
    data: str | None = None
    size: tuple[int, ...] | None = None  # generated: spatial size
    spacing: tuple[float, ...] | None = None
    seed: int = 0


@dataclass
class VolumeJob:
    """Everything one run's process needs (JSON-able)."""

    family: str
    config: dict[str, Any]
    case: dict[str, Any]
    batch_size: int
    spatial_dims: int = 3
    device: str = "cpu"
    stitching: str = "slab"
    accumulate_dtype: str | None = None
    overlap: float = 0.5
    amp: bool = False
    threads: int | None = None
    labels_out: str | None = None  # where the child saves its labels (.npy), if anywhere
    compile: bool = False  # torch.compile the model (PredictOptions.compile)


def parse_volume_size(text: str, flag: str, kind: type = int) -> tuple[Any, ...]:
    """``"512,512,300"`` -> ``(512, 512, 300)``: 2 or 3 positive numbers.

    Raises:
        InputError: at ``flag``, anything else.
    """
    from medtoken.utils.errors import InputError

    try:
        values = tuple(kind(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or min(values) <= 0:
        raise InputError(flag, f"needs 2 or 3 positive {kind.__name__}s like 512,512,300, "
                         f"got {text!r}")
    return values


def memory_time_area(times_s: Sequence[float], values_mb: Sequence[float]) -> float:
    """Area under a sampled memory-time curve in MB*s (trapezoidal rule); 0 for < 2 samples."""
    if len(times_s) != len(values_mb):
        raise ValueError("times and values differ in length")
    if len(times_s) < 2:
        return 0.0
    t, v = np.asarray(times_s, float), np.asarray(values_mb, float)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(t)) / 2)


def _proc_rss_mb(pid: int) -> float | None:
    """``VmRSS`` of process ``pid`` in MiB, ``None`` once it is gone (or not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _sample_until_exit(proc: subprocess.Popen[str], start: float
                       ) -> tuple[list[float], list[float]]:
    """``VmRSS`` of ``proc`` every :data:`SAMPLE_S` s until it exits: (seconds since ``start``,
    MiB); killed after :data:`CHILD_TIMEOUT_S`."""
    times, values = [], []
    while proc.poll() is None:
        rss = _proc_rss_mb(proc.pid)
        if rss is not None:
            times.append(time.perf_counter() - start)
            values.append(rss)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(SAMPLE_S)
        if time.perf_counter() - start > CHILD_TIMEOUT_S:
            proc.kill()
    return times, values


def run_volume_process(job: VolumeJob) -> dict[str, Any]:
    """Run ``job`` in a fresh process, sampling its RSS; the child's results plus
    ``process_s``, ``rss_auc_mb_s`` and ``rss_samples``.

    Raises:
        InputError: the child refused the case (its one-line message).
        RuntimeError: the child failed otherwise.
    """
    from medtoken.utils.errors import InputError

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _CHILD_CODE], stdin=subprocess.PIPE,
                                stdout=out, stderr=err, text=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(dataclasses.asdict(job)))
        proc.stdin.close()
        try:
            times, values = _sample_until_exit(proc, start)
        finally:  # an interrupted benchmark leaves no prediction running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        process_s = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if "refused" in result:
        raise InputError(job.case["case_id"], result["refused"])
    if proc.returncode != 0 or "predict_s" not in result:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"volume process failed ({proc.returncode}): {tail}")
    return {**result, "process_s": process_s, "rss_samples": len(values),
            "rss_auc_mb_s": memory_time_area(times, values),
            "sampled_peak_rss_mb": max(values, default=0.0)}


def _read_case(case: VolumeCase, in_channels: int) -> np.ndarray:
    """The raw image ``(C, *S)`` of ``case``."""
    if case.size is not None:
        from medtoken.data.synthetic_ct import make_ct_like_volume

        image = make_ct_like_volume(case.size, case.seed)
        return np.repeat(image, in_channels, axis=0) if in_channels > 1 else image
    from medtoken.data.datasets import load_dataset
    from medtoken.data.io import read_image

    assert case.data is not None
    image, _ = read_image(load_dataset(case.data).case(case.case_id).images)
    return image


def _normalization(case: VolumeCase, in_channels: int) -> dict[str, Any]:
    """CT statistics for generated cases, z-score per case for a dataset's (as before)."""
    from medtoken.data.synthetic_ct import ct_normalization

    if case.size is not None:
        return ct_normalization(in_channels)
    return {"schemes": ["zscore"] * in_channels, "ct_stats": [None] * in_channels}


def _run_job(job: VolumeJob) -> dict[str, Any]:
    import torch

    from medtoken.benchmark.memory import _current_rss_bytes, _peak_rss_bytes
    from medtoken.benchmark.workload import predict_volume_case
    from medtoken.config import from_dict
    from medtoken.registry import build_model, family_config_class

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in job.case.items()}
    case = VolumeCase(**fields)
    device = torch.device(job.device)
    cfg: Any = from_dict(family_config_class(job.family), job.config)
    image = _read_case(case, cfg.in_channels)
    torch.manual_seed(MODEL_SEED)
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _current_rss_bytes()
    start = time.perf_counter()
    labels = predict_volume_case(model, image, _normalization(case, cfg.in_channels),
                                 stitching=job.stitching, overlap=job.overlap,
                                 batch_size=job.batch_size, amp=job.amp,
                                 accumulate_dtype=job.accumulate_dtype, compile=job.compile)
    predict_s = time.perf_counter() - start
    if job.labels_out:
        from medtoken.utils.atomic import atomic_path

        with atomic_path(job.labels_out) as tmp:
            np.save(tmp, labels)
    gpu = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None
    return {"predict_s": predict_s, "shape": list(labels.shape),
            "labels_sha1": hashlib.sha1(np.ascontiguousarray(labels).tobytes()).hexdigest(),
            "rss_before_predict_mb": before / MIB, "peak_rss_mb": _peak_rss_bytes() / MIB,
            "peak_gpu_mb": gpu}


def run_volume_child() -> None:
    """Entry point of a run's process: a :class:`VolumeJob` (JSON) on stdin, results (JSON) as
    the last line on stdout; a refused case prints ``{"refused": message}``."""
    import torch

    from medtoken.benchmark.memory import _current_rss_bytes, _import_everything, _warm_runtime
    from medtoken.utils.errors import InputError

    job = VolumeJob(**json.loads(sys.stdin.read()))
    if job.threads:
        torch.set_num_threads(job.threads)
    _import_everything()
    import medtoken.inference.predict  # noqa: F401

    _warm_runtime(job.spatial_dims)
    idle = _current_rss_bytes() / MIB
    try:
        result = _run_job(job)
    except InputError as err:
        print(json.dumps({"refused": err.problem}))
        return
    print(json.dumps({**result, "idle_rss_mb": idle,
                      "peak_mem_mb": max(result["peak_rss_mb"] - idle, 0.0)}))
