"""``medtoken plan``: writes nnU-Net's plans file; bad input is one line, exit 2."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from medtoken.cli.main import main
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.planning.plans import load_plan


def test_plan_writes_plans_and_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    data = make_synthetic_dataset(tmp_path / "d", num_cases=3)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in data.rglob("*"))
    out, fp = tmp_path / "out" / "nnUNetPlans.json", tmp_path / "fp.json"
    assert main(["plan", str(data), "-o", str(out), "--fingerprint", str(fp),
                 "--foreground-samples", "3000"]) == 0
    stdout = capsys.readouterr().out
    assert "3d_fullres: patch" in stdout and "2d: patch" in stdout
    plans = json.loads(out.read_text())
    assert set(plans["configurations"]) >= {"2d", "3d_fullres"}
    assert load_plan(out).roi_size
    assert len(json.loads(fp.read_text())["spacings"]) == 3
    assert sorted((p.name, p.stat().st_mtime_ns) for p in data.rglob("*")) == before


def test_plan_prints_json_without_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=2, layout="folder2d")
    assert main(["plan", str(data), "--foreground-samples", "100"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert list(plans["configurations"]) == ["2d"]


def test_zero_spacing_is_one_line_naming_the_case(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    path = data / "imagesTr" / "case_001_0000.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[80:84] = bytes(4)  # pixdim[1] = 0
    path.write_bytes(gzip.compress(bytes(raw)))
    out = tmp_path / "p.json"
    assert main(["plan", str(data), "-o", str(out), "--foreground-samples", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "case case_001: voxel size" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "plans.txt"], "--out: must name a .json file"),
    (["-o", "dataset.json"], "refusing to write over a dataset.json"),
    (["--foreground-samples", "0"], "--foreground-samples: must be >= 1"),
])
def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                     message: str) -> None:
    assert main(["plan", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
