"""Ensembles: several runs (folds, or different models of one dataset) predicting together.

A member is a run folder, a checkpoint file or an exported model; a folder that holds
``fold_0`` ... ``fold_k`` run folders (and no checkpoint of its own) stands for all of them.
Members must agree on image channels, classes, label names and dimensionality; their softmax
outputs are averaged (each member normalises the image with its own plan and uses its own
window).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medtoken.models.checkpoint import (
    CHECKPOINT_NAMES,
    LoadedModel,
    fold_run_dirs,
    load_model_checkpoint,
)
from medtoken.utils.errors import InputError

__all__ = ["check_members_agree", "expand_members", "load_members"]

def expand_members(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The member paths, with every folder of ``fold_N`` run folders replaced by those folds."""
    members: list[Path] = []
    for raw in paths:
        path = Path(raw)
        folds = []
        if path.is_dir() and not any((path / name).is_file() for name in CHECKPOINT_NAMES):
            folds = fold_run_dirs(path)
        members.extend(folds or [path])
    return members


def _facts(loaded: LoadedModel) -> dict[str, Any]:
    model = loaded.model
    labels = loaded.dataset.get("labels")
    return {"channels": model.in_channels, "classes": model.num_classes,
            "dimensionality": f"{model.spatial_dims}D",
            "labels": {str(k): v for k, v in labels.items()} if labels else None}


def check_members_agree(members: Sequence[LoadedModel]) -> None:
    """Refuse an ensemble whose members differ in channels, classes, labels or dimensionality.

    Raises:
        InputError: naming the first member that differs from the first one.
    """
    first = _facts(members[0])
    for member in members[1:]:
        facts = _facts(member)
        for key, value in facts.items():
            if value != first[key]:
                raise InputError(member.path, f"ensemble members must agree: its {key} "
                                 f"{value} differ from {first[key]} of {members[0].path}")


def load_members(paths: Sequence[str | os.PathLike[str]], device: torch.device,
                 overrides: Mapping[str, Any] | None = None, threads: int | None = None,
                 export_device: torch.device | None = None) -> list[LoadedModel]:
    """Load every member (checkpoints on ``device``, exports on ``export_device``), checked.

    Raises:
        InputError: a member that does not load, ``overrides`` for an exported member, or
            members that do not agree (:func:`check_members_agree`).
    """
    from medtoken.export.runtime import is_exported, load_exported

    members = []
    for path in expand_members(paths):
        if is_exported(path):  # `medtoken export` output; runs on the CPU unless told
            if overrides:
                raise InputError("--set", "an exported model is fixed; export again with the "
                                 "overrides instead")
            members.append(load_exported(path, device=export_device, threads=threads))
        else:
            members.append(load_model_checkpoint(path, device=device, overrides=overrides))
    check_members_agree(members)
    return members
