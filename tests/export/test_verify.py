"""Verification measures: logit difference, label disagreement, verdict, real case windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtoken.data.datasets import load_dataset
from medtoken.data.preprocess import plan_normalization
from medtoken.export.verify import (
    Check,
    VerifyReport,
    case_window,
    compare,
    random_windows,
    run_checks,
    time_against_eager,
)


def test_compare_measures_diff_and_label_fraction() -> None:
    a = torch.zeros(1, 2, 4, 5)
    a[:, 1] = 1.0  # every voxel label 1
    b = a.clone()
    b[0, 0, 0, :2] = 3.0  # 2 of 20 voxels flip to label 0
    diff, disagreement = compare(a, b)
    assert diff == pytest.approx(3.0) and disagreement == pytest.approx(0.1)
    assert compare(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        compare(a, a[:, :1])


def test_non_finite_output_fails() -> None:
    a = torch.zeros(1, 2, 3)
    diff, _ = compare(a, torch.full_like(a, float("nan")))
    assert diff == float("inf")
    assert not VerifyReport([Check("x", 1, diff, 0.0)]).passed


@pytest.mark.parametrize(("diff", "disagreement", "passed"), [
    (1e-5, 0.0, True), (1e-4, 1e-4, True), (2e-4, 0.0, False), (0.0, 2e-4, False)])
def test_verdict_uses_both_limits(diff: float, disagreement: float, passed: bool) -> None:
    report = VerifyReport([Check("a", 1, 0.0, 0.0), Check("b", 1, diff, disagreement)])
    assert report.passed is passed
    assert report.to_dict()["max_abs_diff"] == diff
    assert not VerifyReport().passed  # no check, no pass


def test_random_windows_are_seeded_and_shaped() -> None:
    first = random_windows(2, (4, 6), (1, 3))
    again = random_windows(2, (4, 6), (1, 3))
    assert [x.shape for _, x in first] == [(1, 2, 4, 6), (3, 2, 4, 6)]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(first, again, strict=True))


def test_case_window_without_dataset_says_why() -> None:
    reason = case_window({"root": "/nonexistent/data"}, (8, 8, 8))
    assert isinstance(reason, str) and "not found" in reason
    assert "not found" in str(case_window({}, (8, 8, 8)))


@pytest.mark.parametrize("roi", [(16, 16, 16), (64, 64, 64)])  # inside / larger than the case
def test_case_window_is_normalised_crop(datasets: dict[int, Path], roi: tuple[int, ...]) -> None:
    info = load_dataset(datasets[3])
    facts = {"root": str(info.root), "normalization": plan_normalization(info).to_dict()}
    result = case_window(facts, roi)
    assert not isinstance(result, str)
    name, window = result
    assert name.endswith("window") and window.shape == (1, 1, *roi)
    inside = window[window != 0]
    assert inside.numel() > 0 and abs(float(inside.mean())) < 2.0  # z-scored intensities


def test_run_checks_and_timing_on_a_copy() -> None:
    model = torch.nn.Conv2d(1, 2, 3, padding=1).eval()
    inputs = random_windows(1, (8, 8), (1, 2))
    report = run_checks(model, lambda x: model(x) + 1e-6, inputs, ["real window: none"])
    assert report.passed and report.skipped == ["real window: none"]
    assert [c.batch_size for c in report.checks] == [1, 2]
    assert 0 < report.max_abs_diff < 1e-5
    timing = time_against_eager(model, model, inputs[0][1], repeats=3, threads=1)
    assert timing["repeats"] == 3 and timing["eager_ms"] > 0
    assert timing["ratio"] == pytest.approx(timing["exported_ms"] / timing["eager_ms"])
    assert np.isfinite(timing["ratio"])


def test_a_crashing_or_misshapen_export_fails_its_check() -> None:
    model = torch.nn.Conv2d(1, 2, 1).eval()
    inputs = random_windows(1, (4, 4), (1, 3))

    def baked(x: torch.Tensor) -> torch.Tensor:  # a graph that only knows batch 3
        if x.shape[0] != 3:
            return model(x.expand(3, -1, -1, -1))
        return model(x)

    report = run_checks(model, baked, inputs, [])
    assert not report.passed and report.checks[1].max_abs_diff < 1e-6
    assert report.checks[0].max_abs_diff == float("inf")
    assert report.errors == ["random batch 1: ValueError: exported output shape (3, 2, 4, 4) "
                             "differs from PyTorch's (1, 2, 4, 4)"]
