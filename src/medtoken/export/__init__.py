"""Export trained models to ONNX or TorchScript, verify them, and run them for prediction.

``export_model(ExportOptions(model=RUN_DIR, output="model.onnx", verify=True))`` writes
``model.onnx`` and its sidecar ``model.onnx.json`` (window size, normalisation plan, labels, ...);
``load_exported("model.onnx")`` gives a :class:`~medtoken.models.checkpoint.LoadedModel` whose
model runs the file with onnxruntime, so ``medtoken.inference.predict_cases`` predicts with it
as with a checkpoint. ``medtoken export`` and ``medtoken predict --model model.onnx`` are the
command-line front ends; docs/export.md describes the sidecar and the exporter choice.
"""

from medtoken.export.pipeline import ExportOptions, ExportResult, export_model
from medtoken.export.runtime import ExportedModel, is_exported, load_exported
from medtoken.export.sidecar import read_sidecar, sidecar_path

__all__ = [
    "ExportOptions",
    "ExportResult",
    "ExportedModel",
    "export_model",
    "is_exported",
    "load_exported",
    "read_sidecar",
    "sidecar_path",
]
