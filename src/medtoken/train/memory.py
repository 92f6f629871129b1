"""Peak training memory, estimated before training starts, and the check that it fits.

The estimate of one training step (forward, the run's loss, backward, the run's optimiser
update; both from the :class:`~medtoken.train.config.TrainConfig`, as training builds them) is

    peak = parameters (+ buffers) + gradients + optimiser states (per trainable parameter:
           2 for Adam/AdamW, 1 for SGD with momentum, 0 without)
           + batch (the image and int64 label tensors of ``batch_size`` patches)
           + activations

where the first three are counted exactly from the model, and the activations are *measured*:
one forward pass and the loss are run at batch 2 on a probe patch while a
``torch.autograd.graph.saved_tensors_hooks`` pair records every tensor autograd keeps for the
backward pass (each storage counted once; parameters, buffers and the batch left out). The
activations are then those saved bytes plus the largest saved tensor once more (its gradient,
alive next to it in the backward pass), scaled linearly by ``batch_size`` and by the voxel
ratio ``prod(roi_size) / prod(probe)``.

The probe patch halves every axis of ``roi_size`` (rounded up to the model's
``input_multiple``), about 1/8 of the voxels in 3D, so the probe is cheap; models with a fixed
input size are probed at that size. The probe runs in train mode on a snapshot of the model's
state: buffers (BatchNorm statistics, codebook usage) and the random-number generators are
restored afterwards, so estimating does not change the training that follows.

Accuracy, measured on the CPU (torch 2.13) for unet3d, unet2d, tmunet3d, tokenseg, scd and
unetr presets at their patch sizes: the estimate is 0.85-1.08 of the peak of PyTorch's own
allocations in a second training step (``torch.profiler`` memory events, plus the parameters,
gradients, optimiser states and batch alive at its start), and the saved bytes per voxel of the
half-size probe are within 4 % of those of the full patch (slightly higher, so the scaling errs
on the safe side). Not counted: memory outside PyTorch's allocator. The peak resident set size
of a fresh training process (``VmHWM`` above its idle size) was 1.7-2.4 times the estimate
(glibc keeps freed heap, oneDNN scratch buffers), so on the CPU a passing check is no guarantee,
while a refusal is reliable: not even the tensors fit. On CUDA the comparable figure is
``torch.cuda.max_memory_allocated`` (the CUDA context and cuDNN workspaces come on top; not
measured here). With activation checkpointing the blocks recomputed in the backward pass are
not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from medtoken.train.config import TrainConfig
from medtoken.train.losses import LossFn, build_loss
from medtoken.utils.errors import InputError
from medtoken.utils.memory import estimate_summary, format_bytes, probe_size

__all__ = [
    "MemoryEstimate",
    "check_memory_fits",
    "estimate_training_memory",
    "optimizer_states",
    "saved_activation_bytes",
]

OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 1}  # exp_avg + exp_avg_sq; momentum_buffer
PROBE_BATCH = 2  # BatchNorm needs more than one value per channel at the coarsest level
LABEL_BYTES = 8  # the training loop's labels are int64


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of one training step, in bytes (see the module docstring).

    Attributes:
        params_bytes: parameters and buffers.
        gradients_bytes: one gradient per trainable parameter.
        optimizer_bytes: the optimiser states (:func:`optimizer_states`).
        activations_bytes: the batch tensors and everything autograd keeps for the backward pass.
        probe_size: the patch the activations were measured at (batch ``PROBE_BATCH``).
    """

    params_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    batch_size: int
    roi_size: tuple[int, ...]
    probe_size: tuple[int, ...]

    @property
    def total_bytes(self) -> int:
        """The estimated peak."""
        return (self.params_bytes + self.gradients_bytes + self.optimizer_bytes
                + self.activations_bytes)

    def summary(self) -> str:
        """``"estimated peak 31.2 GiB (params 0.2, gradients 0.2, optimizer 0.4, ...)"``."""
        return estimate_summary({"params": self.params_bytes,
                                 "gradients": self.gradients_bytes,
                                 "optimizer": self.optimizer_bytes,
                                 "activations": self.activations_bytes})


def optimizer_states(cfg: TrainConfig) -> int:
    """Tensors the optimiser of ``cfg`` keeps per trainable parameter, each of its size: Adam and
    AdamW 2 (``exp_avg``, ``exp_avg_sq``), SGD 1 (``momentum_buffer``; none at momentum 0)."""
    if cfg.optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    if cfg.optimizer == "sgd" and not cfg.momentum:
        return 0
    return OPTIMIZER_STATES[cfg.optimizer]


@contextmanager
def _state_kept(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Run a train-mode probe without a trace: buffers, RNG state and mode are restored."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            yield
    finally:
        model.train(was_training)
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def saved_activation_bytes(model: Any, roi_size: Sequence[int], device: torch.device,
                           batch_size: int = 1, amp_dtype: torch.dtype | None = None,
                           loss_fn: LossFn | None = None) -> tuple[int, int]:
    """Bytes autograd saves for the backward pass of one forward + the training loss.

    The input ``(batch_size, in_channels, *roi_size)`` and labels are random; parameters,
    buffers and the batch itself are not counted; every storage is counted once. ``loss_fn`` is
    the run's segmentation loss (:func:`~medtoken.train.losses.build_loss`; default: that of
    the default :class:`~medtoken.train.config.TrainConfig`), which also saves tensors.

    Returns:
        ``(total, largest)``: all saved bytes, and those of the largest saved storage.
    """
    if loss_fn is None:
        loss_fn = build_loss(TrainConfig(), model)
    seen: dict[int, int] = {}
    # whatever the caller's grad mode, the probe needs autograd to record what it saves
    with _state_kept(model, device), torch.inference_mode(False), torch.enable_grad():
        x = torch.randn(batch_size, model.in_channels, *roi_size, device=device)
        y = torch.randint(0, model.num_classes, (batch_size, 1, *roi_size), device=device)
        known = {t.untyped_storage().data_ptr()
                 for t in (*model.parameters(), *model.buffers(), x, y)}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in known and storage.nbytes():
                seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16,
                               enabled=amp_dtype is not None):
            out = model.forward_with_aux(x, y)
            loss = loss_fn(out.logits.float(), y) + sum(out.losses.values())
            del out, loss  # frees the graph and everything it saved
    return sum(seen.values()), max(seen.values(), default=0)


def estimate_training_memory(model: Any, batch_size: int, roi_size: Sequence[int],
                             device: str | torch.device, accumulate: int = 1,
                             amp_dtype: torch.dtype | None = None,
                             train_config: TrainConfig | None = None) -> MemoryEstimate:
    """Estimate the peak memory of training ``model`` (already on ``device``).

    Args:
        model: a :class:`~medtoken.models.base.SegmentationModel`.
        batch_size: patches per forward pass (per micro-batch).
        roi_size: the training patch ``(*S)``.
        device: where training runs; the probe runs there.
        accumulate: micro-batches per optimiser step. It does not raise the peak (one
            micro-batch's activations are alive at a time, and the gradients, which outlive the
            micro-batches, are always counted); it is checked for consistency only.
        amp_dtype: the autocast dtype when training with mixed precision (saved activations
            shrink accordingly), ``None`` without.
        train_config: the run's recipe: its ``optimizer`` (states) and loss (saved tensors; a
            model with its own segmentation loss keeps it), as training builds them; default
            ``TrainConfig()``.
    """
    if batch_size < 1 or accumulate < 1:
        raise ValueError(f"batch_size and accumulate must be >= 1, got {batch_size} and "
                         f"{accumulate}")
    if len(roi_size) != model.spatial_dims:
        raise ValueError(f"roi_size {tuple(roi_size)} must have {model.spatial_dims} entries")
    device = torch.device(device)
    train_config = train_config or TrainConfig()
    params = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    probe = probe_size(model, roi_size)
    saved, largest = saved_activation_bytes(model, probe, device, PROBE_BATCH, amp_dtype,
                                            build_loss(train_config, model))
    voxels = math.prod(int(s) for s in roi_size)
    scale = batch_size * voxels / (PROBE_BATCH * math.prod(probe))
    batch = batch_size * voxels * (4 * model.in_channels + LABEL_BYTES)  # float32 image, labels
    return MemoryEstimate(params_bytes=params, gradients_bytes=trainable,
                          optimizer_bytes=optimizer_states(train_config) * trainable,
                          activations_bytes=batch + math.ceil((saved + largest) * scale),
                          batch_size=batch_size, roi_size=tuple(int(s) for s in roi_size),
                          probe_size=probe)


def check_memory_fits(estimate: MemoryEstimate, available_bytes: int | None,
                      where: str = "--batch-size/--roi-size") -> None:
    """Refuse a training run whose estimated peak exceeds the available memory.

    Raises:
        InputError: at ``where``, with the estimate, its parts and what to change.
    """
    if available_bytes is None or estimate.total_bytes <= available_bytes:
        return
    raise InputError(where, f"{estimate.summary()} exceeds the {format_bytes(available_bytes)} "
                     f"available (batch {estimate.batch_size}, patch "
                     f"{'x'.join(map(str, estimate.roi_size))}); lower --batch-size or "
                     "--roi-size, or pass --force-memory")
