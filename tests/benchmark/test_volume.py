"""Volume mode: the memory-time area, generated cases, slab vs full, bad sizes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from medtoken.benchmark.volume import (
    VolumeCase,
    _normalization,
    _proc_rss_mb,
    _read_case,
    memory_time_area,
    parse_volume_size,
)
from medtoken.benchmark.workload import predict_volume_case
from medtoken.cli.main import main
from medtoken.utils.errors import InputError

TINY = "unet3d:channels=[4,8],num_res_units=1,num_classes=4"


def test_area_of_known_traces() -> None:
    # a ramp from 0 to 100 MB over 10 s, then 100 MB for 5 s: 500 + 500 MB*s
    times = [0.0, 2.5, 5.0, 10.0, 12.0, 15.0]
    values = [0.0, 25.0, 50.0, 100.0, 100.0, 100.0]
    assert memory_time_area(times, values) == pytest.approx(1000.0)
    # uneven sampling of a constant: the area is value x duration
    assert memory_time_area([0.0, 0.01, 0.7, 3.0], [64.0] * 4) == pytest.approx(192.0)
    assert memory_time_area([1.0], [5.0]) == 0.0
    with pytest.raises(ValueError):
        memory_time_area([0.0, 1.0], [1.0])


def test_rss_of_a_live_process_and_of_none() -> None:
    assert (_proc_rss_mb(os.getpid()) or 0) > 10
    assert _proc_rss_mb(2**22 + 12345) is None


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("512,512,300", int, (512, 512, 300)), ("64x64", int, (64, 64)),
    ("0.8,0.8,2.5", float, (0.8, 0.8, 2.5))])
def test_parse_volume_size(text: str, kind: type, expected: tuple) -> None:
    assert parse_volume_size(text, "--volume-size", kind) == expected


@pytest.mark.parametrize("text", ["512,512", "512,0,300", "a,b,c", "1,2,3,4", "512.5,2,2"])
def test_bad_volume_size_is_an_input_error(text: str) -> None:
    if text == "512,512":  # 2D is valid on its own; the dims are checked against the window
        assert parse_volume_size(text, "--volume-size") == (512, 512)
        return
    with pytest.raises(InputError, match="--volume-size"):
        parse_volume_size(text, "--volume-size")


@pytest.mark.parametrize("argv", [
    ["--volume-size", "64,0,64"],
    ["--volume-size", "64,64"],  # a 2D size for 3D windows
    ["--volume-size", "64,64,64", "--spacing", "1,1"],
    ["--volume-size", "64,64,64", "--stitching", "slab,tiles"],
    [],  # neither --data nor --volume-size
])
def test_bad_volume_options_are_one_line_errors(argv: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["benchmark", "--models", TINY, "--input-size", "1,1,16,16,16", "--mode",
                 "volume", *argv, "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results.json").exists()


def test_generated_case_is_deterministic() -> None:
    case = VolumeCase("generated00", size=(24, 20, 18), spacing=(0.8, 0.8, 2.5), seed=1)
    a, b = _read_case(case, 1), _read_case(case, 1)
    assert a.shape == (1, 24, 20, 18)
    np.testing.assert_array_equal(a, b)
    assert _read_case(case, 2).shape == (2, 24, 20, 18)
    assert _normalization(case, 1)["schemes"] == ["ct"]


def test_slab_and_full_give_the_same_labels_on_a_generated_case() -> None:
    import torch

    from medtoken.benchmark.spec import resolve_config
    from medtoken.config import parse_spec
    from medtoken.registry import build_model

    model = build_model(resolve_config(parse_spec(TINY), (2, 1, 16, 16, 16)))
    case = VolumeCase("generated00", size=(30, 20, 37), seed=0)
    image, plan = _read_case(case, 1), _normalization(case, 1)
    torch.manual_seed(0)
    full = predict_volume_case(model, image, plan, stitching="full", overlap=0.5)
    slab32 = predict_volume_case(model, image, plan, stitching="slab", overlap=0.5,
                                 accumulate_dtype="float32")
    slab16 = predict_volume_case(model, image, plan, stitching="slab", overlap=0.5)
    assert full.shape == (30, 20, 37) and full.dtype == np.uint8
    assert len(np.unique(full)) > 1  # not a constant: the comparison means something
    np.testing.assert_array_equal(slab32, full)
    assert np.mean(slab16 == full) > 0.99  # float16 accumulation: near-ties may flip


@pytest.mark.slow
def test_volume_mode_end_to_end_on_a_generated_case(tmp_path: Path) -> None:
    assert main(["benchmark", "--models", TINY, "--input-size", "2,1,16,16,16", "--mode",
                 "volume", "--volume-size", "24,20,30", "--spacing", "0.8,0.8,2.5",
                 "--stitching", "slab,full", "--accumulate-dtype", "float32", "--repeats", "2",
                 "--warmup", "0", "--threads", "1", "--out", str(tmp_path)]) == 0
    slab, full = json.loads((tmp_path / "results.json").read_text())
    assert (slab["stitching"], full["stitching"]) == ("slab", "full")
    assert full["is_baseline"] and not slab["is_baseline"]
    assert slab["labels_match_baseline"] == 1.0 and slab["num_cases"] == 2
    for record in (slab, full):
        assert record["volume_size"] == [24, 20, 30] and record["spacing"] == [0.8, 0.8, 2.5]
        assert record["peak_rss_mb"] > record["peak_mem_mb"] > 0
        assert record["process_ms"]["median"] > record["latency_ms"]["median"] > 0
        assert record["rss_auc_mb_s"] > 0 and record["windows_per_case"] == 2 * 2 * 3
        assert [c["case_id"] for c in record["cases"]] == ["generated00", "generated01"]
    assert slab["cases"][0]["labels_sha1"] == full["cases"][0]["labels_sha1"]
    md = (tmp_path / "results.md").read_text()
    assert "RSS·time MB·s" in md and "--volume-size 24,20,30" in md
    assert "rss_auc_mb_s" in (tmp_path / "results.csv").read_text().splitlines()[0]
