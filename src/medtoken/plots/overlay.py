"""Reference and prediction contours over image slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtoken.utils.atomic import atomic_path

__all__ = ["pick_slices", "plot_overlay"]


def pick_slices(mask: np.ndarray | None, depth: int, count: int = 3) -> list[int]:
    """Indices along the last axis: the slices with most foreground (evenly spread if none)."""
    if mask is not None and mask.any():
        area = (mask > 0).reshape(-1, depth).sum(0)
        best = int(np.argmax(area))
        candidates = sorted({best, *np.flatnonzero(area)[[0, -1]].tolist()})
        return candidates[:count]
    return sorted({int(i) for i in np.linspace(0, depth - 1, count + 2)[1:-1]})


def plot_overlay(image: np.ndarray, out: str | Path, reference: np.ndarray | None = None,
                 prediction: np.ndarray | None = None, title: str = "") -> Path:
    """Write a PNG of image slices with reference (green) and prediction (red) contours.

    Args:
        image: ``(C, *S)``; the first channel is shown.
        reference: ``(*S)`` labels or ``None``.
        prediction: ``(*S)`` labels or ``None``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = image[0]
    if img.ndim == 2:
        img, reference, prediction = (None if a is None else a[..., None]
                                      for a in (img, reference, prediction))  # type: ignore[assignment]
    assert img is not None
    slices = pick_slices(reference if reference is not None else prediction, img.shape[-1])
    fig, axes = plt.subplots(1, len(slices), figsize=(4 * len(slices), 4), squeeze=False)
    for ax, z in zip(axes[0], slices, strict=True):
        ax.imshow(img[..., z].T, cmap="gray", origin="lower")
        for labels, colour in ((reference, "lime"), (prediction, "red")):
            if labels is not None:
                for value in np.unique(labels[..., z])[1:]:
                    ax.contour((labels[..., z] == value).T, levels=[0.5], colors=colour,
                               linewidths=1.2, origin="lower")
        ax.set_title(f"slice {z}" if image.ndim == 4 else "")
        ax.axis("off")
    fig.suptitle(f"{title}  (green: reference, red: prediction)".strip())
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(out)
