"""How a case is predicted: one options object shared by the CLI and :func:`medtoken.predict`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medtoken.utils.errors import InputError

__all__ = ["STITCHINGS", "PredictOptions"]

STITCHINGS = ("slab", "full")
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class PredictOptions:
    """Sliding-window prediction settings (CLI flag in brackets).

    Attributes:
        overlap: window overlap fraction in ``[0, 1)`` (``--overlap``).
        tta: average over all mirrorings of the spatial axes (``--tta``).
        stitching: ``"slab"`` accumulates the blended logits one window deep along the last axis
            and takes the argmax slab by slab (memory grows with the voxels); ``"full"`` is
            MONAI's whole-volume float32 output, the reference (``--stitching``).
        accumulate_dtype: ``"float16"`` or ``"float32"`` ring buffers for slab stitching;
            ``None`` means float16 for slab, float32 (the only choice) for full
            (``--accumulate-dtype``).
        accumulate_device: ``"auto"`` (the window device when everything fits in its free
            memory, else the CPU), ``"cpu"``, ``"cuda"``... (``--accumulate-device``).
        batch_size: windows per forward call (``--batch-size``).
        save_probabilities: also return / write the probabilities (``--save-probabilities``).
        probabilities_dtype: ``"float16"`` or ``"float32"`` (``--probabilities-dtype``).
        force_memory: predict even when the estimate exceeds the memory (``--force-memory``).
        compile: ``torch.compile`` each PyTorch model once for all cases (``--compile``;
            exports refuse it).
        progress: progress bars on a terminal (off with ``--no-progress``).
        target_spacing: the grid the network sees: ``"plan"`` (the spacing the model was
            trained at, the checkpoint's ``target_spacing``; none for models trained on native
            spacing), ``"native"`` (each input's own) or ``"X,Y,Z"`` mm per array axis
            (``--spacing``); outputs always keep the input's geometry. Not the image's own voxel
            size (``medtoken.predict(..., spacing=)``).
    """

    overlap: float = 0.5
    tta: bool = False
    stitching: str = "slab"
    accumulate_dtype: str | None = None
    accumulate_device: str = "auto"
    batch_size: int = 2
    save_probabilities: bool = False
    probabilities_dtype: str = "float16"
    force_memory: bool = False
    compile: bool = False
    progress: bool = False
    target_spacing: str = "plan"

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise InputError("--overlap", f"must be in [0, 1), got {self.overlap}")
        if self.stitching not in STITCHINGS:
            raise InputError("--stitching", f"must be one of {', '.join(STITCHINGS)}, got "
                             f"{self.stitching!r}")
        for flag, value in (("--accumulate-dtype", self.accumulate_dtype),
                            ("--probabilities-dtype", self.probabilities_dtype)):
            if value is not None and value not in _DTYPES:
                raise InputError(flag, f"must be float16 or float32, got {value!r}")
        if self.stitching == "full" and self.accumulate_dtype == "float16":
            raise InputError("--accumulate-dtype", "full stitching accumulates in float32 "
                             "(MONAI); float16 needs --stitching slab")
        if self.batch_size < 1:
            raise InputError("--batch-size", f"must be >= 1, got {self.batch_size}")
        if self.accumulate_device != "auto":
            try:
                device = torch.device(self.accumulate_device)
            except (RuntimeError, ValueError):
                raise InputError("--accumulate-device", f"unknown device "
                                 f"{self.accumulate_device!r}; use auto, cpu or cuda") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise InputError("--accumulate-device", "CUDA was requested but no CUDA "
                                 "device is available")

    @property
    def accumulate_torch_dtype(self) -> torch.dtype:
        """The accumulation dtype this stitching uses."""
        if self.stitching == "full":
            return torch.float32
        return _DTYPES[self.accumulate_dtype or "float16"]
