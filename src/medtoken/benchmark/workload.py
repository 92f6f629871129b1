"""What one timed step does in each benchmark mode.

- ``infer``: ``eval()`` + ``torch.inference_mode()``, one forward of the batch as given;
- ``train``: ``train()``, forward + backward + AdamW step with the loss the training loop uses
  (MONAI DiceCE on the logits + ``sum(forward_with_aux(x, y).losses.values())``, or those
  losses alone for a model that ``computes_segmentation_loss``, e.g. nnU-Net's);
- ``volume``: whole-case prediction of one case already in memory with ``medtoken predict``'s
  code (:func:`predict_volume_case`). The benchmark runs it one process per case
  (:mod:`medtoken.benchmark.volume`); the in-process step here serves the memory child.

With ``compile`` the model's forward (``forward_with_aux`` in train mode) runs through
:func:`medtoken.utils.compile.maybe_compile`; :func:`build_workload` then runs one untimed step
that compiles it and reports that step's seconds as ``compile_s``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoken.utils.compile import maybe_compile
from medtoken.utils.errors import InputError

__all__ = [
    "MODES",
    "VolumeCases",
    "Workload",
    "amp_dtype",
    "autocast",
    "build_workload",
    "load_volume_cases",
    "make_batch",
    "predict_volume_case",
]

MODES = ("infer", "train", "volume")
TRAIN_LR = 1e-4  # any value works for timing; this is the training default's order of magnitude
TRAIN_WEIGHT_DECAY = 1e-5


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype: float16 on CUDA (as the training loop), bfloat16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``device`` with :func:`amp_dtype`, or a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device))


@dataclass
class Workload:
    """One model's timed unit of work.

    Attributes:
        step: runs one unit; its argument is the repetition index (volume mode: which case).
        items_per_step: samples per step (the batch size), or 1 case in volume mode.
        compile_s: seconds of the first (compiling) step with ``compile``, else ``None``.
    """

    step: Callable[[int], None]
    items_per_step: int
    compile_s: float | None = None


@dataclass
class VolumeCases:
    """Normalised whole cases held on the host, for volume mode."""

    case_ids: list[str]
    images: list[torch.Tensor]  # each (1, C, *S) float32

    @property
    def largest(self) -> int:
        """Index of the case with the most voxels (used for the memory measurement)."""
        return int(np.argmax([img.numel() for img in self.images]))


def make_batch(input_size: Sequence[int], num_classes: int, device: torch.device,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random image ``(B, C, *S)`` and integer labels ``(B, 1, *S)`` on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(input_size), generator=gen)
    y = torch.randint(0, num_classes, (input_size[0], 1, *input_size[2:]), generator=gen)
    return x.to(device), y.to(device)


def pick_case_ids(case_ids: Sequence[str], count: int) -> list[str]:
    """``count`` case ids spread evenly over the sorted list (all of them if there are fewer)."""
    ids = sorted(case_ids)
    if count >= len(ids):
        return ids
    picks = np.linspace(0, len(ids) - 1, count).round().astype(int)
    return [ids[i] for i in picks]


def load_volume_cases(data: str | Path, count: int | None, in_channels: int,
                      spatial_dims: int, case_ids: Sequence[str] | None = None) -> VolumeCases:
    """Read and z-score (per case) ``count`` cases of the dataset at ``data``, or ``case_ids``.

    Raises:
        InputError: the folder is not a dataset, or its channels or dimensionality do not match
            the models'.
    """
    from medtoken.data.datasets import load_dataset
    from medtoken.data.io import read_image
    from medtoken.data.preprocess import NormalizationPlan, normalize

    info = load_dataset(data)
    if info.num_channels != in_channels:
        raise InputError("--data", f"{data} has {info.num_channels} channel(s) but --input-size "
                         f"gives C={in_channels}")
    if info.spatial_dims != spatial_dims:
        raise InputError("--data", f"{data} is {info.spatial_dims}D but --input-size is "
                         f"{spatial_dims}D")
    ids = list(case_ids) if case_ids is not None else pick_case_ids(info.case_ids, count or 1)
    plan = NormalizationPlan(("zscore",) * in_channels, (None,) * in_channels)
    images = []
    for case_id in ids:
        image, _ = read_image(info.case(case_id).images)  # (C, *S)
        images.append(torch.from_numpy(normalize(image, plan))[None])  # (1, C, *S)
    return VolumeCases(ids, images)


def _infer_workload(model: Any, x: torch.Tensor, amp: bool, compile: bool) -> Workload:
    model.eval()
    forward = maybe_compile(model, compile)

    def step(_index: int) -> None:
        with torch.inference_mode(), autocast(x.device, amp):
            forward(x)

    return Workload(step, int(x.shape[0]))


def _train_workload(model: Any, x: torch.Tensor, y: torch.Tensor, amp: bool,
                    compile: bool) -> Workload:
    from medtoken.train.config import TrainConfig
    from medtoken.train.losses import build_loss
    from medtoken.train.optim import build_optimizer

    model.train()
    optimizer = build_optimizer(model, TRAIN_LR, TRAIN_WEIGHT_DECAY)
    loss_fn = build_loss(TrainConfig(), model)  # the default recipe's loss
    scaler = torch.amp.GradScaler("cuda", enabled=amp and x.device.type == "cuda")
    forward = maybe_compile(model.forward_with_aux, compile)

    def step(_index: int) -> None:
        with autocast(x.device, amp):
            out = forward(x, y)
            loss = loss_fn(out.logits.float(), y) + sum(out.losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return Workload(step, int(x.shape[0]))


def predict_volume_case(model: Any, image: np.ndarray, normalization: dict[str, Any], *,
                        stitching: str = "slab", overlap: float = 0.5, batch_size: int = 2,
                        amp: bool = False, accumulate_dtype: str | None = None,
                        compile: bool = False) -> np.ndarray:
    """Labels ``(*S)`` of a raw case ``(C, *S)`` predicted as ``medtoken predict`` does
    (:func:`~medtoken.inference.predict.predict_array` with these options and the stored
    ``normalization`` plan), the model's weights as they are."""
    from pathlib import Path

    from medtoken.inference.options import PredictOptions
    from medtoken.inference.predict import predict_array
    from medtoken.models.checkpoint import LoadedModel

    model.eval()
    device = _device_of(model)
    model = maybe_compile(model, compile)  # as predict_cases does with --compile
    loaded = LoadedModel(model=model, state={"dataset": {"normalization": normalization}},
                         path=Path("<benchmark>"))
    options = PredictOptions(overlap=overlap, stitching=stitching, batch_size=batch_size,
                             accumulate_dtype=accumulate_dtype)
    with torch.inference_mode(), autocast(device, amp):
        labels, _ = predict_array(loaded, image, options)
    return labels


def _device_of(model: Any) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _volume_workload(model: Any, cases: VolumeCases, device: torch.device, amp: bool,
                     overlap: float, sw_batch_size: int, compile: bool = False,
                     stitching: str = "slab") -> Workload:
    plan = {"schemes": ["zscore"] * int(model.in_channels),
            "ct_stats": [None] * int(model.in_channels)}

    def step(index: int) -> None:
        image = cases.images[index % len(cases.images)][0].numpy()  # (C, *S)
        predict_volume_case(model, image, plan, stitching=stitching, overlap=overlap,
                            batch_size=sw_batch_size, amp=amp, compile=compile)

    return Workload(step, 1)


def build_workload(model: Any, mode: str, input_size: Sequence[int], device: torch.device,
                   amp: bool = False, cases: VolumeCases | None = None,
                   overlap: float = 0.5, compile: bool = False) -> Workload:
    """The timed step of ``model`` (already on ``device``) in ``mode``.

    Args:
        input_size: ``(B, C, *S)``; in volume mode ``B`` is the sliding-window batch size and
            ``S`` the window.
        cases: the cases of volume mode.
        overlap: sliding-window overlap (volume mode).
        compile: ``torch.compile`` the forward; one step runs here (untimed by the caller's
            repeats) to compile it, and its seconds are the workload's ``compile_s``.
    """
    if mode == "volume":
        if cases is None:
            raise ValueError("volume mode needs cases")
        work = _volume_workload(model, cases, device, amp, overlap, int(input_size[0]), compile)
    elif mode in ("infer", "train"):
        x, y = make_batch(input_size, model.num_classes, device)
        work = (_infer_workload(model, x, amp, compile) if mode == "infer"
                else _train_workload(model, x, y, amp, compile))
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if compile:
        start = time.perf_counter()
        work.step(0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        work.compile_s = time.perf_counter() - start
    return work
