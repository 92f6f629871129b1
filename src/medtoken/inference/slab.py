"""Slab-wise sliding-window prediction: memory that grows with the voxels, not classes x voxels.

The result is that of :func:`~medtoken.inference.sliding_window.predict_probabilities` (MONAI's
sliding window with Gaussian blending, softmax of the blended logits, mirror TTA averaging the
probabilities of every mirroring, ensembles averaging the members), computed without ever
holding ``(K, *S)``:

- Every (member, mirroring) pair is a *stream* with MONAI's window grid on its mirrored,
  padded image (``dense_patch_slices``, interval ``int(roi * (1 - overlap))``, zero padding of
  images smaller than the window split as MONAI splits it). Its windows are mapped back to the
  original orientation, so each stream accumulates in original coordinates.
- Windows are processed in order of where they start along the last spatial axis. A stream
  accumulates Gaussian-weighted logits in a ring buffer one window deep along that axis
  (``(K, *S[:-1], roi[-1])``, float16 by default) and the weights in float32 beside it.
- Once no window is left that starts before ``z``, every plane before ``z`` is final: each
  stream's blended logits there are divided by their weights, soft-maxed, averaged over the
  streams, and the argmax goes into the label volume (uint8 for up to 255 classes). On request
  the averaged probabilities are also copied into a ``(K, *S)`` array.

With float32 accumulation the probabilities equal the full path's to about 1e-7. Tolerance of
float16 accumulation: each window's weighted logits are rounded to float16 when added (a
relative error of about 5e-4 of the running sum per addition); the probabilities stay within
1e-3 of the float32 path, and the labels can differ only where the two largest probabilities
are closer than 1e-2 (tests/inference/test_slab.py checks both).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices

from medtoken.inference.sliding_window import SIGMA_SCALE, mirror_axes_sets

__all__ = ["FINALIZE_ELEMENTS", "Member", "label_dtype", "predict_slabwise", "window_starts"]

FINALIZE_ELEMENTS = 2**20  # at most this many (class x voxel) values are soft-maxed at once


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned integer type that holds labels ``0..num_classes-1``."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


@dataclass(frozen=True)
class Member:
    """One model of a prediction (an ensemble has several).

    Attributes:
        predictor: ``(b, C, *roi)`` -> logits ``(b, K, *roi)``.
        image: ``(C, *S)`` the case normalised with this member's plan (CPU).
        roi_size: its window.
        batch_size: windows per call.
        fixed_batch: every call gets exactly ``batch_size`` windows (padded with zeros windows).
        device: where its windows run.
    """

    predictor: Callable[[torch.Tensor], torch.Tensor]
    image: torch.Tensor
    roi_size: tuple[int, ...]
    batch_size: int = 2
    fixed_batch: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def window_starts(size: int, roi: int, overlap: float) -> tuple[list[int], int]:
    """MONAI's window starts along one axis of the padded image, and the padding before it.

    Returns:
        ``(starts, pad_before)``: starts in padded coordinates; the image is padded to
        ``max(size, roi)`` with ``pad_before`` zeros first (MONAI's ``diff // 2``).
    """
    padded = max(size, roi)
    interval = roi if roi == padded else max(int(roi * (1 - overlap)), 1)
    slices = dense_patch_slices((padded,), (roi,), (interval,))
    return [int(s[0].start) for s in slices], (padded - size) // 2


@dataclass
class _Stream:
    """One (member, mirroring): its windows (original-orientation starts) and ring buffers."""

    member: int
    flip: tuple[int, ...]  # spatial axes (0-based) that this stream mirrors
    starts: list[tuple[int, ...]]  # per window, start in original coordinates (may be < 0)
    weight: torch.Tensor  # (1, *roi) importance map in original orientation
    logits: torch.Tensor  # (K, *S[:-1], depth) ring buffer
    weights: torch.Tensor  # (1, *S[:-1], depth) ring buffer, float32


def _stream_starts(shape: Sequence[int], roi: Sequence[int], overlap: float,
                   flip: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Window starts of one mirroring, mapped to original coordinates."""
    per_axis = []
    for axis, (size, r) in enumerate(zip(shape, roi, strict=True)):
        starts, pad = window_starts(size, r, overlap)
        unpadded = [g - pad for g in starts]  # in the mirrored image
        per_axis.append([size - u - r for u in unpadded] if axis in flip else unpadded)
    grid = np.stack(np.meshgrid(*per_axis, indexing="ij"), -1).reshape(-1, len(shape))
    return [tuple(int(v) for v in row) for row in grid]


def _ring(z0: int, z1: int, depth: int) -> Iterator[tuple[slice, slice]]:
    """Split planes ``[z0, z1)`` into (ring buffer slice, offset-from-z0 slice) parts."""
    z = z0
    while z < z1:
        pos = z % depth
        n = min(z1 - z, depth - pos)
        yield slice(pos, pos + n), slice(z - z0, z - z0 + n)
        z += n


def _crop(image: torch.Tensor, start: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """``image[:, start:start+size]`` with zeros outside ``image`` (MONAI's constant padding)."""
    shape = image.shape[1:]
    src = tuple(slice(max(s, 0), min(s + r, n)) for s, r, n in zip(start, size, shape, strict=True))
    if all(s >= 0 and s + r <= n for s, r, n in zip(start, size, shape, strict=True)):
        return image[(slice(None), *src)]
    out = image.new_zeros((image.shape[0], *size))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start, strict=True))
    out[(slice(None), *dst)] = image[(slice(None), *src)]
    return out


class _Accumulator:
    """The streams' ring buffers, the label volume and (optionally) the probabilities."""

    def __init__(self, streams: list[_Stream], shape: tuple[int, ...], num_classes: int,
                 probabilities: np.ndarray | None) -> None:
        self.streams = streams
        self.shape = shape
        self.labels = np.zeros(shape, label_dtype(num_classes))
        self.probabilities = probabilities
        self.done = 0  # planes before this are final

    def add(self, stream: _Stream, start: Sequence[int], logits: torch.Tensor) -> None:
        """Add one window's logits ``(K, *roi)`` (original orientation) to its stream."""
        roi = logits.shape[1:]
        weighted = logits.float() * stream.weight.to(logits.device)
        local = tuple(slice(max(-s, 0), min(r, n - s)) for s, r, n in
                      zip(start, roi, self.shape, strict=True))
        glob = [slice(max(s, 0), min(s + r, n)) for s, r, n in zip(start, roi, self.shape,
                                                                   strict=True)]
        z = glob[-1]
        depth = stream.logits.shape[-1]
        for ring, offset in _ring(z.start, z.stop, depth):
            src = (*local[:-1], slice(local[-1].start + offset.start,
                                      local[-1].start + offset.stop))
            dst = (slice(None), *glob[:-1], ring)
            stream.logits[dst] += weighted[(slice(None), *src)].to(stream.logits)
            stream.weights[dst] += stream.weight[(slice(None), *src)].to(stream.weights)

    def finalize(self, until: int) -> None:
        """Labels (and probabilities) of planes ``[done, until)``; clears their ring slots."""
        k = self.streams[0].logits.shape[0]
        plane = k * math.prod(self.shape[:-1])
        step = max(1, FINALIZE_ELEMENTS // plane)
        for z0 in range(self.done, until, step):
            z1 = min(until, z0 + step)
            total: torch.Tensor | None = None  # (K, *S[:-1], z1 - z0)
            for stream in self.streams:
                parts = []
                for ring, _ in _ring(z0, z1, stream.logits.shape[-1]):
                    index = (..., ring)
                    blended = stream.logits[index].float().div_(stream.weights[index])
                    parts.append(torch.softmax(blended, dim=0))
                    del blended
                    stream.logits[index] = 0
                    stream.weights[index] = 0
                probs = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
                total = probs if total is None else total.add_(probs)
            assert total is not None
            total /= len(self.streams)
            self.labels[..., z0:z1] = total.argmax(0).cpu().numpy()
            if self.probabilities is not None:
                self.probabilities[..., z0:z1] = total.cpu().numpy()
        self.done = until


def _mirrorings(spatial_dims: int, tta: bool) -> list[tuple[int, ...]]:
    """Spatial axes (0-based) mirrored by each stream of one member."""
    if not tta:
        return [()]
    return [tuple(a - 2 for a in axes) for axes in mirror_axes_sets(spatial_dims)]


def _streams(members: Sequence[Member], num_classes: int, overlap: float, tta: bool,
             dtype: torch.dtype, device: torch.device) -> list[_Stream]:
    shape = tuple(members[0].image.shape[1:])
    streams = []
    for index, member in enumerate(members):
        roi = member.roi_size
        padded = tuple(max(s, r) for s, r in zip(shape, roi, strict=True))
        valid = tuple(min(p, r) for p, r in zip(padded, roi, strict=True))
        weight = compute_importance_map(valid, mode="gaussian", sigma_scale=SIGMA_SCALE,
                                        device="cpu", dtype=torch.float32)[None]  # (1, *roi)
        depth = min(roi[-1], shape[-1])
        for flip in _mirrorings(len(shape), tta):
            mirrored = torch.flip(weight, [a + 1 for a in flip]) if flip else weight
            streams.append(_Stream(
                member=index, flip=flip, starts=_stream_starts(shape, roi, overlap, flip),
                weight=mirrored.to(device),
                logits=torch.zeros((num_classes, *shape[:-1], depth), dtype=dtype, device=device),
                weights=torch.zeros((1, *shape[:-1], depth), dtype=torch.float32, device=device)))
    return streams


def _run_batch(member: Member, items: list[tuple[_Stream, tuple[int, ...]]],
               accumulator: _Accumulator) -> None:
    """Predict one batch of windows of ``member`` and add them to their streams."""
    dims = [a + 1 for a in range(len(member.roi_size))]
    crops = []
    for stream, start in items:
        crop = _crop(member.image, start, member.roi_size)  # (C, *roi)
        crops.append(torch.flip(crop, [dims[a] for a in stream.flip]) if stream.flip else crop)
    if member.fixed_batch and len(crops) < member.batch_size:
        crops += [torch.zeros_like(crops[0])] * (member.batch_size - len(crops))
    logits = member.predictor(torch.stack(crops).to(member.device))  # (b, K, *roi)
    for (stream, start), out in zip(items, logits, strict=False):
        out = torch.flip(out, [dims[a] for a in stream.flip]) if stream.flip else out
        accumulator.add(stream, start, out)


@torch.inference_mode()
def predict_slabwise(members: Sequence[Member], num_classes: int, overlap: float = 0.5,
                     tta: bool = False, accumulate_dtype: torch.dtype = torch.float16,
                     accumulate_device: torch.device | None = None,
                     probabilities: np.ndarray | None = None,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Labels ``(*S)`` of a case, accumulated slab by slab (see the module docstring).

    Args:
        members: the models (one, or an ensemble), each with the case normalised for it.
        num_classes: ``K`` (all members must predict ``K`` channels).
        overlap: window overlap fraction.
        tta: average over all mirrorings of the spatial axes.
        accumulate_dtype: dtype of the blended-logit ring buffers.
        accumulate_device: where the ring buffers live (default CPU).
        probabilities: an optional ``(K, *S)`` array that receives the averaged probabilities.
        progress: called with the number of windows after each batch.

    Returns:
        ``(*S)`` labels in :func:`label_dtype`.
    """
    device = accumulate_device or torch.device("cpu")
    shape = tuple(members[0].image.shape[1:])
    streams = _streams(members, num_classes, overlap, tta, accumulate_dtype, device)
    accumulator = _Accumulator(streams, shape, num_classes, probabilities)
    # every window of every stream, ordered by where it starts along the last axis (clipped)
    items = sorted(((max(start[-1], 0), s, start) for s in streams for start in s.starts),
                   key=lambda item: item[0])
    for z, group in groupby(items, key=lambda item: item[0]):
        accumulator.finalize(z)
        by_member = sorted(((s.member, i, s, start) for i, (_, s, start) in enumerate(group)),
                           key=lambda item: (item[0], item[1]))
        for index, windows in groupby(by_member, key=lambda item: item[0]):
            member = members[index]
            todo = [(s, start) for _, _, s, start in windows]
            for b in range(0, len(todo), member.batch_size):
                batch = todo[b:b + member.batch_size]
                _run_batch(member, batch, accumulator)
                if progress is not None:
                    progress(len(batch))
    accumulator.finalize(shape[-1])
    return accumulator.labels


def count_windows(shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Windows of one stream over an image of spatial ``shape``."""
    return math.prod(len(window_starts(s, r, overlap)[0])
                     for s, r in zip(shape, roi_size, strict=True))
