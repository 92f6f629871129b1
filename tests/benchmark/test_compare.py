"""The demo's side-by-side comparison: the table, and a real comparison of two tiny runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoken.benchmark.compare import RunComparison, compare_runs, comparison_table


def test_table_ratios_are_to_the_last_row() -> None:
    rows = [RunComparison("tok", 2_000_000, 80, 0.61, 50.0, 300.0, 2.5, 0.9),
            RunComparison("dense", 1_000_000, 200, 0.7, 100.0, 600.0)]
    table = comparison_table(rows).splitlines()
    assert table[2] == "| `tok` | 2.00 | 80 | 0.6100 | 2.50 | 0.900 | 50 | 300 | 0.50 | 0.50 |"
    assert table[3].startswith("| `dense` (baseline) |") and table[3].endswith("| 1.00 | 1.00 |")
    assert "| 0.7000 | – | – |" in table[3]  # no HD95 / NSD in its summary
    no_memory = [RunComparison("a", 1, 1, 0.5, 10.0, None), rows[1]]
    assert comparison_table(no_memory).splitlines()[2].endswith("| – | 0.10 | – |")


def test_a_run_that_trained_past_its_best_checkpoint_says_so() -> None:
    best = RunComparison("run", 1, 1000, 0.8, 10.0, None, trained_steps=1350)
    done = RunComparison("done", 1, 4000, 0.8, 10.0, None, trained_steps=4000)
    table = comparison_table([best, done]).splitlines()
    assert "| 1000 of 1350 | 0.8000 |" in table[2] and "| 4000 | 0.8000 |" in table[3]


@pytest.mark.slow
def test_compare_two_trained_runs(tmp_path: Path) -> None:
    import torch

    from medtoken.data.synthetic import make_synthetic_dataset
    from medtoken.train.config import TrainConfig
    from medtoken.train.fit import fit

    data = make_synthetic_dataset(tmp_path / "d", num_cases=5, seed=1)
    runs = []
    for name, channels in (("small", [4, 8]), ("wide", [8, 16])):
        cfg = TrainConfig(data=str(data), model="unet3d", roi_size=(16, 16, 16), batch_size=1,
                          max_steps=2, steps_per_epoch=2, val_every=1)
        result = fit(cfg, tmp_path / name, {"channels": channels}, device="cpu")
        runs.append((name, result.run_dir, result.steps_done + 3))  # as if it trained on
    rows = compare_runs(runs, data, torch.device("cpu"), cases=2)
    assert [r.name for r in rows] == ["small", "wide"] and rows[0].params < rows[1].params
    for r in rows:
        assert (r.steps, r.trained_steps) == (2, 5) and 0.0 <= r.dice <= 1.0 and r.case_ms > 0
        assert r.peak_mem_mb is not None and r.peak_mem_mb > 0


def test_write_comparison_writes_table_records_and_picture(tmp_path: Path) -> None:
    import json

    from medtoken.benchmark.compare import write_comparison
    from tests.plots.test_charts import assert_real_png

    rows = [RunComparison("tok", 2_000_000, 80, 0.61, 50.0, 300.0),
            RunComparison("dense", 1_000_000, 200, float("nan"), 100.0, 600.0)]
    table, records, picture = write_comparison(rows, tmp_path / "out", title="pair")
    assert table.read_text().startswith("# pair\n\n| model |")
    assert json.loads(records.read_text())[1] == {
        "name": "dense", "params": 1_000_000, "steps": 200, "dice": None, "case_ms": 100.0,
        "peak_mem_mb": 600.0, "hd95_mm": None, "nsd": None, "trained_steps": None}
    assert_real_png(picture)
