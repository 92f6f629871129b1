"""The run folder: resolved config, CSV log, and the rule for reusing a folder.

Layout::

    RUN/config.yaml            fully resolved: train options, model preset + config, dataset facts
    RUN/plans.json             the nnU-Net plans used (``--plans``, or planned from the dataset)
    RUN/log.csv                one row per epoch
    RUN/checkpoint_last.pt     written at every epoch end (atomically)
    RUN/checkpoint_best.pt     best validation mean foreground Dice
    RUN/validation/            final predictions of the validation cases + summary.json

Under ``torchrun`` only rank 0 writes here; ``config.yaml`` records the world size under
``runtime`` (a fact of the run, not a setting a resumed run must repeat).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import yaml

from medtoken.config import rename_nested, to_dict
from medtoken.planning.plans import write_plans
from medtoken.train.config import TrainConfig
from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.errors import InputError
from medtoken.utils.tables import rows_to_csv

__all__ = ["RunFolder", "check_reusable"]

OWNED = ("config.yaml", "plans.json", "log.csv", "checkpoint_last.pt", "checkpoint_best.pt",
         "validation")


class RunFolder:
    """Paths and files of one training run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.plans = self.root / "plans.json"
        self.log = self.root / "log.csv"
        self.last = self.root / "checkpoint_last.pt"
        self.best = self.root / "checkpoint_best.pt"
        self.validation = self.root / "validation"

    def prepare(self, resolved: dict[str, Any], resume: bool, overwrite: bool,
                plans: dict[str, Any] | None = None) -> None:
        """Check that the folder may be used for this config, then write ``config.yaml`` (and
        ``plans.json``, nnU-Net's plans the run used, when there are any).

        Raises:
            InputError: the folder holds a run and neither ``--resume`` nor ``--overwrite`` was
                given, or ``--resume`` was given for a run of a different configuration.
        """
        check_reusable(self.root, resume, overwrite)
        if self.config.exists():
            if overwrite:
                for name in OWNED:
                    path = self.root / name
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
            elif resume:
                self._check_same_run(resolved)
        self.root.mkdir(parents=True, exist_ok=True)
        if plans is not None:
            write_plans(plans, self.plans)
        atomic_write_text(self.config, yaml.safe_dump(resolved, sort_keys=False))

    def _check_same_run(self, resolved: dict[str, Any]) -> None:
        stored = _current_spelling(yaml.safe_load(self.config.read_text()), str(self.config))
        changeable = set(TrainConfig.RESUMABLE_CHANGES)
        for section in ("train", "model", "dataset"):
            old, new = stored.get(section, {}), resolved.get(section, {})
            if section == "train":  # a run from before an option existed had its default
                old = {**to_dict(TrainConfig()), **old}
            keys = set(old) | set(new)
            if section == "train":
                keys -= changeable
            diff = sorted(k for k in keys if old.get(k) != new.get(k))
            if diff:
                raise InputError(self.root, f"--resume with a different configuration "
                                 f"({section}: {', '.join(diff)}); use a new --out folder or "
                                 "--overwrite")

    def read_log(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        return list(csv.DictReader(self.log.read_text().splitlines()))

    def write_log(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``log.csv`` atomically; columns are the rows' keys in first-seen order."""
        atomic_write_text(self.log, rows_to_csv(rows))


def check_reusable(root: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that ``--resume`` / ``--overwrite`` do not allow to be used (what
    :meth:`RunFolder.prepare` checks first; the config comparison of ``--resume`` comes later).

    Raises:
        InputError: ``root`` is a file, holds a run and neither flag was given, or ``resume``
            was given and it holds no run.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder")
    if (root / "config.yaml").exists():
        if not (resume or overwrite):
            raise InputError(root, "already holds a training run; pass --resume to "
                             "continue it or --overwrite to replace it")
    elif resume:
        raise InputError(root, "--resume given but this folder holds no run")


def _current_spelling(stored: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``config.yaml`` of an older medtoken with its renamed keys spelled as today
    (``train.patch_size`` -> ``train.roi_size``, SCD ``pruning.selection`` -> ``pruning.method``).
    """
    from medtoken.registry import family_config_class

    stored = dict(stored)
    stored["train"] = rename_nested(TrainConfig, stored.get("train") or {}, where, "train.")
    model = stored.get("model") or {}
    try:
        model_cls = family_config_class(str(model.get("family")))
    except InputError:  # an unknown family: compared as stored (and then refused)
        return stored
    stored["model"] = rename_nested(model_cls, model, where, "model.")
    return stored
