"""Interleaved timing order and the summary statistics (no timed assertions)."""

from __future__ import annotations

import pytest
import torch

from medtoken.utils.timing import summarize, time_interleaved


def test_time_interleaved_warms_up_then_alternates() -> None:
    calls: list[tuple[str, int]] = []
    steps = {name: (lambda i, n=name: calls.append((n, i))) for name in ("a", "b")}
    times = time_interleaved(steps, warmup=2, repeats=3, device=torch.device("cpu"))
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1),
                     ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_summarize() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"], s["n"]) == (3.0, 1.0, 5.0, 2.0,
                                                                          4.0, 5)
    assert summarize([7.0])["median"] == 7.0


def test_repeats_must_be_positive() -> None:
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda i: None}, warmup=0, repeats=0, device=torch.device("cpu"))
