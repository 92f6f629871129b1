"""Connected components of label maps (scipy.ndimage), full connectivity as nnU-Net v2.

nnU-Net v2 (``acvl_utils.morphology.morphology_helper.remove_all_but_largest_component``) labels
with ``skimage.measure.label`` at its default connectivity ``ndim``: 8-connected in 2D,
26-connected in 3D. ``scipy.ndimage.label`` with ``generate_binary_structure(ndim, ndim)`` is the
same neighbourhood. Components tied for the largest size are all kept, as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["CONNECTIVITY", "remove_all_but_largest_component"]

CONNECTIVITY = ("full (scipy.ndimage.label with generate_binary_structure(ndim, ndim): "
                "8-connected in 2D, 26-connected in 3D; components tied for the largest size "
                "are all kept)")


def remove_all_but_largest_component(labels: np.ndarray, group: Sequence[int]) -> np.ndarray:
    """Keep only the largest connected component of the voxels whose label is in ``group``.

    The labels of ``group`` are joined into one mask (a component may hold several labels);
    voxels of that mask outside its largest component become background 0. Other labels are
    untouched and the input is not modified.

    Args:
        labels: integer label map ``(*S)``, 2D or 3D.
        group: the labels forming the mask.

    Returns:
        A new label map ``(*S)`` of the same dtype.
    """
    labels = np.asarray(labels)
    out = labels.copy()
    mask = np.isin(labels, np.asarray(group, dtype=np.int64))  # (*S) bool
    if not mask.any():
        return out
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, count = ndimage.label(mask, structure=structure)  # (*S) int, 1..count
    if count <= 1:
        return out
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]  # (count,)
    keep = np.flatnonzero(sizes == sizes.max()) + 1
    out[mask & ~np.isin(components, keep)] = 0
    return out
