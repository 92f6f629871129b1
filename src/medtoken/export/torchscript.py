"""TorchScript export with ``torch.jit.trace``, and loading it back.

Tracing records the operations run on one example input ``(B, C, *roi_size)``: Python control flow
(the mLSTM chunk loop, the pruning stages, TokenSeg's level loop) is unrolled for that spatial size,
which is fixed anyway. Shape arithmetic stays symbolic (``aten::size``), so other batch sizes
usually work; ``--dynamic-batch`` makes verification check that they do. ``torch.jit`` is
deprecated upstream (torch 2.13 warns); TorchScript files still load in C++ (libtorch) without
Python, which is why this format is offered next to ONNX.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["export_torchscript", "load_torchscript"]


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> str:
    """Trace the eval-mode ``model`` on ``example (B, C, *roi)`` and save it to ``path``.

    Returns:
        The exporter name recorded in the sidecar (``"jit.trace"``).
    """
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and "trace might not generalise" notes
        traced = torch.jit.trace(model, (example,), check_trace=False, strict=False)
        traced = torch.jit.freeze(traced.eval())  # weights become constants; faster loads
        torch.jit.save(traced, str(path))
    return "jit.trace"


def load_torchscript(path: str | Path,
                     device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load a TorchScript file written by :func:`export_torchscript` in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()
