"""Peak memory of one model's workload, measured in isolation.

Methods (``--memory``):

- ``isolated`` (default): on the CPU, a fresh Python process builds the model and runs the
  workload; the result is its peak resident set size (``VmHWM``) above the idle RSS it had
  after the imports. On CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before
  the model was built ("peak allocated": the caching allocator's view, without the CUDA context
  or cuDNN workspaces, so it is lower than ``nvidia-smi``).
- ``inprocess``: on the CPU, the RSS sampled by a background thread in this process (quick and
  approximate: memory freed earlier in the process can be reused without raising the RSS; for
  tests); on CUDA the same as ``isolated``.
- ``off``: not measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import torch

from medtoken.benchmark.workload import build_workload, load_volume_cases
from medtoken.utils.errors import InputError

__all__ = ["MEMORY_METHODS", "MemoryJob", "measure_peak_memory", "run_child"]

MEMORY_METHODS = ("isolated", "inprocess", "off")
MIB = 2**20
SAMPLE_SECONDS = 0.002  # RSS polling period of the in-process method
CHILD_TIMEOUT_S = 3600
_CHILD_CODE = "from medtoken.benchmark.memory import run_child; run_child()"


@dataclass
class MemoryJob:
    """Everything a fresh process needs to rebuild a model and run its workload (JSON-able).

    Attributes:
        family: the model family; ``config`` is its config as a plain dict.
        steps: how many steps to run (2 for train mode: the optimizer state exists after step 1).
        case_ids: volume mode: the case(s) to predict (the largest one).
    """

    family: str
    config: dict[str, Any]
    mode: str
    input_size: list[int]
    device: str
    amp: bool = False
    threads: int | None = None
    steps: int = 2
    data: str | None = None
    case_ids: list[str] = dataclasses.field(default_factory=list)
    overlap: float = 0.5
    compile: bool = False


def _run_job(job: MemoryJob, device: torch.device) -> None:
    """Build the model and run ``job.steps`` steps of its workload."""
    from medtoken.config import from_dict
    from medtoken.registry import build_model, family_config_class

    cfg: Any = from_dict(family_config_class(job.family), job.config)
    model = build_model(cfg).to(device)
    cases = None
    if job.mode == "volume":
        assert job.data is not None
        cases = load_volume_cases(job.data, None, cfg.in_channels, cfg.spatial_dims,
                                  case_ids=job.case_ids)
    workload = build_workload(model, job.mode, job.input_size, device, job.amp, cases,
                              job.overlap, job.compile)
    for index in range(job.steps):
        workload.step(index)


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """This process's peak RSS: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` is not usable on Linux for a child process: it keeps the high-water mark of the
    parent's memory image at fork across ``exec``, so a child of a large parent reports at least
    the parent's RSS. ``VmHWM`` belongs to the process's own address space, created at ``exec``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _import_everything() -> None:
    """Import what a workload uses, so that the idle RSS includes the libraries' code."""
    import monai.losses  # noqa: F401

    import medtoken.inference.sliding_window
    import medtoken.models
    import medtoken.train.optim  # noqa: F401


def _warm_runtime(spatial_dims: int) -> None:
    """Run a tiny convolution and matmul with backward, so that the runtime's one-off buffers
    (thread pools, kernel caches) count as idle and not as the model's memory."""
    from medtoken.layers.factory import conv_type

    conv = conv_type(spatial_dims)(1, 1, 3, padding=1)
    x = torch.randn(1, 1, *(4,) * spatial_dims)
    (conv(x).flatten(1) @ torch.randn(4**spatial_dims, 2)).sum().backward()


def run_child() -> None:
    """Entry point of the isolated process: read a job (JSON) on stdin, print the peak in MB."""
    job = MemoryJob(**json.loads(sys.stdin.read()))
    if job.threads:
        torch.set_num_threads(job.threads)
    _import_everything()
    _warm_runtime(len(job.input_size) - 2)
    idle = _current_rss_bytes()
    _run_job(job, torch.device(job.device))
    print(json.dumps({"peak_mem_mb": max(_peak_rss_bytes() - idle, 0) / MIB}))


def _isolated_cpu(job: MemoryJob) -> float:
    done = subprocess.run([sys.executable, "-c", _CHILD_CODE], input=json.dumps(
        dataclasses.asdict(job)), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
        check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"memory measurement process failed ({done.returncode}): "
                           + " | ".join(tail))
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mem_mb"])


def _release_freed_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), so that the next
    allocations raise the RSS again; a no-op where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _sampled_cpu(job: MemoryJob) -> float:
    _warm_runtime(len(job.input_size) - 2)
    gc.collect()
    _release_freed_heap()
    idle = _current_rss_bytes()
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _current_rss_bytes())
            stop.wait(SAMPLE_SECONDS)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        _run_job(job, torch.device("cpu"))
    finally:
        stop.set()
        thread.join()
    peak[0] = max(peak[0], _current_rss_bytes())
    return (peak[0] - idle) / MIB


def _cuda(job: MemoryJob) -> float:
    device = torch.device(job.device)
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    _run_job(job, device)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    gc.collect()
    torch.cuda.empty_cache()
    return peak / MIB


def measure_peak_memory(job: MemoryJob, method: str) -> tuple[float | None, str | None]:
    """Peak memory of ``job`` in MiB and a description of the method (``None``s for ``off``)."""
    if method not in MEMORY_METHODS:
        raise InputError("--memory", f"unknown method '{method}'; use one of "
                         + ", ".join(MEMORY_METHODS))
    if method == "off":
        return None, None
    if job.device.startswith("cuda"):
        return _cuda(job), "torch.cuda.max_memory_allocated above the allocation before the build"
    if method == "isolated":
        return _isolated_cpu(job), "peak RSS (VmHWM) of a fresh process above its idle RSS"
    return _sampled_cpu(job), "RSS sampled in-process above the RSS before the build (approx.)"
