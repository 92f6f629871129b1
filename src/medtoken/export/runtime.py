"""Run an exported model: a model-like callable over onnxruntime or a TorchScript module.

:class:`ExportedModel` maps a tensor batch ``(b, C, *roi_size)`` to logits ``(b, K, *roi_size)``
and carries what the prediction code reads from a model (``spatial_dims``, ``in_channels``,
``num_classes``, ``fixed_input_size``, ``max_batch_size``), so sliding-window inference runs on it
unchanged. :func:`load_exported` wraps it, with the sidecar's dataset facts, in the same
:class:`~medtoken.models.checkpoint.LoadedModel` that a checkpoint gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoken.export.sidecar import read_sidecar, sidecar_path
from medtoken.export.torchscript import load_torchscript
from medtoken.models.checkpoint import LoadedModel
from medtoken.utils.errors import InputError

__all__ = ["ExportedModel", "is_exported", "load_exported", "onnx_session"]


def onnx_session(path: str | Path, threads: int | None = None,
                 device: torch.device | None = None) -> Any:
    """An onnxruntime session for ``path`` (CPU, or CUDA when ``device`` is a CUDA device).

    Args:
        threads: intra-op threads (``None``: onnxruntime's default, all cores).

    Raises:
        InputError: the file is not a loadable ONNX model, or CUDA was asked for and this
            onnxruntime has no CUDA provider.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; constant-folding notes are not for users
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError("--device", "this onnxruntime has no CUDA provider; use --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types
        first = (str(err).strip().splitlines() or [""])[0]
        raise InputError(path, f"cannot load the ONNX model: {first}") from None


class ExportedModel:
    """An exported model as a callable ``(b, C, *roi_size)`` -> logits ``(b, K, *roi_size)``.

    Args:
        path: the ``.onnx`` or TorchScript file.
        sidecar: its checked sidecar (:func:`~medtoken.export.sidecar.read_sidecar`).
        threads: CPU threads of the onnxruntime session (``None``: its default).
        device: where TorchScript runs / which onnxruntime provider is used (default CPU).
    """

    def __init__(self, path: str | Path, sidecar: dict[str, Any], threads: int | None = None,
                 device: torch.device | None = None) -> None:
        self.path = Path(path)
        self.sidecar = sidecar
        self.format = sidecar["format"]
        self.device = device or torch.device("cpu")
        if self.format == "onnx":
            self._session = onnx_session(self.path, threads, self.device)
            self._check_onnx_signature()
        else:
            self._module = load_torchscript(self.path, self.device)

    def _check_onnx_signature(self) -> None:
        """The graph's input must be the sidecar's ``(B, C, *roi_size)``."""
        inputs = self._session.get_inputs()
        expected = [self.in_channels, *self.fixed_input_size]
        if len(inputs) != 1 or inputs[0].name != self.sidecar["input_name"] or \
                list(inputs[0].shape[1:]) != expected:
            got = [(i.name, i.shape) for i in inputs]
            want = (self.sidecar["input_name"], ["B", *expected])
            raise InputError(self.path, f"graph input {got} does not match the sidecar {want}")

    @property
    def spatial_dims(self) -> int:
        return int(self.sidecar["spatial_dims"])

    @property
    def in_channels(self) -> int:
        return int(self.sidecar["in_channels"])

    @property
    def num_classes(self) -> int:
        return int(self.sidecar["num_classes"])

    @property
    def fixed_input_size(self) -> tuple[int, ...]:
        """The window the graph was exported for (``roi_size``)."""
        return tuple(int(s) for s in self.sidecar["roi_size"])

    @property
    def max_batch_size(self) -> int | None:
        """Windows per call: the exported batch size, or ``None`` with a free batch axis."""
        return None if self.sidecar["dynamic_batch"] else int(self.sidecar["batch_size"] or 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, C, *roi_size)`` -> logits ``(b, K, *roi_size)`` on ``x``'s device."""
        if self.format == "torchscript":
            with torch.no_grad():
                return self._module(x.to(self.device)).to(x.device)  # type: ignore[no-any-return]
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())  # (b, C, *roi)
        logits = self._session.run([self.sidecar["output_name"]],
                                   {self.sidecar["input_name"]: array})[0]
        return torch.from_numpy(logits).to(x.device)  # (b, K, *roi)


def is_exported(path: str | Path) -> bool:
    """True for an exported model: a ``.onnx`` path, or a file with a sidecar (TorchScript)."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" or (path.is_file() and sidecar_path(path).is_file())


def load_exported(path: str | Path, device: torch.device | None = None,
                  threads: int | None = None) -> LoadedModel:
    """Load an exported model and its sidecar as a :class:`LoadedModel` for prediction.

    Raises:
        InputError: missing or invalid sidecar, or a model file that does not load or does not
            match its sidecar.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such exported model file")
    sidecar = read_sidecar(path)
    model = ExportedModel(path, sidecar, threads=threads, device=device)
    dataset = {"normalization": sidecar["normalization"], "labels": sidecar["labels"],
               "channel_names": sidecar.get("channel_names"),
               "file_ending": sidecar["file_ending"], "spatial_dims": sidecar["spatial_dims"],
               "target_spacing": sidecar.get("target_spacing")}
    state = {"family": sidecar.get("family"), "preset": sidecar.get("preset"),
             "model_config": sidecar.get("model_config"), "dataset": dataset}
    return LoadedModel(model=model, state=state, path=path)
