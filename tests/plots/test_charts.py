"""Benchmark charts: written, non-empty, not one colour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medtoken.plots.charts import plot_benchmark_chart, plot_sweep


def assert_real_png(path: Path) -> None:
    """The file is a PNG of a sensible size with more than background and one colour."""
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2


def _records(sweep: bool) -> list[dict[str, Any]]:
    rows = []
    for point, value in enumerate([1, 2, 4] if sweep else [None]):
        for spec, median, base in (("fast", 10.0 * (point + 1), False), ("slow", 30.0, True)):
            rows.append({"label": f"{spec} [{value}]", "base_spec": spec, "point": point,
                         "is_baseline": base, "mode": "infer", "device_name": "cpu",
                         "sweep_key": "batch_size" if sweep else None, "sweep_value": value,
                         "latency_ms": {"median": median, "min": median - 1, "max": median + 1},
                         "peak_mem_mb": 100.0 if base else 40.0 + point,
                         "speedup_vs_baseline": 30.0 / median,
                         "memory_vs_baseline": (40.0 + point) / 100.0 if not base else 1.0})
    return rows


@pytest.mark.parametrize("ratios", [True, False])
def test_benchmark_chart(tmp_path: Path, ratios: bool) -> None:
    records = _records(sweep=False)
    if not ratios:
        for r in records:
            r["speedup_vs_baseline"] = r["memory_vs_baseline"] = None
            r["peak_mem_mb"] = None
    out = plot_benchmark_chart(records, tmp_path / "chart.png")
    assert out == tmp_path / "chart.png"
    assert_real_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]  # no temporary left behind


@pytest.mark.parametrize("values", [[1, 2, 4], ["chunkwise", "parallel", "recurrent"]])
def test_sweep_plot_numeric_and_categorical(tmp_path: Path, values: list[Any]) -> None:
    records = _records(sweep=True)
    for r in records:
        r["sweep_value"] = values[r["point"]]
    assert_real_png(plot_sweep(records, tmp_path / "sweep.png"))


def test_sweep_series_keeps_compiled_and_amp_variants_apart() -> None:
    from medtoken.plots.charts import sweep_series

    records = [{"base_spec": "unet3d", "point": p, "variant": variant}
               for p in (1, 0) for variant in ("", " [amp]")]
    series = sweep_series(records)
    assert list(series) == ["unet3d", "unet3d [amp]"]
    assert [r["point"] for r in series["unet3d [amp]"]] == [0, 1]
