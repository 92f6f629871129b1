"""The post-processing plan: ``postprocessing.json``, read, written and applied.

The file keeps nnU-Net v2's fields (``postprocessing_fns``, ``postprocessing_kwargs``,
``input_folder`` and ``postprocessed`` with ``mean`` / ``foreground_mean``), so that a
``postprocessing.json`` written by ``nnUNetv2_determine_postprocessing`` is read too, and adds
``labels`` (the foreground labels it was determined for), ``decisions`` (one entry per step
tried, with the Dice before and after), ``num_cases``, ``connectivity`` and ``format``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtoken.postprocessing.components import CONNECTIVITY, remove_all_but_largest_component
from medtoken.utils.atomic import atomic_write_text
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import nan_to_none, read_json_object

__all__ = ["LCC_FUNCTION", "PostprocessingPlan", "apply_postprocessing", "read_plan",
           "write_plan"]

LCC_FUNCTION = "remove_all_but_largest_component_from_segmentation"  # nnU-Net v2's name
FORMAT = "medtoken postprocessing 1"


@dataclass(frozen=True)
class PostprocessingPlan:
    """Steps to apply to a label map, in order.

    Attributes:
        steps: each step keeps the largest connected component of the union of its labels.
        labels: the foreground labels the plan was determined for (``None`` for a plan from
            nnU-Net, which does not record them).
        record: everything else of the file (metrics before/after, decisions), kept as read.
    """

    steps: tuple[tuple[int, ...], ...]
    labels: tuple[int, ...] | None
    record: dict[str, Any] = field(default_factory=dict, compare=False)

    def check_labels(self, foreground: Iterable[int], where: str | os.PathLike[str] | None,
                     what: str = "the model") -> None:
        """Refuse a plan determined for other foreground labels than ``foreground``.

        Raises:
            InputError: at ``where``, naming both label sets.
        """
        have = sorted({int(v) for v in foreground} - {0})
        if self.labels is not None and sorted(self.labels) != have:
            raise InputError(where, f"the post-processing plan is for labels {list(self.labels)}, "
                             f"{what} has labels {have}")
        used = sorted({v for step in self.steps for v in step} - set(have))
        if used:
            raise InputError(where, f"the post-processing plan uses labels {used} that {what} "
                             f"does not have (labels {have})")


def apply_postprocessing(labels: np.ndarray,
                         plan: PostprocessingPlan | str | os.PathLike[str]) -> np.ndarray:
    """Apply ``plan`` (or the plan in that file) to one label map ``(*S)``; a new array.

    Raises:
        InputError: the label map holds labels other than background and the plan's labels.
    """
    if not isinstance(plan, PostprocessingPlan):
        plan = read_plan(plan)
    labels = np.asarray(labels)
    if plan.labels is not None:
        present = np.unique(labels)
        unknown = sorted(set(present.tolist()) - {0, *plan.labels})
        if unknown:
            raise InputError(None, f"the label map holds labels {unknown}; the post-processing "
                             f"plan is for labels {list(plan.labels)}")
    out = labels
    for group in plan.steps:
        out = remove_all_but_largest_component(out, group)
    return out.copy() if out is labels else out


def _parse_step(fn: Any, kwargs: Any, path: Path, index: int) -> tuple[int, ...]:
    if fn != LCC_FUNCTION:
        raise InputError(path, f"postprocessing_fns[{index}] is {fn!r}; only {LCC_FUNCTION!r} "
                         "is supported")
    raw = kwargs.get("labels_or_regions") if isinstance(kwargs, dict) else None
    values: list[Any] = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                             for v in values):
        raise InputError(path, f"postprocessing_kwargs[{index}] must be {{'labels_or_regions': "
                         f"label or [labels]}} with positive integer labels (regions are not "
                         f"supported), got {kwargs!r}")
    return tuple(sorted({int(v) for v in values}))


def read_plan(path: str | os.PathLike[str]) -> PostprocessingPlan:
    """Read a ``postprocessing.json`` (medtoken's or nnU-Net v2's).

    Raises:
        InputError: unreadable file, or steps that are not largest-component steps.
    """
    path = Path(path)
    data = read_json_object(path, "postprocessing.json")
    fns, kwargs = data.get("postprocessing_fns"), data.get("postprocessing_kwargs")
    if not isinstance(fns, list) or not isinstance(kwargs, list) or len(fns) != len(kwargs):
        raise InputError(path, "not a post-processing plan: needs the lists "
                         "'postprocessing_fns' and 'postprocessing_kwargs' of equal length")
    steps = tuple(_parse_step(f, k, path, i) for i, (f, k) in enumerate(zip(fns, kwargs,
                                                                             strict=True)))
    raw_labels = data.get("labels")
    labels: tuple[int, ...] | None = None
    if raw_labels is not None:
        if not isinstance(raw_labels, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw_labels):
            raise InputError(path, f"'labels' must list positive integer labels, got "
                             f"{raw_labels!r}")
        labels = tuple(sorted(raw_labels))
        outside = sorted({v for step in steps for v in step} - set(labels))
        if outside:
            raise InputError(path, f"steps use labels {outside} that are not in 'labels' "
                             f"{list(labels)}")
    return PostprocessingPlan(steps, labels, data)


def plan_to_dict(plan: PostprocessingPlan) -> dict[str, Any]:
    """The JSON content of ``plan``: its record with the steps and labels written over it."""
    # as nnU-Net: the all-foreground step names a list of labels, a per-class step one label
    steps = [{"labels_or_regions": list(g) if plan.labels is None or len(g) > 1
              or g == plan.labels else g[0]} for g in plan.steps]
    data = {**plan.record, "format": FORMAT, "connectivity": CONNECTIVITY,
            "postprocessing_fns": [LCC_FUNCTION] * len(plan.steps),
            "postprocessing_kwargs": steps}
    if plan.labels is not None:
        data["labels"] = list(plan.labels)
    return data


def write_plan(plan: PostprocessingPlan, path: str | os.PathLike[str]) -> Path:
    """Write ``plan`` as strict JSON (NaN as ``null``) to ``path``, atomically."""
    path = Path(path)
    text = json.dumps(nan_to_none(plan_to_dict(plan)), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return path
