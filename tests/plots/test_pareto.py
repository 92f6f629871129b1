"""Dice against throughput: pairing results with summaries, the front, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medtoken.cli.main import main
from medtoken.plots.pareto import (
    ParetoPoint,
    default_axes,
    load_pareto_points,
    pareto_front,
    plot_pareto,
    summary_scores,
)
from medtoken.utils.errors import InputError
from tests.plots.test_charts import assert_real_png


def _files(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    records = [
        {"model": "scd_btcv", "spec": "scd_btcv", "label": "scd_btcv", "mode": "infer",
         "throughput_per_s": 400.0},
        {"model": "unetr_btcv", "spec": "unetr_btcv", "label": "unetr_btcv", "mode": "infer",
         "throughput_per_s": 10.0},
        {"model": "unetr_btcv", "spec": "unetr_btcv", "label": "unetr_btcv", "mode": "train",
         "throughput_per_s": 3.0},
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(records))
    summaries = {}
    for name, dice in (("scd_btcv", 0.80), ("unetr_btcv", 0.82)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"foreground_mean": {"Dice": dice}}))
        summaries[name] = str(path)
    return results, summaries


def test_load_points_pairs_names_with_records(tmp_path: Path) -> None:
    results, summaries = _files(tmp_path)
    points = load_pareto_points(results, summaries, mode="infer")
    assert points == [ParetoPoint("scd_btcv", 400.0, 0.80, "infer"),
                      ParetoPoint("unetr_btcv", 10.0, 0.82, "infer")]


def test_names_match_specs_however_they_are_spaced(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"model": "unet3d", "spec": "unet3d:channels=[4, 8]",
                                    "label": "unet3d:channels=[4, 8]", "mode": "infer",
                                    "throughput_per_s": 5.0}]))
    summary = tmp_path / "s.json"
    summary.write_text(json.dumps({"foreground_mean": {"Dice": 0.5}}))
    (point,) = load_pareto_points(results, {"unet3d:channels=[4,8]": summary})
    assert point.throughput == 5.0 and point.dice == 0.5


def test_ambiguous_name_needs_a_mode(tmp_path: Path) -> None:
    results, summaries = _files(tmp_path)
    with pytest.raises(InputError, match="matches 2 records"):
        load_pareto_points(results, summaries)


def test_unknown_name_and_bad_summary(tmp_path: Path) -> None:
    results, summaries = _files(tmp_path)
    with pytest.raises(InputError, match="no record for 'nope'"):
        load_pareto_points(results, {"nope": summaries["scd_btcv"]}, mode="infer")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match=r"foreground_mean\.Dice"):
        load_pareto_points(results, {"scd_btcv": str(bad)}, mode="infer")


def test_pareto_front_drops_dominated_points() -> None:
    points = [ParetoPoint("a", 10, 0.9), ParetoPoint("b", 20, 0.8), ParetoPoint("c", 5, 0.7),
              ParetoPoint("d", 20, 0.85)]
    assert [p.name for p in pareto_front(points)] == ["a", "d"]


def test_cli_plot_pareto(tmp_path: Path) -> None:
    """Covers plot_pareto too, with a log throughput axis (400 vs 10 items/s)."""
    results, summaries = _files(tmp_path)
    argv = ["plot", "pareto", "--results", str(results), "--mode", "infer", "--summaries",
            *[f"{k}={v}" for k, v in summaries.items()], "-o", str(tmp_path / "p.png")]
    assert main(argv) == 0
    assert_real_png(tmp_path / "p.png")


def test_latency_and_memory_fronts_prefer_lower_costs() -> None:
    points = [ParetoPoint("fast", 4.0, 0.80, "volume", 250.0, 900.0),
              ParetoPoint("slow", 1.0, 0.85, "volume", 1000.0, 300.0),
              ParetoPoint("worse", 0.5, 0.70, "volume", 2000.0, 950.0)]
    assert [p.name for p in pareto_front(points, "latency")] == ["fast", "slow"]
    assert [p.name for p in pareto_front(points, "memory")] == ["slow"]
    assert default_axes(points) == ("latency", "memory")
    assert default_axes([ParetoPoint("a", 1.0, 0.5)]) == ("throughput",)


def test_volume_records_give_latency_and_memory(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"model": "unet3d", "spec": "unet3d", "label": "unet3d",
                                    "mode": "volume", "throughput_per_s": 2.0,
                                    "latency_ms": {"median": 500.0}, "peak_mem_mb": 64.0}]))
    summary = tmp_path / "s.json"
    summary.write_text(json.dumps({"foreground_mean": {"Dice": 0.9}}))
    (point,) = load_pareto_points(results, {"unet3d": summary})
    assert (point.latency_ms, point.peak_mem_mb, point.mode) == (500.0, 64.0, "volume")


def test_a_panel_without_values_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no memory measured for a"):
        plot_pareto([ParetoPoint("a", 1.0, 0.5, "infer", 10.0, None)], tmp_path / "p.png",
                    axes=("latency", "memory"))
    assert not (tmp_path / "p.png").exists()


def test_cli_plot_pareto_one_panel_per_axis(tmp_path: Path) -> None:
    results, summaries = _files(tmp_path)
    records = json.loads(results.read_text())
    for r in records:
        r.update(latency_ms={"median": 1e3 / r["throughput_per_s"]}, peak_mem_mb=100.0)
    results.write_text(json.dumps(records))

    def plot(out: Path, *axes: str) -> int:
        return main(["plot", "pareto", "--results", str(results), "--mode", "infer", "--x",
                     *axes, "--title", "t", "--summaries",
                     *[f"{k}={v}" for k, v in summaries.items()], "-o", str(out)])

    assert plot(tmp_path / "two.png", "latency", "memory") == 0
    assert plot(tmp_path / "one.png", "latency") == 0
    assert_real_png(tmp_path / "two.png")
    assert _width(tmp_path / "two.png") == 2 * _width(tmp_path / "one.png")


def _width(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        return image.width


def test_summary_scores_read_dice_hd95_and_nsd(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"foreground_mean": {"Dice": None, "HD95_mm": 2.5, "NSD": None}}))
    scores = summary_scores(path)
    assert math.isnan(scores.dice) and scores.hd95_mm == 2.5 and scores.nsd is None
    path.write_text(json.dumps({"foreground_mean": {"Dice": 0.8}}))
    assert summary_scores(path) == (0.8, None, None)
    path.write_text(json.dumps({"foreground_mean": 3}))
    with pytest.raises(InputError, match=r"foreground_mean\.Dice"):
        summary_scores(path)
