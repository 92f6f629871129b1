"""``medtoken benchmark`` end to end on tiny models (in-process; no timed assertions)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from medtoken.cli.main import main

TINY = "unet3d:channels=[4,8],num_res_units=1"
TINY_BASE = "unet3d:channels=[8,16],num_res_units=1"
FIELDS = ("model", "spec", "mode", "input_size", "batch_size", "device", "device_name",
          "torch_version", "dtype", "threads", "latency_ms", "throughput_per_s", "peak_mem_mb",
          "gflops", "flop_counter", "params", "speedup_vs_baseline", "memory_vs_baseline",
          "warmup", "repeats", "amp", "git_commit", "cpu_model", "hostname", "command")
QUICK = ["--repeats", "2", "--warmup", "1", "--memory", "inprocess", "--threads", "1"]


def _run(out: Path, *argv: str) -> list[dict[str, Any]]:
    assert main(["benchmark", *argv, *QUICK, "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def _check_png(path: Path) -> None:
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2


def test_infer_with_baseline_writes_every_file(tmp_path: Path) -> None:
    records = _run(tmp_path, "--models", TINY, "--baseline", TINY_BASE,
                   "--input-size", "2,1,16,16,16")
    assert [r["spec"] for r in records] == ["unet3d:channels=[4, 8],num_res_units=1",
                                            "unet3d:channels=[8, 16],num_res_units=1"]
    model, base = records
    for field in FIELDS:
        assert field in model, field
    assert model["mode"] == "infer" and model["input_size"] == [2, 1, 16, 16, 16]
    assert model["batch_size"] == 2 and model["threads"] == 1 and model["dtype"] == "float32"
    assert base["is_baseline"] and not model["is_baseline"]
    lat = model["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["max"] and lat["n"] == 2
    assert model["speedup_vs_baseline"] == pytest.approx(
        base["latency_ms"]["median"] / lat["median"])
    if base["peak_mem_mb"]:  # the in-process estimate may be 0 for a model this small
        assert model["memory_vs_baseline"] == pytest.approx(
            model["peak_mem_mb"] / base["peak_mem_mb"])
    assert base["speedup_vs_baseline"] == pytest.approx(1.0)
    assert model["throughput_per_s"] == pytest.approx(2 / (lat["median"] / 1e3))
    assert 0 < model["gflops"] < base["gflops"] and 0 < model["params"] < base["params"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 2 and float(rows[0]["latency_ms_median"]) == pytest.approx(lat["median"])
    md = (tmp_path / "results.md").read_text()
    assert "--baseline" in md and model["hostname"] in md and md.count("| `unet3d") == 2
    _check_png(tmp_path / "chart.png")


def test_train_mode_without_baseline(tmp_path: Path) -> None:
    records = _run(tmp_path, "--models", TINY, "--input-size", "2,2,16,16,16", "--mode", "train")
    (record,) = records
    assert record["mode"] == "train" and record["input_size"][1] == 2
    assert record["speedup_vs_baseline"] is None and record["memory_vs_baseline"] is None
    assert record["latency_ms"]["median"] > 0
    _check_png(tmp_path / "chart.png")


@pytest.mark.slow
def test_compile_both_times_eager_and_compiled_side_by_side(tmp_path: Path,
                                                           monkeypatch) -> None:
    import functools

    from medtoken.benchmark import workload
    from medtoken.utils.compile import maybe_compile

    traced = functools.partial(maybe_compile, backend="eager")  # dynamo without inductor: fast
    monkeypatch.setattr(workload, "maybe_compile", traced)
    argv = ["benchmark", "--models", TINY, "--baseline", TINY_BASE, "--input-size",
            "1,1,16,16,16", "--compile", "both", "--repeats", "1", "--warmup", "0",
            "--memory", "off", "--threads", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert [(r["spec"] == TINY_BASE.replace("[8,16]", "[8, 16]"), r["compiled"])
            for r in records] == [(False, False), (False, True), (True, False), (True, True)]
    assert [r["is_baseline"] for r in records] == [False, False, True, False]  # the eager one
    assert [r["compile_s"] is None for r in records] == [True, False, True, False]
    assert records[1]["label"].endswith(" [compiled]")
    md = (tmp_path / "results.md").read_text()
    assert "--compile both" in md and "compile s |" in md


def test_amp_both_times_float32_and_autocast_side_by_side(tmp_path: Path) -> None:
    records = _run(tmp_path, "--models", TINY, "--baseline", TINY_BASE, "--input-size",
                   "1,1,16,16,16", "--mode", "train", "--amp", "both")
    assert [(r["spec"] == TINY_BASE.replace("[8,16]", "[8, 16]"), r["amp"])
            for r in records] == [(False, False), (False, True), (True, False), (True, True)]
    assert [r["is_baseline"] for r in records] == [False, False, True, False]  # the float32 one
    assert [r["dtype"] for r in records[:2]] == ["float32", "bfloat16 autocast"]
    assert records[1]["label"].endswith(" [amp]") and records[1]["speedup_vs_baseline"] > 0
    assert [r["variant"] for r in records[:2]] == ["", " [amp]"]  # what sweep charts group by
    md = (tmp_path / "results.md").read_text()
    assert "--amp both" in md and "dtype float32 and bfloat16 autocast" in md


def test_batch_size_sweep_writes_one_record_per_value_and_a_line_plot(tmp_path: Path) -> None:
    records = _run(tmp_path, "--models", TINY, "--baseline", TINY_BASE,
                   "--input-size", "1,1,16,16,16", "--sweep", "batch_size=1,2")
    assert len(records) == 4
    assert [(r["sweep_value"], r["batch_size"]) for r in records] == [(1, 1), (1, 1), (2, 2),
                                                                      (2, 2)]
    for r in records:
        base = next(b for b in records if b["is_baseline"] and b["point"] == r["point"])
        assert r["speedup_vs_baseline"] == pytest.approx(
            base["latency_ms"]["median"] / r["latency_ms"]["median"])
    _check_png(tmp_path / "sweep.png")


def test_model_key_sweep_leaves_the_baseline_alone(tmp_path: Path) -> None:
    records = _run(tmp_path, "--models", TINY, "--baseline", TINY_BASE,
                   "--input-size", "1,1,16,16,16", "--sweep", "num_res_units=0,1")
    swept = [r for r in records if not r["is_baseline"]]
    assert [r["spec"] for r in swept] == ["unet3d:channels=[4, 8],num_res_units=0",
                                          "unet3d:channels=[4, 8],num_res_units=1"]
    assert {r["spec"] for r in records if r["is_baseline"]} == {
        "unet3d:channels=[8, 16],num_res_units=1"}
    assert swept[0]["params"] < swept[1]["params"]


def test_roi_size_sweep_changes_the_input_of_every_model(tmp_path: Path) -> None:
    records = _run(tmp_path, "--models", "mstm_layer_test,mstm_layer_test:mstm.mlstm_mode=parallel",
                   "--input-size", "1,1,8,8", "--sweep", "roi_size=[8,8],[8,16]")
    assert [r["input_size"] for r in records] == [[1, 1, 8, 8]] * 2 + [[1, 1, 8, 16]] * 2
    assert all(r["config"]["roi_size"] == r["input_size"][2:] for r in records)
    first, second = records[0], records[2]  # chunkwise at 64 and 128 tokens
    assert second["gflops"] == pytest.approx(2 * first["gflops"], rel=0.25)
    _check_png(tmp_path / "sweep.png")


def test_roi_size_sweep_must_match_the_input_dims(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["benchmark", "--models", "mstm_layer_test", "--input-size", "1,1,8,8",
                 "--sweep", "roi_size=[8,8,8]", *QUICK, "--out", str(tmp_path)])
    assert code == 2 and "has 3 dims but --input-size has 2" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "unet3d:chanels=[4,8]"], "unknown key 'chanels'; valid keys: channels"),
    (["--models", "nosuchmodel"], "unknown model preset 'nosuchmodel'"),
    (["--models", TINY, "--sweep", "nosuchkey=1,2"], "unknown key 'nosuchkey'"),
    (["--models", "unet3d:channels=[4,8,16]"], "divisible by 4x4x4"),
])
def test_bad_specs_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    size = "1,1,18,18,18" if "[4,8,16]" in argv[1] else "1,1,16,16,16"
    code = main(["benchmark", *argv, "--input-size", size, *QUICK, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_volume_mode_times_whole_cases(tmp_path: Path) -> None:
    pytest.importorskip("medtoken.inference.sliding_window")
    synthetic = pytest.importorskip("medtoken.data.synthetic")
    data = synthetic.make_synthetic_dataset(tmp_path / "data", spatial_dims=2, num_cases=3,
                                            layout="folder2d")
    records = _run(tmp_path / "out", "--models", "unet2d:channels=[4,8]",
                   "--input-size", "2,1,32,32", "--mode", "volume", "--data", str(data),
                   "--overlap", "0.25")
    (record,) = records
    assert record["mode"] == "volume" and record["overlap"] == 0.25
    assert record["sw_batch_size"] == 2 and record["num_cases"] == 2
    assert record["throughput_per_s"] == pytest.approx(1e3 / record["latency_ms"]["median"])
    assert record["stitching"] == "slab" and record["labels_match_baseline"] is None
    assert [c["case_id"] for c in record["cases"]] == record["case_ids"]


@pytest.mark.slow
def test_isolated_memory_runs_each_model_in_a_fresh_process(tmp_path: Path) -> None:
    assert main(["benchmark", "--models", TINY, "--baseline", TINY_BASE, "--input-size",
                 "1,1,16,16,16", "--repeats", "2", "--warmup", "1", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert all(r["peak_mem_mb"] > 0 and "fresh process" in r["memory_method"] for r in records)
    assert records[0]["memory_vs_baseline"] == pytest.approx(
        records[0]["peak_mem_mb"] / records[1]["peak_mem_mb"])


@pytest.mark.slow
@pytest.mark.realdata
def test_volume_mode_on_hippocampus(tmp_path: Path) -> None:
    from tests.conftest import shared_dataset

    data = shared_dataset("msd_hippocampus")
    (record,) = _run(tmp_path, "--models", "unet3d:channels=[4,8],num_classes=3",
                     "--input-size", "2,1,32,48,32", "--mode", "volume", "--data", str(data))
    assert record["num_cases"] == 2 and len(record["case_ids"]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["infer", "train"])
def test_cuda_amp_smoke(tmp_path: Path, mode: str) -> None:
    (record,) = _run(tmp_path, "--models", TINY, "--input-size", "2,1,16,16,16", "--mode", mode,
                     "--device", "cuda", "--amp")
    assert record["dtype"] == "float16 autocast" and record["peak_mem_mb"] > 0
    assert record["device_name"] and record["cuda_version"]
