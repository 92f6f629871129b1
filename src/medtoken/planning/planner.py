"""Plans from a fingerprint by nnU-Net v2's default ``ExperimentPlanner`` (nnunetv2 2.8.1).

The rules, constants and key names are nnU-Net's (``default_experiment_planner.py``): target
spacing, ``transpose_forward``, and for each of ``3d_fullres`` (3D data only), ``3d_lowres`` (when
the full-resolution patch covers under 25% of the median image) and ``2d`` the patch size (shrunk
until the VRAM estimate fits the 8 GB reference), the network topology, the batch size and the
normalisation schemes. Every shape and spacing is in nnU-Net's axis order.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtoken.data.resample import ANISOTROPY_THRESHOLD, new_shape_for
from medtoken.planning.fingerprint import DatasetFingerprint
from medtoken.planning.topology import conv_feature_map_size, get_pool_and_conv_props

Vector = Sequence[float] | np.ndarray  # one value per axis

__all__ = ["PlannerInput", "determine_target_spacing", "determine_transpose",
           "normalization_schemes", "plan_configuration", "plan_experiment"]

UNET_BASE_NUM_FEATURES = 32
UNET_REFERENCE_VAL_3D = 560000000
UNET_REFERENCE_VAL_2D = 85000000
UNET_REFERENCE_VAL_CORRESP_GB = 8
UNET_REFERENCE_BS_2D, UNET_REFERENCE_BS_3D = 12, 2
UNET_FEATUREMAP_MIN_EDGE_LENGTH = 4
UNET_BLOCKS_PER_STAGE_ENCODER = (2,) * 14
UNET_BLOCKS_PER_STAGE_DECODER = (2,) * 13
UNET_MIN_BATCH_SIZE = 2
UNET_MAX_FEATURES_2D, UNET_MAX_FEATURES_3D = 512, 320
MAX_DATASET_COVERED = 0.05  # one batch sees at most 5% of the dataset's voxels
LOWRES_CREATION_THRESHOLD = 0.25
LOWRES_SPACING_INCREASE = 1.03
VRAM_TARGET_GB = 8.0
MAX_NUMPOOL = 999999
PLANS_NAME = "nnUNetPlans"
PREPROCESSOR_NAME = "DefaultPreprocessor"
UNET_CLASS = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
# nnU-Net's channel name -> normalisation (case-insensitive); anything else is ZScoreNormalization
NORMALIZATION_BY_CHANNEL_NAME = {"ct": "CTNormalization", "nonorm": "NoNormalization",
                                 "zscore": "ZScoreNormalization",
                                 "rescale_to_0_1": "RescaleTo01Normalization",
                                 "rgb_to_0_1": "RGBTo01Normalization"}
# leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true of each scheme
_MASK_ALLOWED = {"ZScoreNormalization": True}


@dataclass(frozen=True)
class PlannerInput:
    """What the planner reads from ``dataset.json`` besides the fingerprint.

    Attributes:
        dataset_name: nnU-Net's ``dataset_name`` (``Dataset004_Hippocampus``).
        channel_names: one name per channel (``"CT"`` selects CT normalisation).
        num_labels: number of label values, background included (nnU-Net's output channels).
        num_training: ``numTraining``.
    """

    dataset_name: str
    channel_names: tuple[str, ...]
    num_labels: int
    num_training: int


def determine_target_spacing(fingerprint: DatasetFingerprint) -> np.ndarray:
    """Median spacing; for anisotropic data, the 10th percentile on the coarse axis.

    The coarse axis gets its 10th-percentile spacing when its median spacing exceeds 3x the
    others' and its median size is under a third of the others' (but never finer than them).
    """
    spacings = fingerprint.spacings  # (N, 3)
    target = np.percentile(spacings, 50, 0)
    target_size = np.percentile(fingerprint.shapes_after_crop, 50, 0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    other_spacings = [target[i] for i in others]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(other_spacings)
    aniso_voxels = target_size[worst] * ANISOTROPY_THRESHOLD < min(target_size[i] for i in others)
    if aniso_spacing and aniso_voxels:
        axis_target = np.percentile(spacings[:, worst], 10)
        if axis_target < max(other_spacings):
            axis_target = max(max(other_spacings), axis_target) + 1e-5
        target[worst] = axis_target
    return target


def determine_transpose(target_spacing: np.ndarray) -> tuple[list[int], list[int]]:
    """``transpose_forward`` puts the coarsest axis first; ``transpose_backward`` undoes it."""
    coarsest = int(np.argmax(target_spacing))
    forward = [coarsest] + [i for i in range(3) if i != coarsest]
    backward = [forward.index(i) for i in range(3)]
    return forward, backward


def normalization_schemes(channel_names: Sequence[str], median_relative_size_after_cropping: float
                          ) -> tuple[list[str], list[bool]]:
    """nnU-Net's scheme per channel, and whether it normalises inside the nonzero mask only.

    The mask is used when cropping removed more than a quarter of the median image and the
    scheme leaves voxels outside the mask at zero (only ``ZScoreNormalization``).
    """
    schemes = [NORMALIZATION_BY_CHANNEL_NAME.get(n.casefold(), "ZScoreNormalization")
               for n in channel_names]
    use_mask = median_relative_size_after_cropping < 3 / 4.0
    return schemes, [use_mask and _MASK_ALLOWED.get(s, False) for s in schemes]


def _features_per_stage(num_stages: int, max_features: int) -> tuple[int, ...]:
    return tuple(min(max_features, UNET_BASE_NUM_FEATURES * 2**i) for i in range(num_stages))


def _architecture(dim: int, topology: tuple[Any, ...]) -> dict[str, Any]:
    """nnU-Net's ``architecture`` entry for strides ``topology[1]`` and kernels ``topology[2]``."""
    strides, kernels = topology[1], topology[2]
    n = len(strides)
    return {
        "network_class_name": UNET_CLASS,
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": list(_features_per_stage(
                n, UNET_MAX_FEATURES_2D if dim == 2 else UNET_MAX_FEATURES_3D)),
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": [list(k) for k in kernels],
            "strides": [list(s) for s in strides],
            "n_conv_per_stage": list(UNET_BLOCKS_PER_STAGE_ENCODER[:n]),
            "n_conv_per_stage_decoder": list(UNET_BLOCKS_PER_STAGE_DECODER[:n - 1]),
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def _estimate(patch: Sequence[int], arch: dict[str, Any], num_labels: int,
              cache: dict[str, int]) -> int:
    kw = arch["arch_kwargs"]
    key = f"{list(patch)}_{kw['strides']}"
    if key not in cache:
        cache[key] = conv_feature_map_size(patch, kw["strides"], kw["features_per_stage"],
                                           kw["n_conv_per_stage"], kw["n_conv_per_stage_decoder"],
                                           num_labels)
    return cache[key]


def _initial_patch_size(spacing: np.ndarray, median_shape: np.ndarray) -> np.ndarray:
    """A patch with the aspect ratio of 1/spacing and 256^3 (2048^2) voxels, clipped to the
    median shape."""
    tmp = 1 / np.array(spacing)
    edge, dim = (256, 3) if len(spacing) == 3 else (2048, 2)
    initial = [round(i) for i in tmp * (edge**dim / np.prod(tmp)) ** (1 / dim)]
    return np.array([min(i, j) for i, j in zip(initial, median_shape[:dim], strict=True)])


def _shrink_patch(spacing: np.ndarray, median_shape: np.ndarray, topology: tuple[Any, ...],
                  ) -> tuple[Any, ...]:
    """One step of nnU-Net's patch shrinking: reduce the axis largest relative to the median."""
    patch = list(topology[3])
    axis = int(np.argsort([i / j for i, j in zip(patch, median_shape[:len(spacing)],
                                                   strict=True)])[-1])
    tmp = deepcopy(patch)
    tmp[axis] -= topology[4][axis]  # recompute the divisor for the smaller size, then reduce
    divisor = get_pool_and_conv_props(spacing, tmp, UNET_FEATUREMAP_MIN_EDGE_LENGTH,
                                      MAX_NUMPOOL)[4]
    patch[axis] -= divisor[axis]
    return get_pool_and_conv_props(spacing, patch, UNET_FEATUREMAP_MIN_EDGE_LENGTH, MAX_NUMPOOL)


def plan_configuration(spacing: Vector, median_shape: Vector,
                       data_identifier: str, approximate_n_voxels_dataset: float,
                       planner_input: PlannerInput, median_relative_size_after_cropping: float,
                       cache: dict[str, int] | None = None) -> dict[str, Any]:
    """One configuration (``get_plans_for_configuration`` of nnU-Net): patch, network, batch."""
    spacing_arr, median_arr = np.asarray(spacing, dtype=np.float64), np.asarray(median_shape)
    if not all(s > 0 for s in spacing_arr):
        raise ValueError(f"spacing must be > 0, got {list(spacing_arr)}")
    cache = {} if cache is None else cache
    dim = len(spacing_arr)
    num_labels = planner_input.num_labels
    topology = get_pool_and_conv_props(spacing_arr, _initial_patch_size(spacing_arr, median_arr),
                                       UNET_FEATUREMAP_MIN_EDGE_LENGTH, MAX_NUMPOOL)
    arch = _architecture(dim, topology)
    estimate = _estimate(topology[3], arch, num_labels, cache)
    reference = ((UNET_REFERENCE_VAL_2D if dim == 2 else UNET_REFERENCE_VAL_3D)
                 * (VRAM_TARGET_GB / UNET_REFERENCE_VAL_CORRESP_GB))
    ref_bs = UNET_REFERENCE_BS_2D if dim == 2 else UNET_REFERENCE_BS_3D
    while estimate / ref_bs * 2 > reference:
        topology = _shrink_patch(spacing_arr, median_arr, topology)
        arch = _architecture(dim, topology)
        estimate = _estimate(topology[3], arch, num_labels, cache)
    patch = topology[3]
    batch_size = round((reference / estimate) * ref_bs)
    bs_5_percent = round(approximate_n_voxels_dataset * MAX_DATASET_COVERED
                         / np.prod(patch, dtype=np.float64))
    batch_size = max(min(batch_size, bs_5_percent), UNET_MIN_BATCH_SIZE)
    schemes, use_mask = normalization_schemes(planner_input.channel_names,
                                              median_relative_size_after_cropping)
    return _configuration_dict(data_identifier, int(batch_size), patch, median_arr, spacing_arr,
                               schemes, use_mask, arch)


def _resampling_kwargs(is_seg: bool, order: int) -> dict[str, Any]:
    return {"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": None}


def _configuration_dict(data_identifier: str, batch_size: int, patch: Sequence[int],
                        median_shape: np.ndarray, spacing: np.ndarray, schemes: list[str],
                        use_mask: list[bool], arch: dict[str, Any]) -> dict[str, Any]:
    """The configuration in nnU-Net's key order and JSON types."""
    fn = "resample_data_or_seg_to_shape"
    return {
        "data_identifier": data_identifier,
        "preprocessor_name": PREPROCESSOR_NAME,
        "batch_size": batch_size,
        "patch_size": [int(p) for p in patch],
        "median_image_size_in_voxels": [float(m) for m in median_shape],
        "spacing": [float(s) for s in spacing],
        "normalization_schemes": schemes,
        "use_mask_for_norm": use_mask,
        "resampling_fn_data": fn,
        "resampling_fn_seg": fn,
        "resampling_fn_data_kwargs": _resampling_kwargs(False, 3),
        "resampling_fn_seg_kwargs": _resampling_kwargs(True, 1),
        "resampling_fn_probabilities": fn,
        "resampling_fn_probabilities_kwargs": _resampling_kwargs(False, 1),
        "architecture": arch,
    }


def _plan_lowres(fullres: dict[str, Any], median_shape: np.ndarray, planner_input: PlannerInput,
                 rel_size: float, cache: dict[str, int]) -> dict[str, Any] | None:
    """nnU-Net's ``3d_lowres`` search: coarsen the spacing until the patch covers 25%."""
    median_voxels = np.prod(median_shape, dtype=np.float64)
    patch_voxels = np.prod(fullres["patch_size"], dtype=np.float64)
    full_spacing = np.array(fullres["spacing"])
    spacing = deepcopy(full_spacing)
    lowres = None
    while patch_voxels / median_voxels < LOWRES_CREATION_THRESHOLD:
        max_spacing = max(spacing)
        if np.any((max_spacing / spacing) > 2):
            spacing[(max_spacing / spacing) > 2] *= LOWRES_SPACING_INCREASE
        else:
            spacing *= LOWRES_SPACING_INCREASE
        median_voxels = np.prod(full_spacing / spacing * median_shape, dtype=np.float64)
        lowres = plan_configuration(
            spacing, tuple(round(i) for i in full_spacing / spacing * median_shape),
            f"{PLANS_NAME}_3d_lowres", float(median_voxels * planner_input.num_training),
            planner_input, rel_size, cache)
        patch_voxels = np.prod(lowres["patch_size"], dtype=np.float64)
    if np.prod(median_shape, dtype=np.float64) / median_voxels < 2:
        return None  # too close to 3d_fullres to be worth a configuration
    return lowres


def plan_experiment(fingerprint: DatasetFingerprint, planner_input: PlannerInput
                    ) -> dict[str, Any]:
    """The whole ``nnUNetPlans.json`` content (nnU-Net's ``plan_experiment``)."""
    if len(fingerprint.foreground_intensity_properties_per_channel) != len(
            planner_input.channel_names):
        raise ValueError("the fingerprint and channel_names disagree on the number of channels")
    cache: dict[str, int] = {}
    rel_size = fingerprint.median_relative_size_after_cropping
    fullres_spacing = determine_target_spacing(fingerprint)
    forward, backward = determine_transpose(fullres_spacing)
    spacing_t = fullres_spacing[forward]
    new_shapes = [new_shape_for(c.shape_after_crop, c.spacing, fullres_spacing)
                  for c in fingerprint.cases]
    median_t = np.median(new_shapes, 0)[forward]
    n_voxels = float(np.prod(median_t, dtype=np.float64) * planner_input.num_training)
    configurations: dict[str, Any] = {}
    fullres = lowres = None
    if median_t[0] != 1:
        fullres = plan_configuration(spacing_t, median_t, f"{PLANS_NAME}_3d_fullres", n_voxels,
                                     planner_input, rel_size, cache)
        lowres = _plan_lowres(fullres, median_t, planner_input, rel_size, cache)
        fullres["batch_dice"] = lowres is not None
        if lowres is not None:
            lowres["batch_dice"] = False
    configurations["2d"] = plan_configuration(spacing_t[1:], median_t[1:], f"{PLANS_NAME}_2d",
                                              n_voxels, planner_input, rel_size, cache)
    configurations["2d"]["batch_dice"] = True
    if lowres is not None:
        configurations["3d_lowres"] = {**lowres, "next_stage": "3d_cascade_fullres"}
    if fullres is not None:
        configurations["3d_fullres"] = fullres
        if lowres is not None:
            configurations["3d_cascade_fullres"] = {"inherits_from": "3d_fullres",
                                                    "previous_stage": "3d_lowres"}
    return _plans_dict(fingerprint, planner_input, forward, backward, configurations)


def _plans_dict(fingerprint: DatasetFingerprint, planner_input: PlannerInput,
                forward: list[int], backward: list[int],
                configurations: dict[str, Any]) -> dict[str, Any]:
    median_spacing = np.median(fingerprint.spacings, 0)[forward]
    median_shape = np.median(fingerprint.shapes_after_crop, 0)[forward]
    return {
        "dataset_name": planner_input.dataset_name,
        "plans_name": PLANS_NAME,
        "original_median_spacing_after_transp": [float(i) for i in median_spacing],
        "original_median_shape_after_transp": [round(float(i)) for i in median_shape],
        "image_reader_writer": fingerprint.image_reader_writer,
        "transpose_forward": forward,
        "transpose_backward": backward,
        "configurations": configurations,
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(i): dict(sorted(p.items()))  # nnU-Net's fingerprint file sorts these keys
            for i, p in enumerate(fingerprint.foreground_intensity_properties_per_channel)},
    }
