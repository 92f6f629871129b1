"""After training: predict the validation cases with the best checkpoint and score them.

This is what nnU-Net does at the end of a fold: ``RUN/validation/{case}{ending}`` plus
``RUN/validation/summary.json``, computed through the same code paths as ``medtoken predict`` and
``medtoken evaluate``, on the original files (original geometry). With ``tta`` the softmax is
averaged over all mirrorings of the spatial axes, as in nnU-Net's final validation (which mirrors
by default); ``summary.json`` records which (``"tta"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medtoken.data.datasets import DatasetInfo, load_dataset
from medtoken.data.splits import get_fold
from medtoken.inference.options import PredictOptions
from medtoken.inference.predict import predict_cases
from medtoken.metrics.evaluate import evaluate_pairs
from medtoken.models.checkpoint import load_model_checkpoint
from medtoken.train.run_folder import RunFolder
from medtoken.utils.errors import InputError

__all__ = ["final_validation", "validate_run"]

log = logging.getLogger(__name__)


def final_validation(run: RunFolder, info: DatasetInfo, val_ids: Sequence[str],
                     nsd_tolerance_mm: float = 1.0, tta: bool = False) -> dict[str, Any]:
    """Predict ``val_ids`` into ``run.validation`` and write its ``summary.json``."""
    loaded = load_model_checkpoint(run.root)
    cases = [info.case(c) for c in val_ids]
    report = predict_cases(loaded, cases, run.validation, PredictOptions(tta=tta))
    if report.failed:
        case_id, problem = report.failed[0]
        raise InputError(None, f"final validation: case {case_id} could not be predicted "
                         f"({problem})")
    # predict_cases writes one file per case, in order, when none failed
    pairs = [(pred, case.label) for pred, case in zip(report.written, cases, strict=True)
             if case.label is not None]
    labels = sorted(k for k in info.labels if k != 0)
    summary = evaluate_pairs(pairs, labels, nsd_tolerance_mm, run.validation / "summary.json",
                             extra={"tta": tta})
    log.info("validation (%d cases, %s%s): foreground mean Dice %.4f", len(pairs),
             loaded.path.name, ", mirroring TTA" if tta else "", summary["foreground_mean"]["Dice"])
    return summary


def validate_run(root: str | Path, data: str | Path, fold: str,
                 tta: bool = False) -> dict[str, Any]:
    """``train --val``: :func:`final_validation` of an existing run without training (nnU-Net's
    ``--val``), e.g. of a run stopped before its end; the run must be of ``fold``.

    Raises:
        InputError: no best checkpoint in ``root``, a run of another fold, or a fold without
            validation cases.
    """
    run = RunFolder(root)
    if not run.best.is_file():
        raise InputError(run.best, "no such file (--val validates a run's best checkpoint)")
    stored = str((yaml.safe_load(run.config.read_text()) or {}).get("train", {}).get("fold")
                 if run.config.is_file() else fold)
    if stored != str(fold):
        raise InputError("--fold", f"{run.root} is a run of fold {stored}, not {fold}")
    info = load_dataset(data)
    _, val_ids = get_fold(info, fold)
    if not val_ids:
        raise InputError("--fold", f"fold {fold} has no validation cases")
    return final_validation(run, info, val_ids, tta=tta)
