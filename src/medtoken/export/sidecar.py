"""The JSON sidecar written next to an exported model (``model.onnx`` -> ``model.onnx.json``).

It holds everything prediction needs besides the network: the window (``roi_size``), the
normalisation plan, labels and channel names, the default overlap, and how the file was made
(family, preset, model config, format, exporter, opset, batch axis, which mLSTM form or token
selection is baked in) plus the verification and timing results. Version 1 layout::

    {"medtoken_export": 1, "format", "model_file", "input_name", "output_name", "dynamic_batch",
     "batch_size", "opset", "exporter", "family", "preset", "spatial_dims", "in_channels",
     "num_classes", "roi_size", "spacing", "default_overlap", "normalization", "channel_names",
     "labels", "file_ending", "dataset_root", "variant", "model_config", "source", "versions",
     "verification", "benchmark", "target_spacing"}

``target_spacing`` (optional; ``null`` or absent: none) is the spacing the model was trained at,
which prediction resamples each case to (an nnunet plan's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtoken.config import from_dict
from medtoken.data.preprocess import NormalizationPlan
from medtoken.models.base import ModelConfig
from medtoken.registry import family_config_class
from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json_object

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "SIDECAR_VERSION",
    "ExportFacts",
    "build_sidecar",
    "read_sidecar",
    "sidecar_path",
    "variant_notes",
    "write_sidecar",
]

SIDECAR_VERSION = 1
FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "image", "logits"
DEFAULT_OVERLAP = 0.5  # what `medtoken predict --overlap` defaults to
# key -> (type, description) of the fields prediction relies on; checked by read_sidecar
_REQUIRED: dict[str, tuple[type | tuple[type, ...], str]] = {
    "format": (str, f"one of {FORMATS}"),
    "spatial_dims": (int, "2 or 3"),
    "in_channels": (int, "a positive integer"),
    "num_classes": (int, "an integer >= 2"),
    "roi_size": (list, "one positive integer per spatial axis"),
    "dynamic_batch": (bool, "true or false"),
    "input_name": (str, "the model input's name"),
    "output_name": (str, "the model output's name"),
    "normalization": (dict, "a normalisation plan"),
    "labels": (dict, "label value -> name"),
    "file_ending": (str, "the ending of written label files"),
}


def sidecar_path(model_file: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def variant_notes(family: str, model_config: dict[str, Any]) -> dict[str, Any]:
    """What the export of a ``family`` model with this (plain-dict) config bakes in: the
    config's own :meth:`~medtoken.models.base.ModelConfig.variant_notes`."""
    cfg: ModelConfig = from_dict(family_config_class(family), model_config, where="model_config")
    return cfg.variant_notes()


@dataclass(frozen=True)
class ExportFacts:
    """How a model file was produced (the sidecar's export-specific part).

    Attributes:
        format: ``"onnx"`` or ``"torchscript"``.
        exporter: ``"dynamo"``, ``"torchscript"`` (the TorchScript-based ONNX exporter) or
            ``"jit.trace"``.
        opset: ONNX opset, ``None`` for TorchScript files.
        dynamic_batch: whether the batch axis is free (else it is ``batch_size``).
        batch_size: the batch size of the exported graph (the example's).
    """

    format: str
    exporter: str
    opset: int | None
    dynamic_batch: bool
    batch_size: int


def build_sidecar(state: dict[str, Any], model_file: Path, facts: ExportFacts,
                  source: Path) -> dict[str, Any]:
    """The sidecar dict (without results) for a checkpoint ``state`` exported to ``model_file``."""
    import onnx
    import onnxruntime
    import torch

    from medtoken.utils.version import __version__

    cfg, dataset = state["model_config"], state.get("dataset", {})
    return {
        "medtoken_export": SIDECAR_VERSION, "format": facts.format, "model_file": model_file.name,
        "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "dynamic_batch": facts.dynamic_batch,
        "batch_size": None if facts.dynamic_batch else facts.batch_size,
        "opset": facts.opset, "exporter": facts.exporter,
        "family": state["family"], "preset": state.get("preset"),
        "spatial_dims": cfg["spatial_dims"], "in_channels": cfg["in_channels"],
        "num_classes": cfg["num_classes"], "roi_size": list(cfg["roi_size"]),
        "spacing": list(cfg["spacing"]) if "spacing" in cfg else None,
        "default_overlap": DEFAULT_OVERLAP,
        "normalization": dataset.get("normalization"),
        "channel_names": dataset.get("channel_names"), "labels": dataset.get("labels"),
        "file_ending": dataset.get("file_ending", ".nii.gz"),
        "dataset_root": dataset.get("root"), "target_spacing": dataset.get("target_spacing"),
        "variant": variant_notes(state["family"], cfg), "model_config": cfg,
        "source": {"checkpoint": str(source), "epoch": state.get("epoch"),
                   "step": state.get("step")},
        "versions": {"medtoken": __version__, "torch": torch.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "verification": None, "benchmark": None,
    }


def write_sidecar(model_file: Path, sidecar: dict[str, Any]) -> Path:
    """Write ``sidecar`` next to ``model_file`` atomically; returns its path."""
    path = sidecar_path(model_file)
    atomic_write_text(path, json.dumps(sidecar, indent=2) + "\n")
    return path


def _check_fields(sidecar: dict[str, Any], path: Path) -> None:
    """Raise InputError naming ``path`` unless the fields prediction reads are well-formed."""
    if sidecar.get("medtoken_export") != SIDECAR_VERSION:
        raise InputError(path, f"not a medtoken export sidecar of version {SIDECAR_VERSION} "
                         f"(medtoken_export = {sidecar.get('medtoken_export')!r})")
    for key, (kind, rule) in _REQUIRED.items():
        value = sidecar.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(path, f"field '{key}' must be {rule}, got {value!r}")
    dims, roi = sidecar["spatial_dims"], sidecar["roi_size"]
    if (sidecar["format"] not in FORMATS or dims not in (2, 3) or sidecar["in_channels"] < 1
            or sidecar["num_classes"] < 2):
        raise InputError(path, "invalid format, spatial_dims, in_channels or num_classes")
    if len(roi) != dims or not all(isinstance(s, int) and s >= 1 for s in roi):
        raise InputError(path, f"field 'roi_size' must be {dims} positive integers, got {roi}")
    try:
        plan = NormalizationPlan.from_dict(sidecar["normalization"])
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise InputError(path, f"field 'normalization' is not a valid plan: {err}") from None
    if plan.num_channels != sidecar["in_channels"]:
        raise InputError(path, f"the normalisation plan has {plan.num_channels} channel(s), "
                         f"the model {sidecar['in_channels']}")


def read_sidecar(model_file: str | Path) -> dict[str, Any]:
    """Read and check the sidecar of ``model_file``.

    Raises:
        InputError: the sidecar is missing, not JSON, or lacks a field prediction needs.
    """
    path = sidecar_path(model_file)
    if not path.is_file():
        raise InputError(path, "missing: an exported model needs the sidecar that "
                         "`medtoken export` writes next to it (keep the two files together)")
    sidecar = read_json_object(path, "the sidecar")
    _check_fields(sidecar, path)
    return sidecar
