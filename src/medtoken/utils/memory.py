"""Memory helpers shared by training and prediction: what is available, how big a probe window
is, the peak of live tensors while a function runs, and how to print bytes.

:func:`peak_tensor_bytes` follows every tensor that a PyTorch operator returns (a
``TorchDispatchMode``), counts each storage once while any tensor on it is alive, and reports the
high-water mark. It sees PyTorch's own allocations on any device, not scratch memory inside an
operator (oneDNN, cuDNN workspaces) nor memory outside PyTorch.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["available_memory", "byte_unit", "estimate_summary", "format_bytes", "peak_tensor_bytes",
           "probe_size"]

PROBE_SCALE = 0.5  # a probe window is this fraction of roi_size along every axis
MEMINFO = "/proc/meminfo"


def byte_unit(num_bytes: float) -> tuple[str, float]:
    """The unit to print ``num_bytes`` in, and its size: ``("GiB", 2**30)``."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if num_bytes >= 2**power:
            return unit, float(2**power)
    return "KiB", 1024.0


def estimate_summary(parts: dict[str, int]) -> str:
    """``"estimated peak 2.1 GiB (images 0.3, windows 1.8)"``: the total of ``parts`` and each
    part, all in the total's unit (the summary line of the memory estimates)."""
    total = sum(parts.values())
    unit, scale = byte_unit(total)
    detail = ", ".join(f"{name} {value / scale:.1f}" for name, value in parts.items())
    return f"estimated peak {total / scale:.1f} {unit} ({detail})"


def format_bytes(num_bytes: float) -> str:
    """``"22.1 GiB"``, ``"512.0 MiB"``."""
    unit, scale = byte_unit(num_bytes)
    return f"{num_bytes / scale:.1f} {unit}"


def probe_size(model: Any, roi_size: Sequence[int]) -> tuple[int, ...]:
    """About ``PROBE_SCALE`` of ``roi_size`` per axis, a multiple of ``model.input_multiple``;
    a model with a fixed input size is probed at that size."""
    if model.fixed_input_size is not None:
        return tuple(int(s) for s in model.fixed_input_size)
    probe = []
    for size, multiple in zip(roi_size, model.input_multiple, strict=True):
        reduced = math.ceil(size * PROBE_SCALE / multiple) * multiple
        probe.append(max(multiple, min(int(size), reduced)))
    return tuple(probe)


def _meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``None`` where there is none)."""
    try:
        with open(MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file says kB (KiB)
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory(device: str | torch.device) -> int | None:
    """Bytes available on ``device`` (``None`` if it cannot be told).

    CUDA: the free device memory plus what this process's caching allocator already holds.
    CPU: ``MemAvailable`` from ``/proc/meminfo``, else ``psutil.virtual_memory().available``
    when psutil is installed.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    available = _meminfo_available()
    if available is not None:
        return available
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of storages that operator outputs keep alive; records the peak."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo.disable by default, which imports
        # torch._dynamo (3 s) on first use; nothing is compiled inside this mode
        return False

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, int] = {}  # storage pointer -> live tensors on it
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        self.refs[ptr] -= 1
        if not self.refs[ptr]:
            del self.refs[ptr]
            self.live -= self.sizes.pop(ptr)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            ptr = storage.data_ptr()
            if not ptr:
                continue
            if ptr not in self.refs:
                self.refs[ptr] = 0
                self.sizes[ptr] = storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self.refs[ptr] += 1
            weakref.finalize(tensor, self._release, ptr)
        return out


def peak_tensor_bytes(fn: Callable[[], Any]) -> int:
    """The high-water mark of tensor bytes that ``fn()`` allocates and keeps alive at once.

    Tensors that exist before the call (weights, the input) are not counted; the result of
    ``fn`` is dropped before returning.
    """
    mode = _LiveTensors()
    with mode:
        result = fn()
    del result
    return mode.peak
