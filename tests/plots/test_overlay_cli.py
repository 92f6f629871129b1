"""``medtoken plot overlay`` on a synthetic case (the plotting itself is plots/overlay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoken.cli.main import main
from tests.plots.test_charts import assert_real_png


@pytest.mark.parametrize("spatial_dims", [3, 2])
def test_cli_plot_overlay(tmp_path: Path, spatial_dims: int) -> None:
    synthetic = pytest.importorskip("medtoken.data.synthetic")
    root = synthetic.make_synthetic_dataset(tmp_path / "data", spatial_dims=spatial_dims,
                                            num_cases=1, layout="msd")
    ending = ".nii.gz" if spatial_dims == 3 else ".png"
    image = root / "imagesTr" / f"case_000{ending}"
    label = root / "labelsTr" / f"case_000{ending}"
    out = tmp_path / "overlay.png"
    assert main(["plot", "overlay", "--image", str(image), "--label", str(label), "--pred",
                 str(label), "-o", str(out)]) == 0
    assert_real_png(out)


def test_cli_plot_overlay_shape_mismatch(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    synthetic = pytest.importorskip("medtoken.data.synthetic")
    a = synthetic.make_synthetic_dataset(tmp_path / "a", num_cases=2, layout="msd")
    code = main(["plot", "overlay", "--image", str(a / "imagesTr" / "case_000.nii.gz"),
                 "--label", str(a / "labelsTr" / "case_001.nii.gz"), "-o",
                 str(tmp_path / "o.png")])
    assert code == 2 and "differs from the image shape" in capsys.readouterr().err


def test_cli_plot_needs_a_picture(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot"]) == 2
    assert main(["plot", "nosuch"]) == 2
