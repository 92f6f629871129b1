"""Where token models look: the fraction of selected tokens whose cell meets the label's boundary.

For every window a model sees on a labelled case, the selected tokens' voxel boxes (the final
stage of the model's :class:`~medtoken.models.base.TokenSelection`; TokenSeg: the K selected
cells; SCD: the patches kept by the last pruning stage) are compared with the
label's boundary band (:func:`medtoken.tokens.selection.boundary_band`, radius 2 voxels by
default). The control is uniform random selection of the same number of tokens from the same
candidates; its expected hit fraction is the hit fraction over all candidates, computed exactly
(no sampling noise). TokenSeg's paper claims more than 60% of its selected tokens meet the band.

Windows: each case is normalised as in training, zero-padded to at least the model's window and
cut into a grid of non-overlapping windows (the last one aligned to the far edge); windows whose
label has no boundary are skipped (both fractions would be 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.data.utils import dense_patch_slices

from medtoken.models.base import TokenSelection
from medtoken.tokens.selection import boundary_band, box_sums

__all__ = ["TokenHits", "case_token_hits", "token_boxes"]


@dataclass(frozen=True)
class TokenHits:
    """Boundary-hit statistics of one case (means over its windows with a boundary)."""

    case_id: str
    windows: int
    selected: int  # tokens selected per window
    candidates: int  # tokens they were selected from
    selected_hit_fraction: float  # NaN when no window has a boundary
    random_hit_fraction: float  # expected fraction for uniform random selection

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_boxes(selection: TokenSelection | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Selected boxes ``(B, K, 2 * sd)`` (the final stage) and candidate boxes ``(N, 2 * sd)``
    of a model's ``forward_with_aux(x).tokens``.

    Raises:
        ValueError: the model reports no token selection.
    """
    if selection is None:
        raise ValueError("the model reports no token selection (use an SCD or TokenSeg model)")
    return selection.selected_box, selection.candidate_box


def _windows(image: np.ndarray, labels: np.ndarray,
             window: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[tuple[slice, ...]]]:
    """Zero-pad ``image (C, *S)`` and ``labels (*S)`` to at least ``window``; the window grid."""
    pad = [(0, max(0, w - s)) for s, w in zip(labels.shape, window, strict=True)]
    image = np.pad(image, [(0, 0), *pad])
    labels = np.pad(labels, pad)
    slices = dense_patch_slices(labels.shape, tuple(window), tuple(window))
    return image, labels, [tuple(s) for s in slices]


def case_token_hits(model: Any, case_id: str, image: np.ndarray, labels: np.ndarray,
                    radius: int = 2) -> TokenHits:
    """Boundary-hit statistics of ``model`` (eval mode) on one normalised case.

    Args:
        model: an SCD or TokenSeg :class:`~medtoken.models.base.SegmentationModel`.
        case_id: reported as is.
        image: ``(C, *S)`` float32, normalised as the model was trained.
        labels: ``(*S)`` integer labels.
        radius: boundary band half-width in voxels.
    """
    window = model.window_size
    image, labels, slices = _windows(image, labels, window)
    device = next(model.parameters()).device
    selected_fracs, random_fracs, selected, candidates = [], [], 0, 0
    for where in slices:
        label = torch.from_numpy(labels[where].astype(np.int64))[None].to(device)  # (1, *W)
        band = boundary_band(label, radius).float()  # (1, *W)
        if not bool(band.any()):
            continue
        x = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *where)]))[None]
        with torch.inference_mode():
            selection = model.forward_with_aux(x.to(device)).tokens
        chosen, pool = token_boxes(selection)  # (1, K, 2sd), (N, 2sd)
        selected, candidates = chosen.shape[1], pool.shape[0]
        selected_fracs.append(float(torch.gt(box_sums(band, chosen), 0).double().mean()))
        random_fracs.append(float(torch.gt(box_sums(band, pool), 0).double().mean()))
    return TokenHits(case_id, len(selected_fracs), selected, candidates,
                     float(np.mean(selected_fracs)) if selected_fracs else math.nan,
                     float(np.mean(random_fracs)) if random_fracs else math.nan)
