"""Peak memory of predicting one case, estimated before it starts; where to accumulate.

The estimate of a case of spatial size ``S`` (``V`` voxels), ``K`` classes, ``M`` members and
``F`` mirrorings (8 with TTA in 3D, 4 in 2D, else 1) is the sum of

- **images**: the normalised copy of the case per member plan, ``C * V * 4`` each;
- **accumulators**: slab stitching keeps one ring buffer per (member, mirroring),
  ``(K * acc_bytes + 4) * V / S[-1] * roi[-1]``, plus float32 copies of the chunk of
  planes being soft-maxed (at most ``2**20`` values, or one plane); full stitching (MONAI)
  keeps about ``(3 + [TTA] + [ensemble]) * K * V * 4 + 12 * V`` (output, soft-max, running sum,
  mirrored copy, count map, int64 argmax);
- **outputs**: the labels (``V`` bytes for up to 256 classes), and ``K * V * p_bytes`` when
  probabilities are kept;
- **windows**: per member, the live tensors of one forward pass of a batch of windows,
  *measured* on a half-size probe window (:func:`~medtoken.utils.memory.peak_tensor_bytes`)
  and scaled by the voxel ratio and the batch, plus the window batch in and out.

The image as read and the loaded weights are already in memory and not counted; the estimate is
compared with what is available after them. Exported models are not probed (onnxruntime's
memory is its own): their window term is the batch in and out only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medtoken.inference.slab import FINALIZE_ELEMENTS
from medtoken.utils.errors import InputError
from medtoken.utils.memory import (
    available_memory,
    estimate_summary,
    format_bytes,
    peak_tensor_bytes,
    probe_size,
)

__all__ = ["CaseEstimate", "check_case_fits", "choose_accumulate_device", "estimate_case",
           "window_bytes"]

CHUNK_COPIES = 3  # float32 temporaries while a chunk of planes is soft-maxed and summed
DEVICE_HEADROOM = 0.8  # accumulate on the GPU only if everything fits in this share of it


@dataclass(frozen=True)
class CaseEstimate:
    """Estimated peak of predicting one case, in bytes (see the module docstring)."""

    images_bytes: int
    accumulators_bytes: int
    outputs_bytes: int
    windows_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.images_bytes + self.accumulators_bytes + self.outputs_bytes + \
            self.windows_bytes

    def summary(self) -> str:
        """``"estimated peak 2.1 GiB (images 0.3, accumulators 1.2, ...)"`` in the total's unit."""
        return estimate_summary({"images": self.images_bytes,
                                 "accumulators": self.accumulators_bytes,
                                 "outputs": self.outputs_bytes, "windows": self.windows_bytes})


def window_bytes(model: Any, roi_size: Sequence[int], batch_size: int,
                 device: torch.device) -> int:
    """Live bytes of one forward pass over ``batch_size`` windows, and the windows in and out.

    A PyTorch model is probed once at a half-size window (batch 1) in inference mode; the peak of
    its live tensors is scaled by the voxel ratio and the batch.
    """
    voxels = math.prod(int(s) for s in roi_size)
    channels, classes = int(model.in_channels), int(model.num_classes)
    io = batch_size * voxels * 4 * (channels + 3 * classes)
    if not isinstance(model, torch.nn.Module):
        return io
    probe = probe_size(model, roi_size)
    x = torch.randn(1, channels, *probe, device=device)
    with torch.inference_mode():
        peak = peak_tensor_bytes(lambda: model(x))
    return io + math.ceil(peak * batch_size * voxels / math.prod(probe))


def estimate_case(shape: Sequence[int], in_channels: int, num_classes: int,
                  roi_sizes: Sequence[Sequence[int]], windows: Sequence[int], *,
                  plans: int = 1, tta: bool = False, stitching: str = "slab",
                  accumulate_bytes: int = 2, probabilities_bytes: int | None = None
                  ) -> CaseEstimate:
    """Estimate the peak of one case (all sizes in voxels, byte counts per element).

    Args:
        shape: the case's spatial size ``S``.
        roi_sizes: each member's window.
        windows: each member's :func:`window_bytes`.
        plans: distinct normalisation plans among the members (one image copy each).
        probabilities_bytes: bytes per probability kept (``None``: none kept).
    """
    voxels = math.prod(int(s) for s in shape)
    mirrorings = 2 ** len(shape) if tta else 1
    k = num_classes
    if stitching == "slab":
        plane = voxels // int(shape[-1])
        rings = sum(min(int(r[-1]), int(shape[-1])) for r in roi_sizes) * mirrorings
        chunk = k * plane * min(max(1, FINALIZE_ELEMENTS // (k * plane)), int(shape[-1]))
        accumulators = rings * plane * (k * accumulate_bytes + 4) + CHUNK_COPIES * 4 * chunk
    else:
        copies = 3 + int(tta) + int(len(roi_sizes) > 1)
        accumulators = copies * k * voxels * 4 + 12 * voxels
    outputs = voxels * (1 if k <= 256 else 2) + (k * voxels * probabilities_bytes
                                                 if probabilities_bytes else 0)
    return CaseEstimate(images_bytes=plans * in_channels * voxels * 4,
                        accumulators_bytes=accumulators, outputs_bytes=outputs,
                        windows_bytes=max(windows, default=0))


def choose_accumulate_device(window_device: torch.device, accumulators_bytes: int,
                             windows_bytes: int, free_bytes: int | None) -> torch.device:
    """Where to accumulate: the window device if it is a GPU and the accumulators fit beside the
    windows in :data:`DEVICE_HEADROOM` of its free memory, else the CPU."""
    if window_device.type == "cpu" or free_bytes is None:
        return torch.device("cpu")
    if accumulators_bytes + windows_bytes <= DEVICE_HEADROOM * free_bytes:
        return window_device
    return torch.device("cpu")


def check_case_fits(estimate: CaseEstimate, where: str, window_device: torch.device,
                    accumulate_device: torch.device) -> None:
    """Refuse a case whose estimate exceeds the memory available where it would live.

    Raises:
        InputError: at ``where`` (the case), with the estimate and the overriding flag.
    """
    host = estimate.images_bytes + estimate.outputs_bytes
    device = 0
    if accumulate_device.type == "cpu":
        host += estimate.accumulators_bytes
    else:
        device += estimate.accumulators_bytes
    if window_device.type == "cpu":
        host += estimate.windows_bytes
    else:
        device += estimate.windows_bytes
    for needed, place in ((host, torch.device("cpu")), (device, window_device)):
        if not needed:
            continue
        available = available_memory(place)
        if available is not None and needed > available:
            raise InputError(where, f"{estimate.summary()}: {format_bytes(needed)} on "
                             f"{place.type} exceeds the {format_bytes(available)} available; "
                             "pass --force-memory to predict anyway")
