"""The model config of a training run: preset -> dataset facts -> the user's overrides, once.

nnU-Net-style: the dataset decides what it knows (image channels, classes from the labels, voxel
spacing, a patch from the median case shape), the user's ``--set``/``--roi-size`` decide the
rest and win over derived values, and a value that contradicts the data (``--set num_classes=3``
on a two-class dataset) is refused instead of failing later in the loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medtoken.config import apply_overrides
from medtoken.data.datasets import DatasetInfo
from medtoken.planning.plans import NnunetPlan
from medtoken.registry import build_model, get_config
from medtoken.train.config import TrainConfig
from medtoken.train.data import LoadedCase, derive_roi_size
from medtoken.utils.errors import InputError

__all__ = ["resolve_model_config"]


def resolve_model_config(train_cfg: TrainConfig, info: DatasetInfo, overrides: dict[str, Any],
                         cases: list[LoadedCase], plan: NnunetPlan | None = None) -> Any:
    """Preset -> dataset facts -> the user's overrides (the user wins) -> the model's config.

    The dataset gives ``in_channels``, ``num_classes``, ``spacing`` (configs that list it in
    ``dataset_facts``) and ``roi_size`` (the median case shape, see :func:`derive_roi_size`; a
    model with one fixed input size keeps the preset's). With an nnU-Net ``plan`` (nnunet
    models), the plan's architecture and patch are the dataset facts instead. ``--set`` and
    ``--roi-size`` replace any of them, except that ``in_channels``/``num_classes`` must agree
    with the dataset's channels and labels.
    """
    preset = get_config(train_cfg.model)
    if preset.spatial_dims != info.spatial_dims:
        raise InputError("--model", f"'{train_cfg.model}' is a {preset.spatial_dims}D model but "
                         f"the dataset is {info.spatial_dims}D")
    user = _user_overrides(train_cfg, overrides, info)
    facts: dict[str, Any] = {"in_channels": info.num_channels, "num_classes": info.num_classes}
    if plan is not None:
        facts.update(type(preset).fields_from_plan(plan))  # architecture, roi_size (our axes)
    if "spacing" in preset.dataset_facts:
        spacing = np.median(np.array([c.spacing for c in cases]), axis=0)
        facts["spacing"] = [round(float(s), 4) for s in spacing]
    cfg = apply_overrides(preset, {**facts, **user}, where=f"overrides of '{train_cfg.model}'")
    if "roi_size" in user or plan is not None:
        return cfg
    fixed, multiple = _input_rules(cfg)
    if fixed is not None:
        return cfg
    roi = derive_roi_size(cases, cfg.roi_size, multiple)
    return apply_overrides(cfg, {"roi_size": list(roi)}, where="--roi-size")


def _user_overrides(train_cfg: TrainConfig, overrides: dict[str, Any],
                    info: DatasetInfo) -> dict[str, Any]:
    """``--set`` model keys plus ``--roi-size``; refuses contradictions."""
    user = dict(overrides)
    if train_cfg.roi_size is not None:
        roi = list(train_cfg.roi_size)
        if "roi_size" in user and list(user["roi_size"]) != roi:
            raise InputError("--roi-size", f"{tuple(roi)} contradicts --set roi_size="
                             f"{user['roi_size']}; give the window once")
        user["roi_size"] = roi
    for key, value, source in (("in_channels", info.num_channels, "image channels"),
                               ("num_classes", info.num_classes,
                                "classes in its labels, background included")):
        if key in user and user[key] != value:
            raise InputError("--set", f"{key}={user[key]} contradicts the dataset ({value} "
                             f"{source}); training takes {key} from the dataset")
    return user


def _input_rules(cfg: Any) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
    """``(fixed_input_size, input_multiple)`` of the model ``cfg`` builds, read from a model
    built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        probe = build_model(cfg)
    return probe.fixed_input_size, tuple(probe.input_multiple)
