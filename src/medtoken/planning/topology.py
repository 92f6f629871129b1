"""nnU-Net v2's network topology rules and its feature-map-size (VRAM) estimate, in plain numpy.

:func:`get_pool_and_conv_props` follows ``nnunetv2/experiment_planning/experiment_planners/
network_topology.py`` (2.8.1) step by step; :func:`conv_feature_map_size` is the number that
``PlainConvUNet.compute_conv_feature_map_size`` of ``dynamic_network_architectures`` returns
(encoder convs + decoder convs + transposed convs + the final segmentation layer), computed without
building the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Topology", "conv_feature_map_size", "get_pool_and_conv_props", "pad_shape"]

Vector = Sequence[float] | np.ndarray  # one value per axis
Topology = tuple[list[int], tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...],
                 tuple[int, ...], np.ndarray]


def pad_shape(shape: Vector, must_be_divisible_by: Sequence[int] | np.ndarray) -> np.ndarray:
    """Round ``shape`` up to a multiple of ``must_be_divisible_by`` per axis (nnU-Net's rule)."""
    new = [shape[i] + must_be_divisible_by[i] - shape[i] % must_be_divisible_by[i]
           for i in range(len(shape))]
    for i in range(len(shape)):
        if shape[i] % must_be_divisible_by[i] == 0:
            new[i] -= must_be_divisible_by[i]
    return np.array(new).astype(int)


def _valid_pool_axes(spacing: list[float], size: list[float], num_pool: list[int],
                     min_feature_map_size: int, max_numpool: int) -> list[int]:
    """Axes that can be pooled once more, or ``[]`` when pooling stops."""
    valid = [i for i in range(len(spacing)) if size[i] >= 2 * min_feature_map_size]
    if not valid:
        return []
    min_spacing = min(spacing[i] for i in valid)
    valid = [i for i in valid if spacing[i] / min_spacing < 2]  # within 2x of the finest
    valid = [i for i in valid if num_pool[i] < max_numpool]
    if len(valid) == 1 and size[valid[0]] < 3 * min_feature_map_size:
        return []
    return valid


def get_pool_and_conv_props(spacing: Vector, patch_size: Vector,
                            min_feature_map_size: int, max_numpool: int) -> Topology:
    """Pooling per axis and conv kernel sizes for a patch, as nnU-Net's function of that name.

    Returns:
        ``(num_pool_per_axis, pool_op_kernel_sizes, conv_kernel_sizes, patch_size,
        must_be_divisible_by)``: strides per stage (the first is all 1), kernel sizes per stage,
        and the patch size padded to a multiple of ``2 ** num_pool_per_axis``.
    """
    dim = len(spacing)
    current_spacing, current_size = list(spacing), list(patch_size)
    pool_kernel_sizes: list[list[int]] = [[1] * dim]
    conv_kernel_sizes: list[list[int]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while True:
        valid = _valid_pool_axes(current_spacing, current_size, num_pool, min_feature_map_size,
                                 max_numpool)
        if not valid:
            break
        for d in range(dim):  # a kernel becomes 3 once its axis is within 2x of the finest
            if kernel[d] != 3 and current_spacing[d] / min(current_spacing) < 2:
                kernel[d] = 3
        pool = [1] * dim
        for v in valid:
            pool[v] = 2
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = np.ceil(current_size[v] / 2)
        pool_kernel_sizes.append(pool)
        conv_kernel_sizes.append(list(kernel))
    must_be_divisible_by = 2 ** np.array(num_pool)
    padded = pad_shape(patch_size, must_be_divisible_by)
    conv_kernel_sizes.append([3] * dim)  # the bottleneck always uses 3x3(x3)
    return (num_pool, tuple(tuple(p) for p in pool_kernel_sizes),
            tuple(tuple(k) for k in conv_kernel_sizes), tuple(int(s) for s in padded),
            must_be_divisible_by)


def conv_feature_map_size(patch_size: Sequence[int], strides: Sequence[Sequence[int]],
                          features_per_stage: Sequence[int], n_conv_per_stage: Sequence[int],
                          n_conv_per_stage_decoder: Sequence[int], num_classes: int) -> int:
    """Sum of the output sizes of every conv of a ``PlainConvUNet`` (no deep supervision).

    Encoder stage ``s``: ``n_conv[s]`` convs of ``features[s]`` channels at the stage's size.
    Decoder stage at encoder level ``k``: ``n_conv_dec`` convs plus the transposed conv, each of
    ``features[k]`` channels at level ``k``'s size; then the segmentation layer at full size.
    """
    size = [int(s) for s in patch_size]
    level_sizes = []
    total = 0
    for s in range(len(strides)):
        size = [i // j for i, j in zip(size, strides[s], strict=True)]
        total += n_conv_per_stage[s] * features_per_stage[s] * int(np.prod(size, dtype=np.int64))
        level_sizes.append(size)
    n_stages = len(strides)
    for s in range(n_stages - 1):
        level = n_stages - 2 - s
        voxels = int(np.prod(level_sizes[level], dtype=np.int64))
        total += (n_conv_per_stage_decoder[s] + 1) * features_per_stage[level] * voxels
    return total + num_classes * int(np.prod(level_sizes[0], dtype=np.int64))
