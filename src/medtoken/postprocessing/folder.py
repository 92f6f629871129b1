"""Apply a post-processing plan to a folder of label files (``medtoken postprocess``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medtoken.data.io import read_label, write_label
from medtoken.metrics.evaluate import index_label_folder
from medtoken.postprocessing.plan import PostprocessingPlan, apply_postprocessing, read_plan
from medtoken.utils.errors import InputError

__all__ = ["postprocess_folder"]


def _check_values(path: Path, labels: np.ndarray, plan: PostprocessingPlan) -> None:
    if plan.labels is None:
        return
    unknown = sorted(set(np.unique(labels).tolist()) - {0, *plan.labels})
    if unknown:
        raise InputError(path, f"holds labels {unknown}; the post-processing plan is for labels "
                         f"{list(plan.labels)}")


def postprocess_folder(in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       plan: PostprocessingPlan | str | os.PathLike[str]) -> list[Path]:
    """Write every label file of ``in_dir``, post-processed, to ``out_dir`` under its name.

    Every input is read and checked before anything is written; outputs keep the input's
    geometry and file type. The inputs are never modified.

    Returns:
        The files written, by case id.

    Raises:
        InputError: ``out_dir`` is ``in_dir``, no label files, an unreadable file, or a file
            holding labels the plan is not for.
    """
    src, dst = Path(in_dir), Path(out_dir)
    if not isinstance(plan, PostprocessingPlan):
        plan = read_plan(plan)
    files = index_label_folder(src)
    if not files:
        raise InputError(src, "holds no label files")
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError(dst, "the output folder is the input folder; choose another one so "
                         "that no input is overwritten")
    for path in files.values():  # pass 1: refuse before anything is written
        _check_values(path, read_label(path)[0], plan)
    written = []
    for path in files.values():
        labels, meta = read_label(path)
        target = dst / path.name
        write_label(apply_postprocessing(labels, plan), meta, target)
        written.append(target)
    return written
