"""``export_model``: checkpoint -> ONNX or TorchScript file + sidecar, verified and timed.

The model file is written under a temporary name in its folder, verified there, and renamed only
when everything (export, verification, timing, sidecar) succeeded: a failed export leaves no
partial or unverified file behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medtoken.export.onnx import DEFAULT_OPSET, EXPORTERS, export_onnx
from medtoken.export.runtime import ExportedModel
from medtoken.export.sidecar import (
    FORMATS,
    ExportFacts,
    build_sidecar,
    sidecar_path,
    write_sidecar,
)
from medtoken.export.torchscript import export_torchscript
from medtoken.export.verify import (
    VerifyReport,
    case_window,
    random_windows,
    run_checks,
    time_against_eager,
)
from medtoken.models.checkpoint import LoadedModel, load_model_checkpoint, resolve_checkpoint
from medtoken.utils.atomic import atomic_path
from medtoken.utils.errors import InputError

__all__ = ["ExportOptions", "ExportResult", "export_model"]

log = logging.getLogger(__name__)

_MIN_OPSET = 17  # LayerNormalization, used by every transformer and mLSTM layer
_EXAMPLE_SEED = 0
_DYNAMIC_EXAMPLE_BATCH = 2  # not 1: exporters specialise size-1 axes
_DYNAMIC_CHECK_BATCHES = (1, 3)  # both differ from the example's batch size


@dataclass(frozen=True)
class ExportOptions:
    """What ``medtoken export`` was asked for.

    Attributes:
        model: a run folder (its best, else last checkpoint) or a checkpoint file.
        output: the model file to write; the sidecar goes to ``output + ".json"``.
        format: ``"onnx"`` or ``"torchscript"``.
        dynamic_batch: leave the batch axis free (else it is 1).
        verify: compare with PyTorch and fail beyond the tolerances.
        benchmark: timed repeats of eager PyTorch vs the exported model (0: no timing).
        threads: CPU threads of both runtimes during verification and timing.
        exporter: ONNX exporter, one of ``auto``, ``dynamo``, ``torchscript``.
        opset: ONNX opset.
    """

    model: Path
    output: Path
    format: str = "onnx"
    dynamic_batch: bool = False
    verify: bool = False
    benchmark: int = 0
    threads: int = 1
    exporter: str = "auto"
    opset: int = DEFAULT_OPSET

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError("--format", f"must be one of {', '.join(FORMATS)}, got "
                             f"'{self.format}'")
        if self.exporter not in EXPORTERS:
            raise InputError("--exporter", f"must be one of {', '.join(EXPORTERS)}, got "
                             f"'{self.exporter}'")
        if self.opset < _MIN_OPSET:
            raise InputError("--opset", f"must be >= {_MIN_OPSET}, got {self.opset}")
        if self.benchmark < 0:
            raise InputError("--benchmark", f"must be >= 0 repeats, got {self.benchmark}")
        if self.threads < 1:
            raise InputError("--threads", f"must be >= 1, got {self.threads}")


@dataclass
class ExportResult:
    """The written files and the sidecar's content (verification and timing included)."""

    path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]
    verification: VerifyReport | None


def _check_output(output: Path, checkpoint: Path) -> Path:
    """Refuse outputs that cannot be written or would overwrite the checkpoint."""
    if output.is_dir():
        raise InputError(output, "is a folder; give the model file to write")
    if not output.parent.is_dir():
        raise InputError(output, f"the folder {output.parent} does not exist")
    source = checkpoint.resolve()
    if output.resolve() == source or sidecar_path(output).resolve() == source:
        raise InputError(output, "would overwrite the checkpoint being exported; choose "
                         "another output file")
    return output


def _write_model(model: torch.nn.Module, example: torch.Tensor, path: Path,
                 options: ExportOptions) -> ExportFacts:
    """Export ``model`` traced on ``example`` to ``path``; returns how it was done."""
    if options.format == "torchscript":
        exporter = export_torchscript(model, example, path)
        opset = None
    else:
        exporter = export_onnx(model, example, path, options.dynamic_batch, options.opset,
                               options.exporter)
        opset = options.opset
    return ExportFacts(options.format, exporter, opset, options.dynamic_batch,
                       int(example.shape[0]))


def _verify(loaded: LoadedModel, runtime: ExportedModel, dynamic_batch: bool) -> VerifyReport:
    """Random windows (two batch sizes with a free batch axis) and one real case window."""
    model = loaded.model
    roi = tuple(model.config.roi_size)
    batches = _DYNAMIC_CHECK_BATCHES if dynamic_batch else (1,)
    inputs = random_windows(model.in_channels, roi, batches)
    real = case_window(loaded.dataset, roi)
    skipped = [real] if isinstance(real, str) else []
    if not isinstance(real, str):
        inputs.append(real)
    return run_checks(model, runtime, inputs, skipped)


def _failure(output: Path, report: VerifyReport) -> InputError:
    worst = max(report.checks, key=lambda c: (c.max_abs_diff, c.label_disagreement))
    crashed = f" (the export failed to run: {report.errors[0]})" if report.errors else ""
    return InputError(output, f"verification failed: max abs diff {report.max_abs_diff:.3g} "
                      f"(limit {report.atol:g}), labels differ on "
                      f"{100 * report.label_disagreement:.4f}% of voxels (limit "
                      f"{100 * report.max_disagreement:.2f}%), worst on {worst.name}{crashed}; "
                      "nothing was written")


def export_model(options: ExportOptions) -> ExportResult:
    """Export a trained model; see :class:`ExportOptions` and the module docstring.

    Raises:
        InputError: missing checkpoint, unusable output path, or failed verification.
        RuntimeError: no exporter could export the model.
    """
    checkpoint = resolve_checkpoint(options.model)
    output = _check_output(Path(options.output), checkpoint)
    loaded = load_model_checkpoint(checkpoint, device="cpu")
    model = loaded.model
    batch = _DYNAMIC_EXAMPLE_BATCH if options.dynamic_batch else 1
    generator = torch.Generator().manual_seed(_EXAMPLE_SEED)
    example = torch.randn(batch, model.in_channels, *model.config.roi_size, generator=generator)
    report = None
    with atomic_path(output) as tmp:
        facts = _write_model(model, example, tmp, options)
        sidecar = build_sidecar(loaded.state, output, facts, checkpoint)
        if options.verify or options.benchmark:
            runtime = ExportedModel(tmp, sidecar, threads=options.threads)
            if options.verify:
                report = _verify(loaded, runtime, options.dynamic_batch)
                sidecar["verification"] = report.to_dict()
                if not report.passed:
                    raise _failure(output, report)
            if options.benchmark:
                sidecar["benchmark"] = time_against_eager(model, runtime, example[:1],
                                                          options.benchmark, options.threads)
        written = write_sidecar(output, sidecar)
    log.debug("exported %s to %s", checkpoint, output)
    return ExportResult(output, written, sidecar, report)
