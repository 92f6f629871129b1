"""After training: predict the validation cases with the best checkpoint and score them.

This is what nnU-Net does at the end of a fold: ``RUN/validation/{case}{ending}`` plus
``RUN/validation/summary.json``, computed through the same code paths as ``medtoken predict`` and
``medtoken evaluate``, on the original files (original geometry).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from medtoken.data.datasets import DatasetInfo
from medtoken.inference.predict import predict_cases
from medtoken.metrics.evaluate import evaluate_pairs
from medtoken.models.checkpoint import load_model_checkpoint
from medtoken.train.run_folder import RunFolder
from medtoken.utils.errors import InputError

__all__ = ["final_validation"]

log = logging.getLogger(__name__)


def final_validation(run: RunFolder, info: DatasetInfo, val_ids: Sequence[str],
                     nsd_tolerance_mm: float = 1.0) -> dict[str, Any]:
    """Predict ``val_ids`` into ``run.validation`` and write its ``summary.json``."""
    loaded = load_model_checkpoint(run.root)
    cases = [info.case(c) for c in val_ids]
    report = predict_cases(loaded, cases, run.validation)
    if report.failed:
        case_id, problem = report.failed[0]
        raise InputError(None, f"final validation: case {case_id} could not be predicted "
                         f"({problem})")
    # predict_cases writes one file per case, in order, when none failed
    pairs = [(pred, case.label) for pred, case in zip(report.written, cases, strict=True)
             if case.label is not None]
    labels = sorted(k for k in info.labels if k != 0)
    summary = evaluate_pairs(pairs, labels, nsd_tolerance_mm, run.validation / "summary.json")
    log.info("validation (%d cases, %s): foreground mean Dice %.4f", len(pairs),
             loaded.path.name, summary["foreground_mean"]["Dice"])
    return summary
