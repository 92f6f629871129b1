"""``medtoken train`` flags → TrainConfig, including the old spellings that still work."""

from __future__ import annotations

import pytest

from medtoken.cli.main import build_parser
from medtoken.cli.train import build_train_config

BASE = ["train", "--data", "d", "--model", "unet3d", "--out", "o"]


def _config(*argv: str):
    return build_train_config(build_parser().parse_args([*BASE, *argv]))


def test_roi_size_flag_sets_the_window(deprecations) -> None:
    cfg, _ = _config("--roi-size", "16", "16", "8")
    assert cfg.roi_size == (16, 16, 8)
    assert deprecations() == []


def test_patch_size_flag_still_works_and_warns(deprecations) -> None:
    cfg, _ = _config("--patch-size", "16", "16", "8")
    assert cfg.roi_size == (16, 16, 8)
    assert deprecations() == ["'--patch-size' is deprecated; use '--roi-size' (the old spelling "
                              "will be removed in a future release)"]


def test_set_train_patch_size_still_works_and_the_flag_wins(deprecations) -> None:
    cfg, _ = _config("--set", "train.patch_size=[8,8,8]")
    assert cfg.roi_size == (8, 8, 8)
    assert "'train.patch_size' is deprecated; use 'train.roi_size'" in deprecations()[0]
    cfg, _ = _config("--set", "train.patch_size=[8,8,8]", "--roi-size", "16", "16", "16")
    assert cfg.roi_size == (16, 16, 16)


def test_help_shows_only_the_new_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert "--roi-size" in text and "--patch-size" not in text
