"""Checkpoints: one format for every family, written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts::

    {"format_version", "family", "preset", "model_config", "model",
     "optimizer", "scheduler", "scaler", "torch_rng", "epoch", "step", "best_metric",
     "train_config", "dataset"}

``dataset`` holds what prediction needs: labels, channel names, file ending, spatial dims and the
normalisation plan. The model is rebuilt from ``model_config`` (not from the preset), so a later
edit of a preset never changes what an old checkpoint loads as.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medtoken.config import apply_overrides, from_dict, to_dict
from medtoken.registry import build_model, family_config_class
from medtoken.utils.atomic import atomic_path
from medtoken.utils.errors import InputError

__all__ = [
    "FOLD_DIR",
    "FORMAT_VERSION",
    "LoadedModel",
    "fold_run_dirs",
    "load_checkpoint",
    "load_model_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1
CHECKPOINT_NAMES = ("checkpoint_best.pt", "checkpoint_last.pt")
FOLD_DIR = "fold_{fold}"  # the run folders of a cross-validation: OUT/fold_0 ... OUT/fold_4
_FOLD_DIR = re.compile(r"fold_(\d+)")


def fold_run_dirs(path: str | Path) -> list[Path]:
    """The ``fold_N`` run folders directly in ``path``, by fold number (none: ``[]``)."""
    path = Path(path)
    if not path.is_dir():
        return []
    folds = [(int(m.group(1)), p) for p in path.iterdir()
             if p.is_dir() and (m := _FOLD_DIR.fullmatch(p.name))]
    return [p for _, p in sorted(folds)]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (see module docstring) to ``path`` atomically."""
    state = {"format_version": FORMAT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the best (else last) checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise InputError(path, "no checkpoint_best.pt or checkpoint_last.pt in this run folder")
    if not path.is_file():
        raise InputError(path, "no such checkpoint file or run folder")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint dict safely (``weights_only=True``) and check its format.

    Raises:
        InputError: the file is missing, unreadable, needs arbitrary unpickling (possibly
            malicious), or is not a medtoken checkpoint of a known format version.
    """
    file = resolve_checkpoint(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise InputError(file, "refused: the file needs arbitrary code to unpickle and is not "
                         f"loaded (only weights-only checkpoints are accepted; {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise InputError(file, f"cannot read checkpoint: {err}") from None
    if not isinstance(state, dict) or "format_version" not in state or "family" not in state:
        raise InputError(file, "not a medtoken checkpoint (no format_version/family)")
    if state["format_version"] != FORMAT_VERSION:
        raise InputError(file, f"checkpoint format version {state['format_version']} is not "
                         f"supported (this medtoken reads version {FORMAT_VERSION})")
    return state


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint plus what prediction needs."""

    model: Any
    state: dict[str, Any]
    path: Path

    @property
    def dataset(self) -> dict[str, Any]:
        return self.state.get("dataset", {})  # type: ignore[no-any-return]


def build_from_state(state: dict[str, Any], where: str | Path) -> Any:
    """Rebuild the model (weights loaded) described by a checkpoint dict."""
    missing = [key for key in ("model_config", "model") if key not in state]
    if missing:
        raise InputError(where, f"incomplete checkpoint: no {', '.join(missing)}")
    try:
        cfg_cls = family_config_class(state["family"])
    except InputError as err:  # a family this installation does not know: name the file
        raise InputError(where, err.problem) from None
    cfg: Any = from_dict(cfg_cls, state["model_config"], where=str(where))
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(where, f"weights do not match the stored model config: {first}") from None
    return model


def load_model_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                          expect_family: str | None = None,
                          overrides: Mapping[str, Any] | None = None) -> LoadedModel:
    """Load a run folder or checkpoint into an eval-mode model on ``device``.

    Args:
        overrides: dotted config keys to change before the weights are loaded, for inference-time
            knobs that leave the weights valid (``selection.num_selected``,
            ``pruning.keep_ratio``); a key that changes the weights' shapes is refused.
    """
    file = resolve_checkpoint(path)
    state = load_checkpoint(file)
    if expect_family is not None and state["family"] != expect_family:
        raise InputError(file, f"checkpoint is of model family '{state['family']}', expected "
                         f"'{expect_family}'")
    if overrides:
        cfg: Any = from_dict(family_config_class(state["family"]), state["model_config"],
                             str(file))
        state = {**state, "model_config": to_dict(apply_overrides(cfg, overrides))}
    model = build_from_state(state, file).to(device).eval()
    # the config as built: an older checkpoint's renamed keys in today's spelling
    state = {**state, "model_config": to_dict(model.config)}
    return LoadedModel(model=model, state=state, path=file)

