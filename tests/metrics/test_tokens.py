"""Boundary-hit statistics of token models (`medtoken token-stats`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medtoken import create_model
from medtoken.cli.main import main
from medtoken.config import to_dict
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.metrics.tokens import case_token_hits, token_boxes
from medtoken.models.base import SegOutput, TokenSelection
from medtoken.models.checkpoint import save_checkpoint
from medtoken.tokens.selection import cell_boxes


@pytest.mark.parametrize("name", ["scd_test", "scd2d_test", "tokenseg_test", "tokenseg2d_test"])
def test_selected_boxes_are_candidate_boxes(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(1, model.in_channels, *model.config.roi_size)
    with torch.inference_mode():
        selection = model.forward_with_aux(x).tokens
    chosen, pool = token_boxes(selection)
    assert chosen.dim() == 3 and chosen.shape[0] == 1 and chosen.shape[1] < pool.shape[0]
    pool_rows = {tuple(r) for r in pool.tolist()}
    assert {tuple(r) for r in chosen[0].tolist()} <= pool_rows


def test_dense_model_is_refused() -> None:
    with pytest.raises(ValueError, match="no token selection"):
        token_boxes(None)


class _FixedSelection(nn.Module):
    """Test double: 2x2 cells of an 8x8 window, always 'selecting' the four central cells."""

    config = type("C", (), {"roi_size": (8, 8)})()
    fixed_input_size = None
    window_size = (8, 8)  # SegmentationModel.window_size: fixed_input_size or roi_size

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.pool = cell_boxes((8, 8), (4, 4))

    def forward_with_aux(self, x: torch.Tensor) -> SegOutput:
        central = torch.tensor([[5, 6, 9, 10]])  # cells covering [2:6, 2:6]
        return SegOutput(x, tokens=TokenSelection(self.pool, (central,)))


def test_hit_fractions_of_a_known_selection_and_windows_without_boundary_skipped() -> None:
    labels = np.zeros((16, 8), dtype=np.int64)
    labels[2:6, 2:6] = 1  # the lower window (rows 8..15) has no boundary
    hits = case_token_hits(_FixedSelection(), "c", np.zeros((1, 16, 8), np.float32), labels,
                           radius=0)
    assert hits.windows == 1 and (hits.selected, hits.candidates) == (4, 16)
    assert hits.selected_hit_fraction == 1.0  # every central cell holds part of the surface
    assert hits.random_hit_fraction == 4 / 16


def test_case_smaller_than_the_window_is_padded() -> None:
    labels = np.zeros((5, 7), dtype=np.int64)
    labels[2:4, 2:4] = 1
    hits = case_token_hits(_FixedSelection(), "c", np.zeros((1, 5, 7), np.float32), labels,
                           radius=0)
    assert hits.windows == 1 and 0 < hits.random_hit_fraction < 1


def test_cli_reports_both_fractions_and_takes_overrides(tmp_path: Path, capsys) -> None:
    data = make_synthetic_dataset(tmp_path / "data", spatial_dims=2, num_cases=5, seed=3,
                                  layout="folder2d")
    model = create_model("tokenseg2d_test")
    ckpt = tmp_path / "ts.pt"
    norm = {"schemes": ["zscore"], "ct_stats": [None]}
    save_checkpoint(ckpt, {"family": "tokenseg", "preset": "tokenseg2d_test",
                           "model_config": to_dict(model.config), "model": model.state_dict(),
                           "dataset": {"root": str(data), "normalization": norm}})
    out = tmp_path / "report.json"
    assert main(["token-stats", "--model", str(ckpt), "--fold", "all", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["summary"]["cases"] == 5 and report["summary"]["windows"] >= 5
    for key in ("selected_hit_fraction", "random_hit_fraction"):
        assert 0 <= report["summary"][key] <= 1
    assert "meet the boundary band" in capsys.readouterr().out
    assert main(["token-stats", "--model", str(ckpt), "--fold", "all", "--cases", "2",
                 "--set", "selection.num_selected=3", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["summary"]["cases"] == 2 and {c["selected"] for c in report["cases"]} == {3}
    assert main(["token-stats", "--model", str(ckpt), "--set", "selection.nope=3",
                 "-o", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
