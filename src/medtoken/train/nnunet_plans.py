"""nnU-Net plans for training: one configuration of an ``nnUNetPlans.json`` as medtoken uses it.

A plan configuration (``configurations["3d_fullres"]`` or ``["2d"]``) gives the patch
(``patch_size`` -> ``roi_size``), the target ``spacing``, the ``batch_size``, ``batch_dice`` and
the network's ``architecture.arch_kwargs``, which map one to one onto
:class:`~medtoken.models.nnunet.NNUNetConfig` fields.

Axis order: nnU-Net stores 3D plans in SimpleITK's array order (z, y, x), the reverse of the
array order medtoken reads NIfTI and ITK files in (nibabel's i, j, k); 3D entries are reversed on
reading. 2D plans (natural images, ``(H, W)`` in both) are kept as they are.

:func:`plans_for` is the one place a plan is made from a dataset; :func:`read_plans` reads a
user's ``nnUNetPlans.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medtoken.config import to_dict
from medtoken.data.datasets import DatasetInfo
from medtoken.data.io import read_image
from medtoken.data.resample import parse_spacing
from medtoken.registry import get_config
from medtoken.train.config import TrainConfig
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json_object

__all__ = [
    "CONFIGURATIONS",
    "PlanConfiguration",
    "RunPlan",
    "configuration_for",
    "nnunet_preset",
    "plans_for",
    "read_plans",
    "resolve_plan",
    "resolve_spacing",
]

CONFIGURATIONS = {"3d_fullres": "nnunet3d", "2d": "nnunet2d"}  # plan configuration -> preset
_ARCH_FIELDS = ("n_stages", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage",
                "n_conv_per_stage_decoder", "conv_bias")
_PER_AXIS = ("kernel_sizes", "strides")


@dataclass(frozen=True)
class PlanConfiguration:
    """One plan configuration, in medtoken's array axis order.

    Attributes:
        name: ``"3d_fullres"`` or ``"2d"``.
        roi_size: the training patch (nnU-Net's ``patch_size``).
        spacing: the target spacing (mm per array axis).
        batch_size: patches per batch, ``None`` when the plan does not say.
        model_fields: :class:`~medtoken.models.nnunet.NNUNetConfig` fields (arch kwargs and
            ``batch_dice``).
        source: the plans file, or ``None`` for a plan made here.
    """

    name: str
    roi_size: tuple[int, ...]
    spacing: tuple[float, ...]
    batch_size: int | None
    model_fields: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


def configuration_for(spatial_dims: int, requested: str | None) -> str:
    """The configuration to use: ``requested``, or 3d_fullres for 3D data and 2d for 2D."""
    name = requested or ("3d_fullres" if spatial_dims == 3 else "2d")
    if name not in CONFIGURATIONS:
        raise InputError("--configuration", f"'{name}' is not supported; choose "
                         + " or ".join(CONFIGURATIONS))
    if (name == "3d_fullres") != (spatial_dims == 3):
        raise InputError("--configuration", f"'{name}' does not fit this {spatial_dims}D dataset")
    return name


def nnunet_preset(model: str, spatial_dims: int) -> str:
    """``nnunet`` -> ``nnunet3d`` or ``nnunet2d`` for the dataset; other names unchanged."""
    if model != "nnunet":
        return model
    return CONFIGURATIONS[configuration_for(spatial_dims, None)]


def _array_axes(values: Sequence[Any], spatial_dims: int) -> list[Any]:
    return list(values)[::-1] if spatial_dims == 3 else list(values)


def _merged_configuration(plans: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """``configurations[name]`` with nnU-Net's ``inherits_from`` resolved."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or name not in configurations:
        known = ", ".join(configurations) if isinstance(configurations, dict) else "none"
        raise InputError(path, f"has no configuration '{name}' (it has: {known})")
    entry = dict(configurations[name])
    parent = entry.pop("inherits_from", None)
    return {**_merged_configuration(plans, parent, path), **entry} if parent else entry


def _model_fields(conf: dict[str, Any], spatial_dims: int, path: Path) -> dict[str, Any]:
    arch = conf.get("architecture", {})
    network = str(arch.get("network_class_name", ""))
    if not network.endswith("PlainConvUNet"):
        raise InputError(path, f"network '{network}' is not supported; medtoken's nnunet "
                         "family builds PlainConvUNet (nnU-Net's default plans)")
    kwargs = arch.get("arch_kwargs", {})
    missing = [k for k in _ARCH_FIELDS if k not in kwargs]
    if missing:
        raise InputError(path, f"arch_kwargs lack {', '.join(missing)}")
    fields = {k: kwargs[k] for k in _ARCH_FIELDS}
    for key in _PER_AXIS:
        fields[key] = [_array_axes(v, spatial_dims) for v in kwargs[key]]
    fields["norm_eps"] = float((kwargs.get("norm_op_kwargs") or {}).get("eps", 1e-5))
    fields["negative_slope"] = float((kwargs.get("nonlin_kwargs") or {})
                                     .get("negative_slope", 0.01))
    fields["batch_dice"] = bool(conf.get("batch_dice", True))
    return fields


def _check_labels_beside(file: Path, info: DatasetInfo) -> None:
    """nnU-Net keeps a copy of ``dataset.json`` beside its plans; its label values must be the
    dataset's (the plans file itself names no labels)."""
    beside = file.parent / "dataset.json"
    if not beside.is_file():
        return
    raw = read_json_object(beside, what="dataset.json").get("labels")
    if not isinstance(raw, dict):
        return
    values = set()
    for key, value in raw.items():  # nnU-Net v2: name -> value; MSD: value -> name
        number = value if isinstance(value, int) else key
        values.add(int(number) if str(number).lstrip("-").isdigit() else -1)
    if values != set(info.labels):
        raise InputError(file, f"plans are for labels {sorted(values)} ({beside.name} beside "
                         f"them); the dataset has {sorted(info.labels)}")


def read_plans(path: str | os.PathLike[str], configuration: str | None,
               info: DatasetInfo) -> PlanConfiguration:
    """One configuration of an ``nnUNetPlans.json``, checked against the dataset.

    Raises:
        InputError: unreadable file, missing configuration, unsupported network, or a plan for
            other data (dimensionality, number of channels, labels of a ``dataset.json``
            beside the plans).
    """
    file = Path(path)
    plans = read_json_object(file, what="nnU-Net plans file")
    _check_labels_beside(file, info)
    name = configuration_for(info.spatial_dims, configuration)
    conf = _merged_configuration(plans, name, file)
    patch, spacing = conf.get("patch_size"), conf.get("spacing")
    if not isinstance(patch, list) or not isinstance(spacing, list):
        raise InputError(file, f"configuration '{name}' lacks patch_size or spacing")
    if len(patch) != info.spatial_dims or len(spacing) != info.spatial_dims:
        raise InputError(file, f"configuration '{name}' is {len(patch)}D; the dataset is "
                         f"{info.spatial_dims}D")
    channels = plans.get("foreground_intensity_properties_per_channel")
    if isinstance(channels, dict) and len(channels) != info.num_channels:
        raise InputError(file, f"plans are for {len(channels)} channel(s); the dataset has "
                         f"{info.num_channels}")
    batch = conf.get("batch_size")
    return PlanConfiguration(
        name=name, roi_size=tuple(int(v) for v in _array_axes(patch, info.spatial_dims)),
        spacing=tuple(float(v) for v in _array_axes(spacing, info.spatial_dims)),
        batch_size=int(batch) if batch is not None else None,
        model_fields=_model_fields(conf, info.spatial_dims, file), source=str(file))


def plans_for(info: DatasetInfo, configuration: str | None = None) -> PlanConfiguration:
    """The plan configuration for ``info`` when no plans file is given.

    This is the seam to ``medtoken plan`` (nnU-Net's planner rules). Until it is in, the plan is
    the preset's (``nnunet3d``/``nnunet2d``: nnU-Net's plan for Hippocampus / 256x256 BUSI) with
    the dataset's median spacing as target spacing (nnU-Net's rule for data that is not
    anisotropic) and no batch size (the training default).
    """
    name = configuration_for(info.spatial_dims, configuration)
    cfg = to_dict(get_config(CONFIGURATIONS[name]))
    spacings = [read_image(info.case(c).images)[1].spacing for c in info.case_ids]
    median = np.median(np.array(spacings, dtype=np.float64), axis=0)
    fields = {k: cfg[k] for k in (*_ARCH_FIELDS, "norm_eps", "negative_slope", "batch_dice")}
    return PlanConfiguration(name=name, roi_size=tuple(cfg["roi_size"]),
                             spacing=tuple(round(float(s), 6) for s in median), batch_size=None,
                             model_fields=fields)


def resolve_spacing(option: str, plan: PlanConfiguration | None,
                    spatial_dims: int) -> tuple[float, ...] | None:
    """The target spacing of ``--spacing`` (``auto``, ``plan``, ``native`` or ``X,Y,Z``).

    ``auto`` is the plan's spacing when there is a plan (the nnunet models), else native.

    Returns:
        the spacing per array axis, or ``None`` for native (no resampling).
    """
    choice = parse_spacing(option, spatial_dims)
    if isinstance(choice, tuple):
        return choice
    if choice == "native" or (choice == "auto" and plan is None):
        return None
    if plan is None:
        raise InputError("--spacing", "'plan' needs a plan (an nnunet model or --plans)")
    return plan.spacing


@dataclass(frozen=True)
class RunPlan:
    """The plan of a run (``None`` but for the nnunet models) and its target spacing."""

    plan: PlanConfiguration | None
    spacing: tuple[float, ...] | None

    def facts(self) -> dict[str, Any]:
        """Checkpoint ``dataset`` entries: prediction resamples to ``target_spacing`` too."""
        return {"target_spacing": None if self.spacing is None else list(self.spacing),
                "plans": None if self.plan is None else
                {"configuration": self.plan.name, "source": self.plan.source}}


def resolve_plan(cfg: TrainConfig, info: DatasetInfo) -> tuple[TrainConfig, RunPlan]:
    """What a run trains from: the preset (``nnunet`` picked by the data), the plan of an nnunet
    model (``--plans`` or :func:`plans_for`), the target spacing and the batch size.

    Returns:
        ``cfg`` with ``model`` and ``batch_size`` resolved, and the run's plan.
    """
    model = nnunet_preset(cfg.model, info.spatial_dims)
    is_nnunet = type(get_config(model)).family == "nnunet"
    if not is_nnunet and (cfg.plans or cfg.configuration):
        raise InputError("--plans", f"plans configure the nnunet models, not '{model}'")
    plan = None
    if cfg.plans:
        plan = read_plans(cfg.plans, cfg.configuration, info)
    elif is_nnunet or cfg.spacing == "plan":
        plan = plans_for(info, cfg.configuration)
    target = resolve_spacing(cfg.spacing, plan, info.spatial_dims)
    batch = cfg.batch_size or (plan.batch_size if is_nnunet and plan else None)
    resolved = replace(cfg, model=model, batch_size=batch or cfg.micro_batch_size)
    return resolved, RunPlan(plan if is_nnunet else None, target)
