"""RunFolder: when a folder may be reused, and old config.yaml spellings on --resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medtoken.config import to_dict
from medtoken.registry import get_config
from medtoken.train.config import TrainConfig
from medtoken.train.run_folder import RunFolder
from medtoken.utils.errors import InputError


def _resolved(**model_overrides) -> dict:
    cfg = get_config("scd_test", **model_overrides)
    return {"train": to_dict(TrainConfig(model="scd_test", roi_size=cfg.roi_size)),
            "model": {"preset": "scd_test", "family": "scd", **to_dict(cfg)},
            "dataset": {"root": "d"}}


def _write_old(run: Path, resolved: dict) -> None:
    """``resolved`` as an older medtoken wrote it: train.patch_size, SCD pruning.selection."""
    old = yaml.safe_load(yaml.safe_dump(resolved))
    old["train"]["patch_size"] = old["train"].pop("roi_size")
    old["model"]["pruning"]["selection"] = old["model"]["pruning"].pop("method")
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))


def test_resume_accepts_the_old_spellings_of_renamed_keys(tmp_path: Path, deprecations) -> None:
    resolved = _resolved()
    _write_old(tmp_path / "r", resolved)
    RunFolder(tmp_path / "r").prepare(resolved, resume=True, overwrite=False)
    messages = deprecations()
    assert any("'train.patch_size' is deprecated; use 'train.roi_size'" in m for m in messages)
    assert any("'model.pruning.selection' is deprecated" in m for m in messages)
    rewritten = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert "roi_size" in rewritten["train"] and "method" in rewritten["model"]["pruning"]


def test_resume_still_compares_the_renamed_values(tmp_path: Path) -> None:
    _write_old(tmp_path / "r", _resolved())
    with pytest.raises(InputError, match=r"different configuration \(model: pruning\)"):
        RunFolder(tmp_path / "r").prepare(_resolved(**{"pruning.method": "topk"}), resume=True,
                                          overwrite=False)
