"""ONNX export with ``torch.onnx.export``: the dynamo exporter, or the TorchScript-based one.

The graph takes ``image (B, in_channels, *roi_size)`` and returns ``logits (B, num_classes,
*roi_size)``; the spatial size is static, the batch axis optionally free.

Which exporter (measured with torch 2.13, onnxscript 0.7, onnxruntime 1.31 on the ``*_test``
presets; docs/export.md has the table):

- ``"dynamo"`` (``torch.export``, the default since torch 2.9) exports every family, with a free
  batch axis too. It needs one extra translation: TokenSeg's stable sort (``aten.sort.stable``,
  the tie-broken top-K) has none in onnxscript 0.7, so it is mapped onto onnxscript's
  ``aten::sort``, an ONNX ``TopK`` over the whole axis, which breaks ties by the lower index just
  as a stable descending sort does. It is slow to export (seconds for a U-Net, minutes for a
  TM-UNet, whose chunk loops are unrolled).
- ``"torchscript"`` (``dynamo=False``, deprecated upstream) is 10-30x faster to export, but cannot
  export TokenSeg (its cell pooling windows are computed from the input shape and become graph
  values) and, with a free batch axis, bakes the example's batch size into TM-UNet's pooling
  broadcasts (wrong results or a runtime error at other batch sizes).

``"auto"`` therefore uses dynamo and falls back to the TorchScript-based exporter only when dynamo
raises; verification (``medtoken.export.verify``) catches any wrong graph either way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medtoken.export.sidecar import INPUT_NAME, OUTPUT_NAME

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "export_onnx"]

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = 18
_MAX_DYNAMIC_BATCH = 1024  # upper bound torch.export needs for the symbolic batch size
_CHATTY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _stdout_discarded() -> Iterator[None]:
    """Discard what is written to file descriptor 1, by Python or by C++ (the TorchScript-based
    exporter prints the whole graph there when it fails)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, deprecation warnings and registry log lines."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _stdout_discarded():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _custom_translations() -> dict[Any, Any]:
    """Translations onnxscript lacks: ``aten.sort.stable`` -> TopK (ties to the lower index)."""
    from onnxscript.function_libs.torch_lib.ops.core import aten_sort

    return {torch.ops.aten.sort.stable: aten_sort}


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool,
                   opset: int) -> None:
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=_MAX_DYNAMIC_BATCH)
        dynamic_shapes = ({0: batch},)  # one entry per positional argument
    torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], opset_version=opset,
                      dynamic_shapes=dynamic_shapes, external_data=False, optimize=True,
                      custom_translation_table=_custom_translations(), verbose=False)


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path,
                        dynamic_batch: bool, opset: int) -> None:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], opset_version=opset, dynamic_axes=axes,
                      do_constant_folding=True)


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first[:300]}"


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path,
                dynamic_batch: bool = False, opset: int = DEFAULT_OPSET,
                exporter: str = "auto") -> str:
    """Export an eval-mode ``model`` traced on ``example (B, C, *roi)`` to the ONNX file ``path``.

    Args:
        model: maps ``(B, C, *roi)`` to logits ``(B, K, *roi)``.
        example: the tracing input; its batch size is the graph's unless ``dynamic_batch``.
        path: the file to write (overwritten).
        dynamic_batch: leave the batch axis free.
        opset: ONNX opset.
        exporter: one of :data:`EXPORTERS`.

    Returns:
        The exporter that wrote the file (``"dynamo"`` or ``"torchscript"``).

    Raises:
        ValueError: unknown ``exporter``.
        RuntimeError: every exporter tried failed (each one's first error line).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    functions = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}
    errors = []
    for name in order:
        try:
            with _quiet(), torch.inference_mode(False), torch.no_grad():
                functions[name](model, example, Path(path), dynamic_batch, opset)
            return name
        except Exception as err:  # exporters raise many types; keep each first line
            errors.append(f"{name} exporter: {_one_line(err)}")
            if len(order) > 1:
                log.warning("the %s exporter failed (%s); trying the next one", name,
                            _one_line(err))
    raise RuntimeError("; ".join(errors))
