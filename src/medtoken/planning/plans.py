"""``nnUNetPlans.json``: make it for a dataset, write it, and read one configuration of it.

The file is nnU-Net's own layout and key names; medtoken adds one top-level key, ``"medtoken"``,
with the dataset's ``labels`` and ``channel_names`` (nnU-Net keeps those in the ``dataset.json``
beside the plans and ignores keys it does not know). :func:`load_plan` reads one configuration of
a plans file (one written by ``medtoken plan`` or one from an nnU-Net preprocessed folder) into a
:class:`NnunetPlan` whose ``roi_size``, ``spacing``, ``kernel_sizes`` and ``strides`` are in
medtoken's array axis order.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtoken.data.datasets import DatasetInfo, parse_labels
from medtoken.planning.axes import medtoken_axis, reader_writer_for
from medtoken.planning.fingerprint import (
    NUM_FOREGROUND_VOXELS,
    DatasetFingerprint,
    extract_fingerprint,
)
from medtoken.planning.planner import PlannerInput, plan_experiment
from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json_object

__all__ = ["MEDTOKEN_KEY", "NnunetPlan", "check_plans_match", "load_plan", "plan_dataset",
           "plan_differences", "read_plans", "write_plans"]

MEDTOKEN_KEY = "medtoken"
_NNUNET_FOLDER = re.compile(r"Dataset\d{3}_.+")
_TOP_KEYS = ("configurations", "transpose_forward", "image_reader_writer",
             "foreground_intensity_properties_per_channel")
_CONFIG_KEYS = ("patch_size", "spacing", "batch_size", "normalization_schemes",
                "use_mask_for_norm", "architecture")
_ARCH_KEYS = ("n_stages", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage",
              "n_conv_per_stage_decoder")

PathLike = str | os.PathLike[str]


def _dataset_name(info: DatasetInfo) -> str:
    if info.layout == "nnunet" and _NNUNET_FOLDER.fullmatch(info.root.name):
        return info.root.name
    return info.name or info.root.name


def plan_dataset(info: DatasetInfo, *, num_foreground_voxels: float = NUM_FOREGROUND_VOXELS
                 ) -> tuple[dict[str, Any], DatasetFingerprint]:
    """Fingerprint ``info`` and plan it by nnU-Net's default rules.

    Args:
        info: the dataset.
        num_foreground_voxels: total foreground intensities sampled (nnU-Net: 10e7).

    Returns:
        The plans (``nnUNetPlans.json`` content) and the fingerprint.

    Raises:
        InputError: naming the case, for a missing or zero spacing, channels or label of
            different shapes, or an unreadable file.
    """
    fingerprint = extract_fingerprint(info, num_foreground_voxels=num_foreground_voxels)
    planner_input = PlannerInput(_dataset_name(info), info.channel_names, len(info.labels),
                                 len(fingerprint.cases))
    plans = plan_experiment(fingerprint, planner_input)
    plans[MEDTOKEN_KEY] = {
        "labels": {name: value for value, name in sorted(info.labels.items())},
        "channel_names": {str(i): n for i, n in enumerate(info.channel_names)},
        "file_ending": info.file_ending,
    }
    return plans, fingerprint


def write_plans(plans: Mapping[str, Any], path: PathLike) -> None:
    """Write ``plans`` as nnU-Net does (4-space indent, keys in order), atomically."""
    atomic_write_text(path, json.dumps(plans, indent=4) + "\n")


def read_plans(path: PathLike) -> dict[str, Any]:
    """The content of a plans file, checked to have nnU-Net's top-level keys."""
    plans = read_json_object(Path(path), "a plans file")
    missing = [k for k in _TOP_KEYS if k not in plans]
    if missing:
        raise InputError(path, f"not an nnU-Net plans file: missing {', '.join(missing)}")
    if not isinstance(plans["configurations"], dict) or not plans["configurations"]:
        raise InputError(path, "'configurations' must be a non-empty mapping")
    return plans


@dataclass(frozen=True)
class NnunetPlan:
    """One configuration of an nnU-Net plans file, as medtoken uses it.

    Attributes:
        source: the plans file (or ``"<plans>"`` for a plans dict).
        configuration: ``"3d_fullres"``, ``"2d"``, ``"3d_lowres"``, ...
        roi_size: the patch size, in medtoken's array axis order (nnU-Net's ``patch_size``).
        spacing: target spacing per axis of ``roi_size`` (mm).
        batch_size: nnU-Net's batch size.
        axes: the medtoken array axis of each plan axis (plan axes are nnU-Net's order).
        slice_axis: for a 2D configuration of 3D data, the medtoken axis the slices are taken
            along; ``None`` otherwise.
        network_class_name: ``dynamic_network_architectures...PlainConvUNet``.
        arch_kwargs: the plan's ``arch_kwargs`` as written (nnU-Net axis order).
        kw_requires_import: the plan's ``_kw_requires_import``.
        normalization_schemes: per channel, ``ZScoreNormalization``, ``CTNormalization``, ...
        use_mask_for_norm: per channel.
        foreground_intensity_properties: per channel, nnU-Net's intensity statistics.
        labels: label value -> name, when the plans file (or a dataset.json beside it) says.
        image_reader_writer: nnU-Net's reader the plan was made with.
        transpose_forward: nnU-Net's axis permutation (of ``(z, y, x)``).
        batch_dice: nnU-Net's ``batch_dice``.
        patch_size: nnU-Net's ``patch_size`` as written (nnU-Net axis order).
        plan_spacing: nnU-Net's ``spacing`` as written (nnU-Net axis order).
    """

    source: str
    configuration: str
    roi_size: tuple[int, ...]
    spacing: tuple[float, ...]
    batch_size: int
    axes: tuple[int, ...]
    slice_axis: int | None
    network_class_name: str
    arch_kwargs: dict[str, Any] = field(repr=False)
    kw_requires_import: tuple[str, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    foreground_intensity_properties: tuple[dict[str, float], ...] = field(repr=False)
    labels: dict[int, str] | None
    image_reader_writer: str
    transpose_forward: tuple[int, ...]
    batch_dice: bool
    patch_size: tuple[int, ...]
    plan_spacing: tuple[float, ...]
    data_spatial_dims: int = 3

    @property
    def spatial_dims(self) -> int:
        """Dimensionality of the network (2 or 3)."""
        return len(self.roi_size)

    @property
    def num_channels(self) -> int:
        """Number of image channels the plan is for."""
        return len(self.normalization_schemes)

    def _to_medtoken(self, per_plan_axis: Any) -> tuple[Any, ...]:
        return tuple(per_plan_axis[self.axes.index(a)] for a in sorted(self.axes))

    @property
    def kernel_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Conv kernel size per stage, in medtoken axis order (as ``roi_size``)."""
        return tuple(tuple(int(v) for v in self._to_medtoken(k))
                     for k in self.arch_kwargs["kernel_sizes"])

    @property
    def strides(self) -> tuple[tuple[int, ...], ...]:
        """Stride per stage, in medtoken axis order (the first stage's is all 1)."""
        return tuple(tuple(int(v) for v in self._to_medtoken(s))
                     for s in self.arch_kwargs["strides"])

    @property
    def features_per_stage(self) -> tuple[int, ...]:
        """Feature channels per stage."""
        return tuple(int(f) for f in self.arch_kwargs["features_per_stage"])


def _resolve(configs: Mapping[str, Any], name: str, where: str, seen: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    """A configuration with ``inherits_from`` resolved as nnU-Net does (parent, then updated)."""
    if name not in configs:
        raise InputError(where, f"no configuration {name!r}; the plans have "
                                f"{', '.join(sorted(configs))}")
    config = configs[name]
    if not isinstance(config, dict):
        raise InputError(where, f"configuration {name!r} must be a mapping")
    parent = config.get("inherits_from")
    if parent is None:
        return dict(config)
    if parent in seen:
        raise InputError(where, f"configuration {name!r} inherits from itself")
    resolved = _resolve(configs, str(parent), where, (*seen, name))
    resolved.update(config)
    return resolved


def _check_config(config: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    """The configuration's ``arch_kwargs`` after checking every field the plan reader needs."""
    missing = [k for k in _CONFIG_KEYS if k not in config]
    arch = config.get("architecture")
    kwargs = arch.get("arch_kwargs") if isinstance(arch, dict) else None
    if not isinstance(kwargs, dict):
        missing.append("architecture.arch_kwargs")
    else:
        missing += [f"arch_kwargs.{k}" for k in _ARCH_KEYS if k not in kwargs]
    if missing:
        raise InputError(where, f"configuration {name!r} lacks {', '.join(missing)}")
    assert isinstance(kwargs, dict)
    dims = len(config["patch_size"])
    n = kwargs["n_stages"]
    ok = (dims in (2, 3) and len(config["spacing"]) == dims
          and all(isinstance(p, int) and p > 0 for p in config["patch_size"])
          and all(isinstance(s, (int, float)) and s > 0 for s in config["spacing"])
          and isinstance(config["batch_size"], int) and config["batch_size"] > 0
          and all(len(kwargs[k]) == n for k in ("features_per_stage", "kernel_sizes", "strides"))
          and all(len(v) == dims for k in ("kernel_sizes", "strides") for v in kwargs[k]))
    if not ok:
        raise InputError(where, f"configuration {name!r}: patch_size, spacing, kernel_sizes and "
                                "strides must agree in length and be positive, batch_size > 0")
    return kwargs


def _plan_labels(plans: Mapping[str, Any], where: str) -> dict[int, str] | None:
    """Labels from the ``medtoken`` key, else from a ``dataset.json`` beside the plans file
    (nnU-Net's name -> value or MSD's value -> name, read as a dataset's own labels)."""
    raw = plans.get(MEDTOKEN_KEY, {}).get("labels")
    source: str | Path = where
    if raw is None and where != "<plans>":
        sibling = Path(where).parent / "dataset.json"
        if sibling.is_file():
            raw, source = read_json_object(sibling, "dataset.json").get("labels"), sibling
    return None if raw is None else parse_labels(raw, source)


def _plan_axes(plans: Mapping[str, Any], dims: int,
               where: str) -> tuple[tuple[int, ...], int | None, int]:
    """Medtoken axis per plan axis, the slice axis (2D plans of 3D data), the data's dims."""
    forward = [int(t) for t in plans["transpose_forward"]]
    if sorted(forward) != [0, 1, 2]:
        raise InputError(where, f"transpose_forward must permute 0, 1, 2, got {forward}")
    reader = str(plans["image_reader_writer"])
    shape = plans.get("original_median_shape_after_transp", [0, 0, 0])
    data_dims = 2 if reader == "NaturalImage2DIO" or shape[0] == 1 else 3
    plan_axes = forward if dims == 3 else forward[1:]
    axes = tuple(medtoken_axis(a, reader) for a in plan_axes)
    slice_axis = medtoken_axis(forward[0], reader) if dims == 2 and data_dims == 3 else None
    return axes, slice_axis, data_dims


def load_plan(plans: PathLike | Mapping[str, Any], configuration: str = "3d_fullres",
              source: PathLike | None = None) -> NnunetPlan:
    """Read one configuration of a plans file (or dict) as a :class:`NnunetPlan`.

    Args:
        source: for a dict already read from a file, that file (named in errors; a
            ``dataset.json`` beside it gives the labels, as when the file itself is passed).

    Raises:
        InputError: naming the plans file, when it is not a valid plans file or lacks
            ``configuration``.
    """
    if isinstance(plans, Mapping):
        where, content = ("<plans>" if source is None else str(source)), dict(plans)
    else:
        where, content = str(plans), read_plans(plans)
    config = _resolve(content["configurations"], configuration, where)
    kwargs = _check_config(config, configuration, where)
    patch = tuple(int(p) for p in config["patch_size"])
    plan_spacing = tuple(float(s) for s in config["spacing"])
    axes, slice_axis, data_dims = _plan_axes(content, len(patch), where)
    order = [axes.index(a) for a in sorted(axes)]
    props = content["foreground_intensity_properties_per_channel"]
    arch = config["architecture"]
    return NnunetPlan(
        source=where, configuration=configuration,
        roi_size=tuple(patch[k] for k in order), spacing=tuple(plan_spacing[k] for k in order),
        batch_size=int(config["batch_size"]), axes=axes, slice_axis=slice_axis,
        network_class_name=str(arch.get("network_class_name", "")), arch_kwargs=dict(kwargs),
        kw_requires_import=tuple(arch.get("_kw_requires_import", ())),
        normalization_schemes=tuple(config["normalization_schemes"]),
        use_mask_for_norm=tuple(bool(u) for u in config["use_mask_for_norm"]),
        foreground_intensity_properties=tuple(dict(props[k]) for k in sorted(props, key=int)),
        labels=_plan_labels(content, where),
        image_reader_writer=str(content["image_reader_writer"]),
        transpose_forward=tuple(int(t) for t in content["transpose_forward"]),
        batch_dice=bool(config.get("batch_dice", False)), patch_size=patch,
        plan_spacing=plan_spacing, data_spatial_dims=data_dims)


def check_plans_match(plan: NnunetPlan, info: DatasetInfo) -> None:
    """Refuse a plan made for another dataset: channels, labels, dimensionality, image reader.

    Raises:
        InputError: naming the plans file and what differs.
    """
    where = plan.source
    if plan.num_channels != info.num_channels:
        raise InputError(where, f"the plans are for {plan.num_channels} channel(s), the dataset "
                                f"{info.root} has {info.num_channels} {info.channel_names}")
    if plan.data_spatial_dims != info.spatial_dims or plan.spatial_dims > info.spatial_dims:
        raise InputError(where, f"the plans ({plan.configuration}) are for "
                                f"{plan.data_spatial_dims}D data, the dataset {info.root} is "
                                f"{info.spatial_dims}D")
    reader = reader_writer_for(info.file_ending)
    if (reader == "NaturalImage2DIO") != (plan.image_reader_writer == "NaturalImage2DIO"):
        raise InputError(where, f"the plans were made with nnU-Net's {plan.image_reader_writer}, "
                                f"the dataset's {info.file_ending} files need {reader}")
    if plan.labels is not None and sorted(plan.labels) != sorted(info.labels):
        raise InputError(where, f"the plans are for labels {sorted(plan.labels)}, the dataset "
                                f"{info.root} has {sorted(info.labels)}")


def plan_differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Every leaf where two plans (JSON trees) differ, as ``"/key[i]: medtoken A != nnU-Net B"``
    or ``"/key: only one side"``; ints and floats compare by value. Empty: the same plans."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = [f"{path}/{k}: only one side" for k in sorted(set(ours) ^ set(theirs))]
        for k in sorted(set(ours) & set(theirs)):
            out += plan_differences(ours[k], theirs[k], f"{path}/{k}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
                for d in plan_differences(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [f"{path}: medtoken {ours!r} != nnU-Net {theirs!r}"]
