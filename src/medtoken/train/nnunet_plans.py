"""nnU-Net plans for training: which plan a run uses, and what it gives the model.

A run of an nnunet model trains from one configuration (``3d_fullres`` or ``2d``) of an
``nnUNetPlans.json``: the user's (``--plans``), or the one
:func:`medtoken.planning.plans.plan_dataset` makes for the dataset by nnU-Net's default rules.
The plan is read by :func:`medtoken.planning.plans.load_plan`, whose
:class:`~medtoken.planning.plans.NnunetPlan` is already in medtoken's array axis order
(``roi_size``, ``spacing``, ``kernel_sizes``, ``strides``): nothing here reverses axes. It gives
the patch (``roi_size``), the target spacing, the batch size (unless ``--batch-size``),
``batch_dice`` and the network's ``arch_kwargs``, which the model config maps onto its fields
(:meth:`~medtoken.models.base.ModelConfig.fields_from_plan` of a config with ``uses_plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medtoken.data.datasets import DatasetInfo
from medtoken.data.resample import parse_spacing
from medtoken.planning.plans import (
    NnunetPlan,
    check_plans_match,
    load_plan,
    plan_dataset,
    read_plans,
)
from medtoken.registry import get_config
from medtoken.train.config import TrainConfig
from medtoken.utils.errors import InputError

__all__ = [
    "CONFIGURATIONS",
    "RunPlan",
    "configuration_for",
    "plan_preset",
    "resolve_plan",
    "resolve_spacing",
]

CONFIGURATIONS = ("3d_fullres", "2d")  # the plan configurations a run can train from


def configuration_for(spatial_dims: int, requested: str | None) -> str:
    """The configuration to use: ``requested``, or 3d_fullres for 3D data and 2d for 2D."""
    name = requested or ("3d_fullres" if spatial_dims == 3 else "2d")
    if name not in CONFIGURATIONS:
        raise InputError("--configuration", f"'{name}' is not supported; choose "
                         + " or ".join(CONFIGURATIONS))
    if (name == "3d_fullres") != (spatial_dims == 3):
        raise InputError("--configuration", f"'{name}' does not fit this {spatial_dims}D dataset")
    return name


def plan_preset(model: str, spatial_dims: int) -> str:
    """A plan-built family's name (``nnunet``) -> its preset for the dataset's configuration
    (``nnunet3d`` or ``nnunet2d``, from the config's ``plan_presets``); other names unchanged."""
    config_type = type(get_config(model))
    if model != config_type.family or not config_type.plan_presets:
        return model
    return config_type.plan_presets[configuration_for(spatial_dims, None)]


def resolve_spacing(option: str, plan: NnunetPlan | None,
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
    """What a run takes from nnU-Net's plans.

    Attributes:
        plan: the configuration the nnunet model is built from; ``None`` for other models.
        spacing: the target spacing the cases are resampled to; ``None``: not resampled.
        plans: the whole plans file content used (``--plans``, or planned from the dataset), as
            written to the run folder's ``plans.json``; ``None`` when no plan was needed.
        source: the ``--plans`` file, ``None`` when planned from the dataset.
    """

    plan: NnunetPlan | None
    spacing: tuple[float, ...] | None
    plans: dict[str, Any] | None = None
    source: str | None = None

    def facts(self) -> dict[str, Any]:
        """Checkpoint ``dataset`` entries: prediction resamples to ``target_spacing`` too."""
        return {"target_spacing": None if self.spacing is None else list(self.spacing),
                "plans": None if self.plan is None else
                {"configuration": self.plan.configuration,
                 "source": self.source or "planned from the dataset"}}


def _load(cfg: TrainConfig, info: DatasetInfo) -> tuple[NnunetPlan, dict[str, Any]]:
    """The configuration to train from and the whole plans: the ``--plans`` file's, else
    nnU-Net's plans for the dataset (all its cases, as ``nnUNetv2_plan_and_preprocess`` plans
    them); checked against the dataset."""
    name = configuration_for(info.spatial_dims, cfg.configuration)
    if cfg.plans:  # the file named as the source: a dataset.json beside it gives the labels
        plans = read_plans(Path(cfg.plans))
        plan = load_plan(plans, name, source=cfg.plans)
    else:
        plans, _ = plan_dataset(info)
        plan = load_plan(plans, name)
    check_plans_match(plan, info)
    return plan, plans


def resolve_plan(cfg: TrainConfig, info: DatasetInfo) -> tuple[TrainConfig, RunPlan]:
    """What a run trains from: the preset (``nnunet`` picked by the data), the plan of an nnunet
    model (``--plans`` or planned from the dataset), the target spacing and the batch size.

    Returns:
        ``cfg`` with ``model`` and ``batch_size`` resolved (the plan's unless ``--batch-size``),
        and the run's plan.

    Raises:
        InputError: ``--plans``/``--configuration`` for another model, a configuration for the
            other dimensionality, or a plans file for other data (channels, labels, 2D/3D).
    """
    model = plan_preset(cfg.model, info.spatial_dims)
    config_type = type(get_config(model))
    if not config_type.uses_plan and (cfg.plans or cfg.configuration):
        raise InputError("--plans", f"plans configure the nnunet models, not '{model}'")
    plan, plans = None, None
    if config_type.uses_plan or cfg.spacing == "plan":
        plan, plans = _load(cfg, info)
        if config_type.uses_plan:
            config_type.fields_from_plan(plan)  # refuse an unsupported network before data
    target = resolve_spacing(cfg.spacing, plan, info.spatial_dims)
    batch = cfg.batch_size or (plan.batch_size if config_type.uses_plan and plan else None)
    resolved = replace(cfg, model=model, batch_size=batch or cfg.micro_batch_size)
    return resolved, RunPlan(plan if config_type.uses_plan else None, target, plans, cfg.plans)
