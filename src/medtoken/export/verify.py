"""Check an exported model against PyTorch: agreement on random and real windows, and speed.

Every check runs the eager model and the exported one on the same input ``(b, C, *roi_size)``
and measures the largest absolute logit difference and the fraction of voxels whose argmax label
differs. An export passes when, over all checks, the difference is at most ``atol`` (1e-4) and the
disagreement at most ``max_disagreement`` (1e-4, i.e. 0.01% of the voxels).
:func:`time_against_eager` times both on one input, interleaved, with a fixed number of threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "Check",
    "VerifyReport",
    "case_window",
    "compare",
    "random_windows",
    "run_checks",
    "time_against_eager",
]

ATOL = 1e-4
MAX_DISAGREEMENT = 1e-4  # fraction of voxels (0.01%)
_RANDOM_SEED = 1234  # verification draws differ from the export example's (seed 0)
WARMUP = 3  # untimed calls of each runtime before timing


@dataclass(frozen=True)
class Check:
    """One comparison: its input, the largest absolute logit difference, label disagreement."""

    name: str
    batch_size: int
    max_abs_diff: float
    label_disagreement: float


@dataclass
class VerifyReport:
    """All checks of one export, what was skipped and why, and the verdict."""

    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    atol: float = ATOL
    max_disagreement: float = MAX_DISAGREEMENT

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=0.0)

    @property
    def label_disagreement(self) -> float:
        return max((c.label_disagreement for c in self.checks), default=0.0)

    @property
    def passed(self) -> bool:
        return (bool(self.checks) and not self.errors and self.max_abs_diff <= self.atol
                and self.label_disagreement <= self.max_disagreement)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the sidecar."""
        return {"passed": self.passed, "max_abs_diff": self.max_abs_diff,
                "label_disagreement": self.label_disagreement, "atol": self.atol,
                "max_label_disagreement": self.max_disagreement,
                "checks": [asdict(c) for c in self.checks], "skipped": self.skipped,
                "errors": self.errors}


def compare(reference: torch.Tensor, output: torch.Tensor) -> tuple[float, float]:
    """Max absolute difference and label-disagreement fraction of two ``(b, K, *S)`` logits."""
    if reference.shape != output.shape:
        raise ValueError(f"exported output shape {tuple(output.shape)} differs from PyTorch's "
                         f"{tuple(reference.shape)}")
    reference, output = reference.detach().float(), output.detach().float()
    diff = float((reference - output).abs().max())
    if not np.isfinite(diff):
        diff = float("inf")
    labels_differ = reference.argmax(1) != output.argmax(1)  # (b, *S)
    return diff, float(labels_differ.float().mean())


def random_windows(in_channels: int, roi_size: tuple[int, ...],
                   batch_sizes: tuple[int, ...]) -> list[tuple[str, torch.Tensor]]:
    """Fresh standard-normal inputs ``(b, C, *roi_size)`` (normalised-image scale), seeded."""
    generator = torch.Generator().manual_seed(_RANDOM_SEED)
    return [(f"random batch {b}", torch.randn(b, in_channels, *roi_size, generator=generator))
            for b in batch_sizes]


def _centre_crop(image: np.ndarray, centre: tuple[int, ...],
                 roi_size: tuple[int, ...]) -> np.ndarray:
    """The ``roi_size`` window of ``image (C, *S)`` around ``centre``, zero-padded at borders."""
    out = np.zeros((image.shape[0], *roi_size), dtype=np.float32)  # (C, *roi)
    src, dst = [slice(None)], [slice(None)]
    for c, r, n in zip(centre, roi_size, image.shape[1:], strict=True):
        start = min(max(c - r // 2, 0), max(n - r, 0))  # inside the image when it fits
        stop = min(start + r, n)
        src.append(slice(start, stop))
        dst.append(slice(0, stop - start))
    out[tuple(dst)] = image[tuple(src)]
    return out


def case_window(dataset: dict[str, Any],
                roi_size: tuple[int, ...]) -> tuple[str, torch.Tensor] | str:
    """A normalised window ``(1, C, *roi_size)`` of the first case of the training dataset.

    The window is centred on the case's foreground (its image centre without a label).

    Returns:
        ``(name, window)``, or the reason why no window could be cut (a string).
    """
    from medtoken.data.datasets import load_dataset
    from medtoken.data.io import read_image, read_label
    from medtoken.data.preprocess import NormalizationPlan, normalize
    from medtoken.utils.errors import InputError

    root = dataset.get("root")
    if not root or not Path(root).is_dir():
        return f"real case window: training dataset folder {root!r} not found"
    try:
        case = load_dataset(root).cases[0]
        image, _ = read_image(case.images)
        plan = NormalizationPlan.from_dict(dataset["normalization"])
        image = normalize(image, plan)  # (C, *S)
        centre = tuple(s // 2 for s in image.shape[1:])
        if case.label is not None:
            foreground = np.argwhere(read_label(case.label)[0] > 0)  # (F, d)
            if len(foreground):
                centre = tuple(int(v) for v in foreground.mean(0).round())
    except (InputError, ValueError, IndexError, KeyError) as err:
        return f"real case window: cannot read the training dataset at {root}: {err}"
    window = _centre_crop(image, centre, roi_size)  # (C, *roi)
    return f"{case.case_id} window", torch.from_numpy(window)[None]


def run_checks(model: torch.nn.Module, exported: Callable[[torch.Tensor], torch.Tensor],
               inputs: list[tuple[str, torch.Tensor]], skipped: list[str]) -> VerifyReport:
    """Compare ``model`` and ``exported`` on every named input ``(b, C, *roi)``.

    An exported model that fails to run on an input or returns the wrong shape (e.g. a batch size
    baked into the graph) fails that check with an infinite difference; the error's first line
    is kept.
    """
    report = VerifyReport(skipped=list(skipped))
    for name, x in inputs:
        with torch.inference_mode():
            reference = model(x)
        try:
            diff, disagreement = compare(reference, exported(x))
        except Exception as err:  # onnxruntime / TorchScript raise their own types
            first = (str(err).strip().splitlines() or [""])[0]
            report.errors.append(f"{name}: {type(err).__name__}: {first[:300]}")
            diff, disagreement = float("inf"), 1.0
        report.checks.append(Check(name, int(x.shape[0]), diff, disagreement))
    return report


def time_against_eager(model: torch.nn.Module, exported: Callable[[torch.Tensor], torch.Tensor],
                       x: torch.Tensor, repeats: int, threads: int) -> dict[str, Any]:
    """Median latency of eager PyTorch and of the exported model on ``x (b, C, *roi)``.

    Both run ``WARMUP`` untimed calls, then ``repeats`` timed calls interleaved (eager, exported,
    eager, ...), so that machine drift hits both alike. PyTorch runs with ``threads`` intra-op
    threads; the exported runtime must have been created with the same number.

    Returns:
        ``{"repeats", "threads", "batch_size", "eager_ms", "exported_ms", "ratio"}`` with
        medians in milliseconds and ``ratio = exported_ms / eager_ms`` (below 1: faster).
    """
    from medtoken.utils.timing import summarize, time_interleaved

    def eager(_: int) -> None:
        with torch.inference_mode():
            model(x)

    def run_exported(_: int) -> None:
        exported(x)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = time_interleaved({"eager": eager, "exported": run_exported},
                                 warmup=WARMUP, repeats=repeats, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(previous)
    eager_ms = summarize(times["eager"])["median"]
    exported_ms = summarize(times["exported"])["median"]
    return {"repeats": repeats, "threads": threads, "batch_size": int(x.shape[0]),
            "eager_ms": eager_ms, "exported_ms": exported_ms, "ratio": exported_ms / eager_ms}
