"""Intensity normalisation, as nnU-Net does it.

A channel named ``CT`` (any case) is clipped to the dataset's foreground 0.5 / 99.5 percentiles
and standardised with the foreground mean and std (``CTNormalization``); every other channel is
z-scored per case over the whole image (``ZScoreNormalization``). Foreground intensities are
sampled, with replacement, ``max_voxels_per_case`` per case (nnU-Net's fingerprint uses 10,000).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtoken.data.datasets import DatasetInfo
from medtoken.data.io import read_image, read_label

__all__ = ["SCHEMES", "NormalizationPlan", "compute_ct_stats", "normalize", "plan_normalization"]

SCHEMES = ("zscore", "ct")
STD_EPS = 1e-8  # lower bound on the std divisor (nnU-Net's guard against constant images)
CT_PERCENTILES = (0.5, 99.5)

CTStats = tuple[float, float, float, float]  # (lo, hi, mean, std) of foreground intensities


@dataclass(frozen=True)
class NormalizationPlan:
    """How each image channel is normalised.

    Attributes:
        schemes: per channel, ``"zscore"`` (per-case) or ``"ct"`` (dataset statistics).
        ct_stats: per channel ``(lo, hi, mean, std)`` for ``"ct"`` channels, else ``None``.
    """

    schemes: tuple[str, ...]
    ct_stats: tuple[CTStats | None, ...]

    def __post_init__(self) -> None:
        if not self.schemes:
            raise ValueError("schemes must name at least one channel")
        bad = [s for s in self.schemes if s not in SCHEMES]
        if bad:
            raise ValueError(f"schemes must be in {SCHEMES}, got {bad}")
        if len(self.ct_stats) != len(self.schemes):
            raise ValueError(f"ct_stats must have one entry per channel ({len(self.schemes)}), "
                             f"got {len(self.ct_stats)}")
        for scheme, stats in zip(self.schemes, self.ct_stats, strict=True):
            if scheme == "ct" and (stats is None or len(stats) != 4 or stats[0] > stats[1]
                                   or not stats[3] >= 0):
                raise ValueError(f"ct_stats of a 'ct' channel must be (lo, hi, mean, std) with "
                                 f"lo <= hi and std >= 0, got {stats}")

    @property
    def num_channels(self) -> int:
        """Number of image channels the plan is for."""
        return len(self.schemes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists, floats, ``None``)."""
        return {"schemes": list(self.schemes),
                "ct_stats": [None if s is None else [float(v) for v in s] for s in self.ct_stats]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormalizationPlan:
        """Inverse of :meth:`to_dict`."""
        if set(d) != {"schemes", "ct_stats"}:
            raise ValueError(f"a normalization plan has keys 'schemes' and 'ct_stats', got "
                             f"{sorted(d)}")
        stats = tuple(None if s is None else (float(s[0]), float(s[1]), float(s[2]), float(s[3]))
                      for s in d["ct_stats"])
        return cls(schemes=tuple(str(s) for s in d["schemes"]), ct_stats=stats)


def _channel_schemes(channel_names: Sequence[str]) -> tuple[str, ...]:
    return tuple("ct" if name.strip().lower() == "ct" else "zscore" for name in channel_names)


def _sample_foreground(image: np.ndarray, labels: np.ndarray, channels: Sequence[int],
                       num_samples: int, seed: int) -> dict[int, np.ndarray]:
    """Up to ``num_samples`` intensities per channel from voxels with label > 0 (all voxels if
    there is no foreground), drawn with replacement as in nnU-Net's fingerprint."""
    rng = np.random.RandomState(seed)
    mask = labels > 0
    if not mask.any():
        mask = np.ones_like(mask)
    return {c: rng.choice(image[c][mask], num_samples, replace=True) for c in channels}


def compute_ct_stats(values: np.ndarray) -> CTStats:
    """``(lo, hi, mean, std)``: 0.5 / 99.5 percentiles, mean and std of foreground samples."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(values, CT_PERCENTILES)
    return float(lo), float(hi), float(values.mean()), float(values.std())


def plan_normalization(info: DatasetInfo, case_ids: Sequence[str] | None = None,
                       max_voxels_per_case: int = 10000, seed: int = 0) -> NormalizationPlan:
    """Choose the scheme per channel from ``info.channel_names``; collect CT statistics.

    Images are read only when some channel is CT.

    Args:
        info: the dataset.
        case_ids: cases to collect CT statistics from (default: all; pass the training ids).
        max_voxels_per_case: foreground intensities sampled per case.
        seed: seed of the per-case sampling.
    """
    schemes = _channel_schemes(info.channel_names)
    ct_channels = [c for c, s in enumerate(schemes) if s == "ct"]
    if not ct_channels:
        return NormalizationPlan(schemes, tuple(None for _ in schemes))
    if max_voxels_per_case < 1:
        raise ValueError(f"max_voxels_per_case must be >= 1, got {max_voxels_per_case}")
    samples: dict[int, list[np.ndarray]] = {c: [] for c in ct_channels}
    for case_id in info.case_ids if case_ids is None else case_ids:
        case = info.case(case_id)
        image, _ = read_image(case.images)  # (C, *S)
        if case.label is None:
            continue
        labels, _ = read_label(case.label)  # (*S)
        drawn = _sample_foreground(image, labels, ct_channels, max_voxels_per_case, seed)
        for c, values in drawn.items():
            samples[c].append(values)
    if not samples[ct_channels[0]]:
        raise ValueError("no labelled case to compute CT statistics from")
    stats = tuple(compute_ct_stats(np.concatenate(samples[c])) if s == "ct" else None
                  for c, s in enumerate(schemes))
    return NormalizationPlan(schemes, stats)


def normalize(image: np.ndarray, plan: NormalizationPlan) -> np.ndarray:
    """Normalise ``image (C, *S)`` channel by channel.

    Returns:
        A new float32 array ``(C, *S)``.
    """
    if image.shape[0] != plan.num_channels:
        raise ValueError(f"image has {image.shape[0]} channels, the plan {plan.num_channels}")
    out = np.empty(image.shape, dtype=np.float32)
    for c, (scheme, stats) in enumerate(zip(plan.schemes, plan.ct_stats, strict=True)):
        x = image[c].astype(np.float32)
        if scheme == "ct":
            assert stats is not None
            lo, hi, mean, std = stats
            np.clip(x, lo, hi, out=x)
        else:  # accumulate in float64: intensities reach 1e6 in some MRI volumes
            mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
        out[c] = (x - np.float32(mean)) / np.float32(max(std, STD_EPS))
    return out
