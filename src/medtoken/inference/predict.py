"""Predict cases and folders with a trained model; outputs keep the input's geometry.

One output per case, ``{case}{file_ending}`` (``.png`` for 2D input), integer labels, same shape
and affine/spacing as the input. A case that cannot be read is reported and skipped; the others
are still predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoken.data.datasets import Case
from medtoken.data.io import read_image, write_label
from medtoken.data.preprocess import NormalizationPlan, normalize
from medtoken.inference.sliding_window import predict_probabilities
from medtoken.train.checkpoint import LoadedModel
from medtoken.utils.errors import InputError

__all__ = ["PredictReport", "check_output_folder", "predict_array", "predict_cases"]

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
    """What a prediction run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def check_output_folder(out_dir: Path, cases: Sequence[Case]) -> None:
    """Refuse an output folder that is an input folder (inputs are never overwritten)."""
    out = out_dir.resolve()
    for case in cases:
        for path in (*case.images, *( [case.label] if case.label else [])):
            if path.resolve().parent == out:
                raise InputError(out_dir, "the output folder holds input files; choose another "
                                 "folder so that no input can be overwritten")


def _device_of(model: Any) -> torch.device:
    """Where a PyTorch model's weights live; exported models (no parameters) take CPU input."""
    first = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return first.device if first is not None else torch.device("cpu")


def predict_array(loaded: LoadedModel, image: np.ndarray, overlap: float = 0.5,
                  tta: bool = False, device: torch.device | None = None) -> np.ndarray:
    """Labels ``(*S)`` for a raw image ``(C, *S)`` (normalised here with the stored plan).

    ``loaded.model`` is a PyTorch model or a :class:`medtoken.export.ExportedModel`; an export
    with a fixed batch axis gets exactly ``max_batch_size`` windows per call.
    """
    model = loaded.model
    device = device or _device_of(model)
    plan = NormalizationPlan.from_dict(loaded.dataset["normalization"])
    x = torch.from_numpy(normalize(image, plan))[None].to(device)  # (1, C, *S)
    roi = model.fixed_input_size or model.config.roi_size
    windows = getattr(model, "max_batch_size", None)  # only exports define it
    batching = {"sw_batch_size": windows} if windows else {}
    probs = predict_probabilities(model, x, roi, overlap=overlap, tta=tta, **batching)
    labels = probs[0].argmax(0).cpu().numpy()
    return labels.astype(np.uint8 if model.num_classes < 256 else np.uint16)


def _output_path(out_dir: Path, case: Case, file_ending: str, spatial_dims: int) -> Path:
    return out_dir / f"{case.case_id}{'.png' if spatial_dims == 2 else file_ending}"


def predict_cases(loaded: LoadedModel, cases: Sequence[Case], out_dir: str | Path,
                  overlap: float = 0.5, tta: bool = False, skip_existing: bool = False,
                  progress: bool = False) -> PredictReport:
    """Predict every case into ``out_dir``; unreadable cases are reported, not fatal."""
    out = Path(out_dir)
    check_output_folder(out, cases)
    out.mkdir(parents=True, exist_ok=True)
    expected = loaded.model.in_channels
    report = PredictReport()
    iterator: Sequence[Case] = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="predict", unit="case")
    for case in iterator:
        try:
            image, meta = read_image(case.images)
            if image.shape[0] != expected:
                raise InputError(case.images[0], f"has {image.shape[0]} channel(s); the model "
                                 f"expects {expected}")
            if meta.spatial_dims != loaded.model.spatial_dims:
                raise InputError(case.images[0], f"is {meta.spatial_dims}D; the model is "
                                 f"{loaded.model.spatial_dims}D")
            target = _output_path(out, case, meta.file_ending, meta.spatial_dims)
            if skip_existing and target.exists():
                report.skipped.append(target)
                continue
            labels = predict_array(loaded, image, overlap=overlap, tta=tta)
            write_label(labels, meta, target)
            report.written.append(target)
        except InputError as err:
            log.error("%s", err)
            report.failed.append((case.case_id, str(err)))
    return report
