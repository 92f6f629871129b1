"""Evaluate a folder of predicted label maps against a folder of references (nnU-Net style).

Files are paired by case id (``{case}{file_ending}``, the ending split off by
:func:`medtoken.data.io.split_file_ending`); files with an ending the reader does not support
(``summary.json``, ``.npz`` probabilities, ...) are ignored. Every reference needs a prediction
and every prediction a reference. Each pair is scored with
:func:`medtoken.metrics.case.compute_case_metrics` at the reference's voxel spacing.

The result is written as ``summary.json`` with nnU-Net v2's fields (``metric_per_case``,
``mean`` = per label ``np.nanmean`` over cases, ``foreground_mean`` = plain mean of the per-label
means over labels other than 0, keys as strings, ``sort_keys=True``) plus ``HD95_mm``, ``NSD``
and the empty flags in the same dicts, and the top-level fields ``labels``, ``num_cases``,
``nsd_tolerance_mm``, ``spacing_source``, ``implementation`` and ``empty_policy``. The JSON is
strict: NaN is written as ``null``. A CSV with one row per (case, label) is written beside it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import monai
import numpy as np

from medtoken.data.io import IMAGE_ENDINGS, read_label, split_file_ending
from medtoken.metrics.case import EMPTY_POLICY, HD_PERCENTILE, METRIC_NAMES, compute_case_metrics
from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import nan_to_none
from medtoken.utils.version import __version__

__all__ = [
    "aggregate_means",
    "evaluate_folder",
    "evaluate_pairs",
    "implementation_text",
    "index_label_folder",
    "write_summary",
]

SPACING_SOURCE = "reference image header (medtoken.data.io.read_label ImageMeta.spacing, mm)"
CSV_COLUMNS = ("case", "label", "prediction_file", "reference_file", "spacing_mm", *METRIC_NAMES)
MAX_LISTED = 5  # missing files named in an error message


def implementation_text() -> str:
    """Which code computed the numbers, with versions (reported in every summary)."""
    return (f"medtoken {__version__}; overlap: medtoken (nnU-Net v2 definitions); "
            f"distances: MONAI {monai.__version__} (compute_hausdorff_distance "
            f"percentile={HD_PERCENTILE:g}, compute_surface_dice; euclidean, symmetric, "
            f"use_subvoxels=False)")


def index_label_folder(folder: Path) -> dict[str, Path]:
    """Map case id -> label file for every file in ``folder`` with a supported image ending."""
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        case, ending = split_file_ending(path)
        if ending.lower() not in IMAGE_ENDINGS:
            continue  # summary.json, .npz probabilities, .raw data of .mhd headers, ...
        if case in cases:
            raise InputError(path, f"case id '{case}' also used by {cases[case].name}")
        cases[case] = path
    return cases


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "")


def _pair_files(gt_dir: Path, pred_dir: Path) -> list[tuple[str, Path, Path]]:
    """``[(case, prediction, reference)]`` sorted by case; InputError for unmatched files."""
    refs, preds = index_label_folder(gt_dir), index_label_folder(pred_dir)
    if not refs:
        raise InputError(gt_dir, f"contains no label files ({', '.join(IMAGE_ENDINGS)})")
    no_pred = sorted(refs.keys() - preds.keys())
    if no_pred:
        raise InputError(pred_dir, "no prediction for reference file(s) "
                         f"{_listing([refs[c].name for c in no_pred])}")
    no_ref = sorted(preds.keys() - refs.keys())
    if no_ref:
        raise InputError(gt_dir, "no reference for prediction file(s) "
                         f"{_listing([preds[c].name for c in no_ref])}")
    return [(case, preds[case], refs[case]) for case in sorted(refs)]


def _both_empty_metrics(num_voxels: int) -> dict[str, float]:
    """Metrics of a label absent from both images (the first rule of ``EMPTY_POLICY``)."""
    return {"Dice": math.nan, "IoU": math.nan, "TP": 0, "FP": 0, "FN": 0, "TN": num_voxels,
            "n_pred": 0, "n_ref": 0, "HD95_mm": math.nan, "NSD": math.nan,
            "empty_reference": 1, "empty_prediction": 1}


def _score_case(pred_path: Path, ref_path: Path, labels: Sequence[int] | None,
                nsd_tolerance_mm: float) -> dict[str, Any]:
    """One ``metric_per_case`` entry; with ``labels=None`` only the labels present are scored."""
    ref, meta = read_label(ref_path)
    pred, _ = read_label(pred_path)
    if pred.shape != ref.shape:
        raise InputError(pred_path, f"shape {tuple(pred.shape)} differs from the reference "
                         f"{ref_path.name} shape {tuple(ref.shape)}")
    if labels is None:
        labels = [int(v) for v in np.union1d(np.unique(ref), np.unique(pred)) if v != 0]
    spacing = [float(s) for s in meta.spacing]
    metrics = compute_case_metrics(pred, ref, labels, spacing, nsd_tolerance_mm)
    return {"prediction_file": str(pred_path), "reference_file": str(ref_path),
            "spacing": spacing, "metrics": metrics, "_num_voxels": int(ref.size)}


def aggregate_means(metrics_per_case: Sequence[dict[str, dict[str, float]]],
                    labels: Sequence[str],
                    names: Sequence[str] = METRIC_NAMES) -> tuple[dict, dict]:
    """nnU-Net's ``mean`` (per label, nanmean over cases) and ``foreground_mean``.

    Args:
        metrics_per_case: one ``{label: {name: value}}`` dict per case.
        labels: label keys (strings) to aggregate; ``"0"`` is left out of the foreground mean.
        names: metric names to aggregate.
    """
    mean: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():  # a label that is NaN in every case gives NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        for label in labels:
            mean[label] = {name: float(np.nanmean([c[label][name] for c in metrics_per_case]))
                           for name in names}
    foreground = [label for label in labels if label != "0"]
    foreground_mean = {name: float(np.mean([mean[label][name] for label in foreground]))
                       if foreground else math.nan for name in names}
    return mean, foreground_mean


def _csv_text(summary: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in summary["metric_per_case"]:
        case, _ = split_file_ending(entry["reference_file"])
        spacing = " ".join(f"{s:g}" for s in entry["spacing"])
        for label, metrics in entry["metrics"].items():
            writer.writerow([case, label, entry["prediction_file"], entry["reference_file"],
                             spacing, *(metrics[name] for name in METRIC_NAMES)])
    return buffer.getvalue()


def write_summary(summary: dict[str, Any], output: str | Path) -> Path:
    """Write ``summary`` as strict JSON and its per-(case, label) CSV, both atomically.

    The JSON goes to ``output`` (NaN as ``null``, ``sort_keys=True``); the CSV to ``output``
    with the suffix ``.csv`` (NaN as ``nan``). Returns the CSV path.
    """
    output = Path(output)
    text = json.dumps(nan_to_none(summary), sort_keys=True, indent=2, allow_nan=False)
    atomic_write_text(output, text + "\n")
    csv_path = output.with_suffix(".csv")
    atomic_write_text(csv_path, _csv_text(summary))
    return csv_path


def evaluate_folder(
    gt_dir: str | Path,
    pred_dir: str | Path,
    labels: Sequence[int] | None = None,
    nsd_tolerance_mm: float = 1.0,
    output: str | Path | None = None,
) -> dict:
    """Score every prediction in ``pred_dir`` against its reference in ``gt_dir``.

    Args:
        gt_dir: folder of reference label maps.
        pred_dir: folder of predicted label maps, named as the references' case ids.
        labels: labels to score; ``None`` = every non-zero label found in any reference or
            prediction (a label absent from a case counts there as "both empty": NaN).
        nsd_tolerance_mm: tolerance τ of the normalized surface Dice, in mm.
        output: path of the JSON summary; default ``pred_dir/summary.json``. The CSV goes
            beside it with the same stem.

    Returns:
        The summary dict as written (with NaN where the JSON has null).

    Raises:
        InputError: a folder is missing or empty, a file has no partner, or shapes differ.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    pairs = [(pred, ref) for _, pred, ref in _pair_files(gt_dir, pred_dir)]
    return evaluate_pairs(pairs, labels, nsd_tolerance_mm,
                          pred_dir / "summary.json" if output is None else output)


def evaluate_pairs(
    pairs: Sequence[tuple[Path, Path]],
    labels: Sequence[int] | None,
    nsd_tolerance_mm: float,
    output: str | Path,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Score ``(prediction, reference)`` file pairs and write the summary to ``output``.

    The folder-free core of :func:`evaluate_folder` (training's final validation uses it to score
    the validation cases against their labels in the dataset, with ``extra`` entries saying how
    they were predicted).
    """
    if not (nsd_tolerance_mm >= 0 and math.isfinite(nsd_tolerance_mm)):
        raise InputError("nsd_tolerance_mm", f"{nsd_tolerance_mm} must be finite and >= 0")
    fixed = None if labels is None else [int(v) for v in labels]
    per_case = [_score_case(Path(pred), Path(ref), fixed, nsd_tolerance_mm) for pred, ref in pairs]
    if fixed is None:
        fixed = sorted({int(k) for c in per_case for k in c["metrics"]})
    keys = [str(v) for v in fixed]
    for entry in per_case:  # labels absent from both images of a case: "both empty"
        num_voxels = entry.pop("_num_voxels")
        scored = entry["metrics"]
        entry["metrics"] = {k: scored[k] if k in scored else _both_empty_metrics(num_voxels)
                            for k in keys}
    mean, foreground_mean = aggregate_means([c["metrics"] for c in per_case], keys)
    summary = {"metric_per_case": per_case, "mean": mean, "foreground_mean": foreground_mean,
               "labels": fixed, "num_cases": len(per_case),
               "nsd_tolerance_mm": float(nsd_tolerance_mm), "spacing_source": SPACING_SOURCE,
               "implementation": implementation_text(), "empty_policy": EMPTY_POLICY,
               **(extra or {})}
    write_summary(summary, output)
    return summary
