"""Baseline ratios, CSV flattening and the Markdown page, on hand-made records."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from medtoken.benchmark.report import (
    add_baseline_ratios,
    cpu_model_name,
    csv_text,
    markdown_report,
)


def _record(spec: str, median: float, mem: float | None, point: int = 0,
            baseline: bool = False) -> dict[str, Any]:
    return {"model": spec.split(":")[0], "spec": spec, "label": spec, "point": point,
            "is_baseline": baseline, "mode": "infer", "input_size": [1, 1, 8, 8, 8],
            "latency_ms": {"median": median, "min": median, "max": median}, "peak_mem_mb": mem,
            "throughput_per_s": 1e3 / median, "gflops": 1.0, "params": 1000,
            "tokens": {"tokens_per_stage": [8, 4]}, "case_ids": ["x"]}


def test_ratios_are_baseline_over_model_for_speed_and_model_over_baseline_for_memory() -> None:
    records = [_record("fast", 10.0, 50.0), _record("base", 40.0, 200.0, baseline=True)]
    add_baseline_ratios(records)
    assert records[0]["speedup_vs_baseline"] == pytest.approx(4.0)
    assert records[0]["memory_vs_baseline"] == pytest.approx(0.25)
    assert records[1]["speedup_vs_baseline"] == pytest.approx(1.0)
    assert records[0]["baseline"] == "base"


def test_ratios_use_the_baseline_of_the_same_point() -> None:
    records = [_record("m", 10.0, 10.0, point=0), _record("b", 20.0, 10.0, 0, baseline=True),
               _record("m", 10.0, 10.0, point=1), _record("b", 50.0, 40.0, 1, baseline=True)]
    add_baseline_ratios(records)
    assert [r["speedup_vs_baseline"] for r in records[::2]] == [2.0, 5.0]
    assert [r["memory_vs_baseline"] for r in records[::2]] == [1.0, 0.25]


def test_no_baseline_gives_none_ratios_and_missing_memory_too() -> None:
    records = [_record("a", 10.0, None), _record("b", 20.0, None, baseline=False)]
    add_baseline_ratios(records)
    assert all(r["speedup_vs_baseline"] is None and r["memory_vs_baseline"] is None
               for r in records)
    records = [_record("a", 10.0, None), _record("b", 20.0, None, baseline=True)]
    add_baseline_ratios(records)
    assert records[0]["speedup_vs_baseline"] == 2.0 and records[0]["memory_vs_baseline"] is None


def test_csv_flattens_latency_and_encodes_nested_values() -> None:
    records = [_record("a", 10.0, 5.0)]
    rows = list(csv.DictReader(io.StringIO(csv_text(records))))
    assert rows[0]["latency_ms_median"] == "10.0"
    assert rows[0]["tokens"] == '{"tokens_per_stage": [8, 4]}'
    assert "case_ids" not in rows[0]


def test_markdown_has_machine_command_and_one_row_per_record() -> None:
    records = [_record("a", 10.0, 5.0), _record("b", 20.0, 10.0, baseline=True)]
    add_baseline_ratios(records)
    env = {"date": "2026-01-01T00:00:00+00:00", "hostname": "host", "cpu_model": "cpu",
           "device": "cpu", "device_name": "cpu", "torch_version": "2.x", "medtoken_version": "0",
           "git_commit": "abc", "dtype": "float32", "threads": 2, "warmup": 1, "repeats": 2,
           "flop_counter": "FlopCounterMode", "memory_method": "m"}
    text = markdown_report([{**r, **env} for r in records], "medtoken benchmark --models a")
    assert "medtoken benchmark --models a" in text and "host" in text and "2026-01-01" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2 and "(baseline)" in rows[1] and "| 2.00 | 0.50 |" in rows[0]


def test_cpu_model_name_is_not_empty() -> None:
    assert cpu_model_name()
