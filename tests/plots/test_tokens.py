"""`medtoken plot tokens`: kept-token maps of SCD and TokenSeg models."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medtoken import create_model
from medtoken.cli.main import main
from medtoken.config import to_dict
from medtoken.data.preprocess import NormalizationPlan
from medtoken.models.base import SegOutput
from medtoken.models.checkpoint import save_checkpoint
from medtoken.plots.tokens import center_window, token_maps
from medtoken.utils.errors import InputError
from tests.plots.test_charts import assert_real_png


def _out(name: str) -> tuple[SegOutput, tuple[int, ...]]:
    model = create_model(name).eval()
    x = torch.randn(1, model.in_channels, *model.config.roi_size)
    with torch.inference_mode():
        return model.forward_with_aux(x), model.config.roi_size


@pytest.mark.parametrize("name", ["scd_test", "scd2d_test"])
def test_scd_maps_cover_exactly_the_kept_tokens(name: str) -> None:
    out, roi = _out(name)
    info, maps = out.info, token_maps(out.tokens, roi)
    assert len(maps) == len(info["kept_token_idx"])
    total = int(np.prod(info["token_grid"]))
    for (_, mask), idx in zip(maps, info["kept_token_idx"], strict=True):
        assert mask.shape == roi
        assert mask.mean() == pytest.approx(idx.shape[1] / total)  # each token = one patch
    # later stages keep a subset of earlier ones
    assert all((b <= a).all() for (_, a), (_, b) in itertools.pairwise(maps))


def test_tokenseg_maps_are_the_selected_boxes_per_level() -> None:
    out, roi = _out("tokenseg_test")
    info, maps = out.info, token_maps(out.tokens, roi)
    levels = sorted(set(info["token_level"][0].tolist()))
    assert len(maps) == len(levels)
    for (_, mask), level in zip(maps, levels, strict=True):
        boxes = info["token_box"][0][info["token_level"][0] == level]
        volume = sum(int(torch.prod(b[3:] - b[:3])) for b in boxes)
        assert mask.sum() == volume  # cells of one level do not overlap


def test_dense_model_has_no_token_maps() -> None:
    with pytest.raises(InputError, match="no token selection"):
        token_maps(None, (8, 8))


def test_center_window_crops_and_pads() -> None:
    image = np.arange(2 * 5 * 3, dtype=float).reshape(2, 5, 3)
    out = center_window(image, (3, 5))
    assert out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out[:, :, 1:4], image[:, 1:4, :])
    assert (out[:, :, 0] == 0).all() and (out[:, :, 4] == 0).all()


def test_cli_plot_tokens_writes_png(tmp_path: Path, capsys) -> None:
    model = create_model("scd_test")
    plan = NormalizationPlan(schemes=("zscore",), ct_stats=(None,))
    ckpt = tmp_path / "scd.pt"
    save_checkpoint(ckpt, {"family": "scd", "model_config": to_dict(model.config),
                           "model": model.state_dict(), "dataset": {"normalization":
                                                                     plan.to_dict()}})
    image = tmp_path / "case 1.nii.gz"
    data = np.random.default_rng(0).normal(size=(20, 18, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), image)
    out = tmp_path / "tokens.png"
    assert main(["plot", "tokens", "--model", str(ckpt), "-i", str(image), "-o", str(out)]) == 0
    assert_real_png(out)
    assert main(["plot", "tokens", "--model", str(ckpt), "-i", str(image), "-o", str(out),
                 "--slice", "99"]) == 2
    assert "--slice" in capsys.readouterr().err
