"""Training data: whole normalised cases in memory, and a resumable random patch sampler.

Every batch is a pure function of ``(seed, rank, step)``: the cases are drawn and the MONAI
transforms are re-seeded from that triple, so a resumed run sees exactly the batches an
uninterrupted run would have seen, without storing any random-generator state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medtoken.data.datasets import DatasetInfo
from medtoken.data.io import ImageMeta, read_image, read_label
from medtoken.data.preprocess import NormalizationPlan, normalize
from medtoken.data.resample import resample_image, resample_label
from medtoken.data.transforms import build_train_transforms
from medtoken.utils.errors import InputError

__all__ = ["LoadedCase", "PatchSampler", "derive_roi_size", "load_cases"]


@dataclass
class LoadedCase:
    """A normalised case held in memory.

    ``meta`` is the file's geometry; ``spacing`` is that of the arrays held (the target spacing
    when the case was resampled, else ``meta.spacing``).
    """

    case_id: str
    image: np.ndarray  # (C, *S) float32, normalised
    label: np.ndarray  # (1, *S) int16
    meta: ImageMeta
    spacing: tuple[float, ...]


def load_cases(info: DatasetInfo, case_ids: Sequence[str], plan: NormalizationPlan,
               target_spacing: Sequence[float] | None = None) -> list[LoadedCase]:
    """Read, check and normalise the listed cases; resample them to ``target_spacing`` if given
    (normalised first, as nnU-Net does; a case already at that spacing is kept as read)."""
    cases = []
    for case_id in case_ids:
        case = info.case(case_id)
        if case.label is None:
            raise InputError(case.images[0], "training case has no label file")
        image, meta = read_image(case.images)
        label, _ = read_label(case.label)
        if label.shape != image.shape[1:]:
            raise InputError(case.label, f"label shape {label.shape} does not match image shape "
                             f"{image.shape[1:]}")
        if not np.isfinite(image).all():
            raise InputError(case.images[0], "image contains NaN or Inf values")
        x, y = normalize(image, plan), label[None].astype(np.int16)
        spacing = meta.spacing
        if target_spacing is not None:
            x = resample_image(x, meta.spacing, target_spacing)
            y = resample_label(y, meta.spacing, target_spacing)
            spacing = tuple(float(s) for s in target_spacing)
        cases.append(LoadedCase(case_id, x, y, meta, spacing))
    return cases


def derive_roi_size(cases: Sequence[LoadedCase], preset_roi: Sequence[int],
                    multiple: Sequence[int]) -> tuple[int, ...]:
    """nnU-Net-style training patch (the model's ``roi_size``): median case shape rounded up to
    ``multiple``, capped by the preset."""
    median = np.median(np.array([c.image.shape[1:] for c in cases]), axis=0)
    patch = []
    for m, cap, mult in zip(median, preset_roi, multiple, strict=True):
        rounded = int(np.ceil(m / mult) * mult)
        patch.append(max(mult, min(rounded, (cap // mult) * mult)))
    return tuple(patch)


class PatchSampler:
    """Random augmented training batches drawn from in-memory cases."""

    def __init__(self, cases: Sequence[LoadedCase], roi_size: Sequence[int], batch_size: int,
                 seed: int, rank: int = 0, foreground_ratio: float = 0.33) -> None:
        if not cases:
            raise InputError("--fold", "the training split has no cases")
        self.cases = cases
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.transforms = build_train_transforms(roi_size, foreground_ratio)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (B, C, *P) float32, label (B, 1, *P) int64)`` for global step ``step``."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        self.transforms.set_random_state(seed=int(rng.integers(2**31 - 1)))
        images, labels = [], []
        for idx in rng.integers(len(self.cases), size=self.batch_size):
            case = self.cases[int(idx)]
            out = self.transforms({"image": case.image, "label": case.label})
            item = out[0] if isinstance(out, list) else out
            images.append(torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32))
            labels.append(torch.as_tensor(np.asarray(item["label"])).long())
        return torch.stack(images), torch.stack(labels)
