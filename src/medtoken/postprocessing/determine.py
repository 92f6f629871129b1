"""Decide the post-processing from cross-validation predictions (nnU-Net v2's rule).

``nnunetv2/postprocessing/remove_connected_components.py::determine_postprocessing``:

1. Keep only the largest connected component of all foreground labels together. The step is
   kept when the mean foreground Dice rises (strictly) and no label's mean Dice falls.
2. With more than one foreground label, then for each label in order, on the result of 1:
   keep only the largest component of that label; kept when that label's mean Dice rises.

Means are nnU-Net's (per label ``nanmean`` over cases, foreground mean = mean over labels),
computed by :mod:`medtoken.metrics` with the same Dice as ``medtoken evaluate``. A per-label step
only changes voxels of its label, so the steps of step 2 are independent of each other and all
of them are evaluated in one second pass over the cases; the result equals nnU-Net's sequence.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtoken.data.io import read_label, split_file_ending
from medtoken.metrics.case import OVERLAP_NAMES, compute_overlap_metrics
from medtoken.metrics.evaluate import aggregate_means
from medtoken.models.checkpoint import fold_run_dirs
from medtoken.postprocessing.components import remove_all_but_largest_component
from medtoken.postprocessing.plan import PostprocessingPlan, write_plan
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json_object

__all__ = ["determine_postprocessing", "determine_postprocessing_for_run", "find_cv_predictions"]

log = logging.getLogger(__name__)

PLAN_NAME = "postprocessing.json"
_Metrics = dict[str, dict[str, float]]  # label -> metric name -> value, one case


def _read_pair(pred_path: Path, ref_path: Path) -> tuple[np.ndarray, np.ndarray]:
    pred, _ = read_label(pred_path)
    ref, _ = read_label(ref_path)
    if pred.shape != ref.shape:
        raise InputError(pred_path, f"shape {pred.shape} differs from the reference "
                         f"{ref_path.name} shape {ref.shape}")
    return pred, ref


def _means(per_case: Sequence[_Metrics], keys: Sequence[str]) -> dict[str, Any]:
    mean, foreground_mean = aggregate_means(per_case, keys, OVERLAP_NAMES)
    return {"foreground_mean": foreground_mean, "mean": mean}


def _not_worse(after: float, before: float) -> bool:
    return not after < before  # NaN (a label absent from every case) is not worse, as nnU-Net


def _decision(step: str, group: Sequence[int], before: float, after: float,
              kept: bool) -> dict[str, Any]:
    verb = "kept" if kept else "not kept"
    log.info("largest component, %s: Dice %.5f -> %.5f, %s", step, before, after, verb)
    return {"step": step, "labels": list(group), "dice_before": before, "dice_after": after,
            "kept": kept}


def determine_postprocessing(pairs: Sequence[tuple[Path, Path]],
                             labels: Sequence[int]) -> PostprocessingPlan:
    """Decide which largest-component steps raise the mean Dice of ``pairs``.

    Args:
        pairs: ``(prediction, reference)`` label files, one per cross-validation case.
        labels: the foreground labels (background 0 is left out).

    Returns:
        The plan, whose record holds the means before and after and every decision.

    Raises:
        InputError: no pairs, an unreadable file, or shapes that differ.
    """
    fg = sorted({int(v) for v in labels} - {0})
    if not pairs or not fg:
        raise InputError(None, "post-processing needs at least one case and one foreground label")
    keys = [str(v) for v in fg]
    base: list[_Metrics] = []
    lcc_all: list[_Metrics] = []
    for pred_path, ref_path in pairs:  # pass 1: all foreground together
        pred, ref = _read_pair(Path(pred_path), Path(ref_path))
        base.append(compute_overlap_metrics(pred, ref, fg))
        lcc_all.append(compute_overlap_metrics(remove_all_but_largest_component(pred, fg),
                                               ref, fg))
    before, after = _means(base, keys), _means(lcc_all, keys)
    fg_before, fg_after = before["foreground_mean"]["Dice"], after["foreground_mean"]["Dice"]
    keep_all = fg_after > fg_before and all(
        _not_worse(after["mean"][k]["Dice"], before["mean"][k]["Dice"]) for k in keys)
    decisions = [_decision("all foreground", fg, fg_before, fg_after, keep_all)]
    steps: list[tuple[int, ...]] = [tuple(fg)] if keep_all else []
    source = lcc_all if keep_all else base
    final = [dict(m) for m in source]
    if len(fg) > 1:
        per_label = _per_label_metrics(pairs, fg, keep_all)
        src_means = _means(source, keys)["mean"]
        for label, key in zip(fg, keys, strict=True):
            lcc_means = _means(per_label[key], [key])["mean"][key]
            kept = lcc_means["Dice"] > src_means[key]["Dice"]
            decisions.append(_decision(f"label {label}", [label], src_means[key]["Dice"],
                                       lcc_means["Dice"], kept))
            if kept:
                steps.append((label,))
                for case, metrics in zip(final, per_label[key], strict=True):
                    case[key] = metrics[key]
    record = {"input_folder": before, "postprocessed": _means(final, keys),
              "decisions": decisions, "num_cases": len(pairs)}
    return PostprocessingPlan(tuple(steps), tuple(fg), record)


def _per_label_metrics(pairs: Sequence[tuple[Path, Path]], fg: Sequence[int],
                       keep_all: bool) -> dict[str, list[_Metrics]]:
    """Pass 2: metrics of each label after its own largest-component step, per case."""
    out: dict[str, list[_Metrics]] = {str(v): [] for v in fg}
    for pred_path, ref_path in pairs:
        pred, ref = _read_pair(Path(pred_path), Path(ref_path))
        source = remove_all_but_largest_component(pred, fg) if keep_all else pred
        for label in fg:
            lcc = remove_all_but_largest_component(source, [label])
            out[str(label)].append(compute_overlap_metrics(lcc, ref, [label]))
    return out


def _validation_folders(run: Path) -> list[Path]:
    """``RUN/validation`` of one run, or ``RUN/fold_N/validation`` of a cross-validation."""
    if (run / "validation" / "summary.json").is_file():
        return [run / "validation"]
    folds = fold_run_dirs(run)
    if not folds:
        raise InputError(run, "no cross-validation predictions: expected validation/summary.json "
                         "or fold_N/validation/summary.json (a run of --fold all has none)")
    missing = [p.name for p in folds if not (p / "validation" / "summary.json").is_file()]
    if missing:
        raise InputError(run / missing[0], "has no validation/summary.json (training not "
                         "finished?); every fold is needed to decide post-processing")
    return [p / "validation" for p in folds]


def _reference(entry: dict[str, Any], case_id: str, summary: Path,
               dataset: Any | None) -> Path:
    if dataset is not None:
        try:
            label = dataset.case(case_id).label
        except KeyError:
            raise InputError(dataset.root, f"has no case {case_id!r} (named in {summary})"
                             ) from None
        return Path(label)
    ref = Path(str(entry.get("reference_file", "")))
    if not ref.is_file():
        raise InputError(ref, f"reference label file named in {summary} not found; pass "
                         "--data DATASET to take the references from the dataset")
    return ref


def find_cv_predictions(run: str | os.PathLike[str], data: str | os.PathLike[str] | None = None
                        ) -> tuple[list[tuple[Path, Path]], list[int]]:
    """The ``(prediction, reference)`` pairs and foreground labels of a run's validation.

    Predictions are taken from the validation folder beside each ``summary.json`` (so a moved
    run folder still works); references from the summary, or from the dataset ``data``.

    Raises:
        InputError: no validation, a missing file, a case in two folds, or folds whose labels
            differ.
    """
    run = Path(run)
    if not run.is_dir():
        raise InputError(run, "run folder not found")
    dataset = None
    if data is not None:
        from medtoken.data.datasets import load_dataset

        dataset = load_dataset(data)
    pairs: dict[str, tuple[Path, Path]] = {}
    labels: list[int] | None = None
    for folder in _validation_folders(run):
        summary_path = folder / "summary.json"
        summary = read_json_object(summary_path, "summary.json")
        entries, found = summary.get("metric_per_case"), summary.get("labels")
        if not isinstance(entries, list) or not isinstance(found, list):
            raise InputError(summary_path, "not a medtoken summary (needs 'metric_per_case' and "
                             "'labels')")
        if labels is not None and sorted(found) != labels:
            raise InputError(summary_path, f"labels {sorted(found)} differ from {labels} of the "
                             "other folds")
        labels = sorted(int(v) for v in found)
        for entry in entries:
            pred = folder / Path(str(entry.get("prediction_file", ""))).name
            case_id = split_file_ending(pred)[0]
            if not pred.is_file():
                raise InputError(pred, f"prediction named in {summary_path} not found")
            if case_id in pairs:
                raise InputError(pred, f"case {case_id!r} is also in {pairs[case_id][0].parent}")
            pairs[case_id] = (pred, _reference(entry, case_id, summary_path, dataset))
    assert labels is not None
    return [pairs[k] for k in sorted(pairs)], labels


def determine_postprocessing_for_run(run: str | os.PathLike[str],
                                     data: str | os.PathLike[str] | None = None
                                     ) -> tuple[PostprocessingPlan, Path]:
    """Decide the post-processing of a run and write ``RUN/postprocessing.json``."""
    pairs, labels = find_cv_predictions(run, data)
    plan = determine_postprocessing(pairs, labels)
    record = {**plan.record, "run": str(Path(run).resolve())}
    plan = PostprocessingPlan(plan.steps, plan.labels, record)
    return plan, write_plan(plan, Path(run) / PLAN_NAME)


def format_decisions(plan: PostprocessingPlan) -> str:
    """One line per step tried: labels, Dice before -> after, kept or not."""
    lines = []
    for d in plan.record.get("decisions", []):
        before, after = (math.nan if v is None else float(v)
                         for v in (d["dice_before"], d["dice_after"]))
        lines.append(f"largest component, {d['step']:<16} Dice {before:.4f} -> {after:.4f}  "
                     f"{'kept' if d['kept'] else 'not kept'}")
    return "\n".join(lines)
