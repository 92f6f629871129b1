"""Which tokens a token model kept, drawn over the image: where the model looks.

Works from ``forward_with_aux(x).info`` of either token family:

- SCD reports ``token_grid`` and, per pruning stage, ``kept_token_idx`` (raster positions);
- TokenSeg reports the selected cells' ``token_box`` (voxel boxes) and ``token_level``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def _scd_maps(info: Mapping[str, Any], shape: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    grid = tuple(int(g) for g in info["token_grid"])
    patch = [s // g for s, g in zip(shape, grid, strict=True)]
    total = math.prod(grid)
    maps = []
    for stage, idx in enumerate(info["kept_token_idx"], start=1):
        cells = np.zeros(total, dtype=bool)
        kept = np.asarray(idx[0].detach().cpu())
        cells[kept] = True
        full = cells.reshape(grid)
        for axis, p in enumerate(patch):  # token grid -> voxels: repeat each cell p times
            full = np.repeat(full, p, axis=axis)
        maps.append((f"stage {stage}: kept {kept.size} of {total}", full))
    return maps


def _tokenseg_maps(info: Mapping[str, Any], shape: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    boxes = np.asarray(info["token_box"][0].detach().cpu())  # (K, 2d): starts then stops
    levels = np.asarray(info["token_level"][0].detach().cpu())  # (K,)
    dims = len(shape)
    maps = []
    for level in sorted(set(levels.tolist())):
        mask = np.zeros(tuple(shape), dtype=bool)
        chosen = boxes[levels == level]
        for box in chosen:
            mask[tuple(slice(int(box[a]), int(box[dims + a])) for a in range(dims))] = True
        maps.append((f"level {level} (stride {2 ** level}): {len(chosen)} cells", mask))
    return maps


def token_maps(info: Mapping[str, Any], shape: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """``[(title, mask (*shape) bool)]``: the kept tokens per stage/level of batch element 0."""
    if "kept_token_idx" in info and "token_grid" in info:
        return _scd_maps(info, shape)
    if "token_box" in info and "token_level" in info:
        return _tokenseg_maps(info, shape)
    raise InputError("--model", "this model reports no token selection (use an SCD or TokenSeg "
                     "model)")


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
