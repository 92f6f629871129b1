"""``torch.compile`` behind one switch (``--compile`` of train, predict and benchmark), and
:func:`exporting`, which tells model code that a graph is being captured for export.

The compiled callable shares the module's parameters: optimisers, checkpoints and
``state_dict`` keep using the original module (keys without ``_orig_mod.``). Shapes are static
(``dynamic=False``): a new input shape (e.g. the last, smaller sliding-window batch) compiles
one more graph instead of a slower shape-generic one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["COMPILE_MODES", "exporting", "maybe_compile"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

F = TypeVar("F", bound=Callable[..., Any])


def maybe_compile(fn: F, enabled: bool, mode: str = "default", backend: str = "inductor") -> F:
    """``torch.compile(fn)`` (inductor) when ``enabled``, else ``fn`` itself.

    Args:
        fn: a module or a function (e.g. a bound ``forward_with_aux``).
        enabled: compile or not.
        mode: ``torch.compile``'s mode (one of :data:`COMPILE_MODES`).
        backend: ``torch.compile``'s backend (``eager``/``aot_eager`` trace without code
            generation: for tests and debugging).

    Returns:
        a callable with ``fn``'s signature; compilation happens on its first call.
    """
    if not enabled:
        return fn
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    chosen = mode if backend == "inductor" else None  # the other backends take no mode
    return torch.compile(fn, backend=backend, mode=chosen, dynamic=False)  # type: ignore[return-value]


def exporting() -> bool:
    """True while a graph is captured for ONNX or TorchScript (``torch.onnx.export``,
    ``torch.jit.trace`` / ``script``): model code then takes the portable form of what such
    graphs cannot hold (``aten::cummax``, memory layouts)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    # ``torch.onnx`` is imported lazily, and importing it costs ~0.1 s on the first forward of
    # a fresh process: when nothing has imported it, no ONNX export is running.
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and bool(onnx.is_in_onnx_export())
