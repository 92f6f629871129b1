"""Per-submodule forward time (`medtoken benchmark --profile`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from medtoken.benchmark.profile import OTHER, profile_children
from medtoken.cli.main import main


class _Sleepy(nn.Module):
    """Test double whose children take known, very different amounts of work."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Linear(4, 4)
        self.big = nn.Sequential(*[nn.Linear(512, 512) for _ in range(8)])
        self.unused = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.small(x).sum() + self.big(y).sum() + self.small(x).sum()


def test_children_are_timed_and_the_parts_add_up_to_the_forward() -> None:
    model = _Sleepy()
    x, y = torch.randn(2, 4), torch.randn(64, 512)
    result = profile_children(model, lambda: model(x, y), torch.device("cpu"), steps=3)
    assert list(result) == ["small", "big", OTHER, "total"]  # 'unused' never ran
    assert result["big"] > result["small"] > 0
    parts = result["small"] + result["big"] + result[OTHER]
    assert parts == pytest.approx(result["total"], rel=1e-6) or result[OTHER] == 0.0
    assert not model._forward_hooks and not model.big._forward_hooks  # hooks removed


class _Stages(nn.Module):
    """Test double whose work sits in containers that are never called themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(nn.Linear(256, 256) for _ in range(3))
        self.heads = nn.ModuleDict({"a": nn.Linear(256, 1), "b": nn.Linear(256, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = torch.relu(stage(x))
        return self.heads["a"](x) + self.heads["b"](x)


def test_containers_are_timed_through_their_members() -> None:
    model = _Stages()
    x = torch.randn(256, 256)
    result = profile_children(model, lambda: model(x), torch.device("cpu"), steps=2)
    assert list(result) == ["stages", "heads", OTHER, "total"]
    assert result["stages"] > 0 and result["heads"] > 0
    assert result["stages"] + result["heads"] <= result["total"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_profile_needs_a_step() -> None:
    with pytest.raises(ValueError, match="steps"):
        profile_children(nn.Linear(1, 1), lambda: None, torch.device("cpu"), steps=0)


def test_cli_profile_writes_module_times(tmp_path: Path) -> None:
    assert main(["benchmark", "--models", "scd_test", "--input-size", "1,1,32,32,32",
                 "--repeats", "1", "--warmup", "0", "--memory", "off", "--threads", "1",
                 "--profile", "1", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "results.json").read_text())[0]
    assert {"encoder", "completion", "decoder", OTHER, "total"} <= set(record["module_ms"])
    assert "| `scd_test` | encoder |" in (tmp_path / "results.md").read_text()
    assert "--profile 1" in record["command"]
