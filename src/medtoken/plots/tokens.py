"""Which tokens a token model kept, drawn over the image: where the model looks.

Works from ``forward_with_aux(x).tokens``, the model's
:class:`~medtoken.models.base.TokenSelection`: one panel per selection stage (SCD: per pruning
stage), split by level when the candidates come from several scales (TokenSeg).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtoken.models.base import TokenSelection
from medtoken.utils.atomic import atomic_path
from medtoken.utils.errors import InputError

__all__ = ["center_window", "plot_token_maps", "token_maps"]


def center_window(image: np.ndarray, roi: Sequence[int]) -> np.ndarray:
    """``(C, *roi)``: the central crop of ``image (C, *S)``, zero-padded where it is smaller."""
    out = np.zeros((image.shape[0], *roi), dtype=image.dtype)
    src, dst = [slice(None)], [slice(None)]
    for size, want in zip(image.shape[1:], roi, strict=True):
        start = max(0, (size - want) // 2)
        length = min(size, want)
        offset = max(0, (want - size) // 2)
        src.append(slice(start, start + length))
        dst.append(slice(offset, offset + length))
    out[tuple(dst)] = image[tuple(src)]
    return out


def _paint(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(*shape)`` bool: True inside any of the half-open voxel ``boxes (K, 2d)``."""
    dims = len(shape)
    mask = np.zeros(tuple(shape), dtype=bool)
    for box in boxes:
        mask[tuple(slice(int(box[a]), int(box[dims + a])) for a in range(dims))] = True
    return mask


def _level_maps(boxes: np.ndarray, levels: np.ndarray,
                prefix: str, shape: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """One map per level present among the kept tokens (``boxes (K, 2d)``, ``levels (K,)``)."""
    maps = []
    for level in sorted(set(levels.tolist())):
        chosen = boxes[levels == level]
        maps.append((f"{prefix}level {level} (stride {2 ** level}): {len(chosen)} cells",
                     _paint(chosen, shape)))
    return maps


def token_maps(selection: TokenSelection | None,
               shape: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """``[(title, mask (*shape) bool)]``: the kept tokens of batch element 0, one map per
    selection stage, or per stage and level for multi-scale candidates.

    Args:
        selection: ``forward_with_aux(x).tokens``; ``None`` (a dense model) is refused.
        shape: the model's window.
    """
    if selection is None:
        raise InputError("--model", "this model reports no token selection (use an SCD or "
                         "TokenSeg model)")
    candidates = np.asarray(selection.candidate_box.detach().cpu())  # (N, 2d)
    levels = (None if selection.candidate_level is None
              else np.asarray(selection.candidate_level.detach().cpu()))  # (N,)
    maps: list[tuple[str, np.ndarray]] = []
    for stage, kept in enumerate(selection.kept, start=1):
        idx = np.asarray(kept[0].detach().cpu())  # (K_s,)
        if levels is None:
            maps.append((f"stage {stage}: kept {idx.size} of {len(candidates)}",
                         _paint(candidates[idx], shape)))
        else:
            prefix = f"stage {stage}, " if len(selection.kept) > 1 else ""
            maps += _level_maps(candidates[idx], levels[idx], prefix, shape)
    return maps


def plot_token_maps(image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]], out: str | Path,
                    title: str = "", slice_index: int | None = None) -> Path:
    """One panel per stage: the image (first channel) with the kept tokens tinted.

    Args:
        image: ``(C, *S)``; for 3D the slice ``slice_index`` along the last axis is shown
            (default: the slice where the last stage kept most).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = image[0]
    if img.ndim == 3:
        last = maps[-1][1]
        z = slice_index if slice_index is not None else int(np.argmax(last.sum(axis=(0, 1))))
        if not 0 <= z < img.shape[-1]:
            raise InputError("--slice", f"{z} is outside 0..{img.shape[-1] - 1}")
        img = img[..., z]
        maps = [(t, m[..., z]) for t, m in maps]
        title = f"{title} (slice {z})".strip()
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.8), squeeze=False)
    for ax, (name, mask) in zip(axes[0], maps, strict=True):
        ax.imshow(img.T, cmap="gray", origin="lower")
        tint = np.ma.masked_where(~mask.T, np.ones_like(mask.T, dtype=float))
        ax.imshow(tint, cmap="autumn", alpha=0.45, origin="lower", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(out)
