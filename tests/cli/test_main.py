"""The error contract of the CLI: one line, exit 2 for bad input, 1 for internal failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoken.cli import main as cli_main
from medtoken.cli.main import main


def test_unknown_command_is_usage_error(capsys) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medtoken: error:")


def test_missing_dataset_names_the_path(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main(["train", "--data", str(missing), "--model", "unet3d", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unknown_preset_lists_closest(tmp_path: Path, capsys) -> None:
    from medtoken.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "d", num_cases=3)
    assert main(["train", "--data", str(data), "--model", "unet_3d", "--out",
                 str(tmp_path / "run")]) == 2
    assert "valid presets: unet3d" in capsys.readouterr().err


def test_internal_error_is_one_line_exit_1(monkeypatch, capsys) -> None:
    def boom(_args) -> int:
        raise RuntimeError("kaput")

    import medtoken.cli.models as models_cli

    monkeypatch.setattr(models_cli, "run", boom)
    assert cli_main.main(["models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: RuntimeError: kaput" in err[0]
    with pytest.raises(RuntimeError):
        cli_main.main(["--debug", "models"])


def test_models_lists_presets_with_parameter_counts(capsys) -> None:
    assert main(["models", "unet*"]) == 0
    out = capsys.readouterr().out
    assert "unet3d" in out and "unet2d" in out and "tmunet" not in out
    assert main(["models", "--show", "unet3d"]) == 0
    assert "roi_size" in capsys.readouterr().out


def test_check_dataset_ok_and_problems(tmp_path: Path, capsys) -> None:
    from medtoken.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "d", num_cases=3)
    assert main(["check-dataset", str(data)]) == 0
    assert "OK" in capsys.readouterr().out
    next((data / "labelsTr").iterdir()).unlink()
    assert main(["check-dataset", str(data)]) == 2
    assert "label" in capsys.readouterr().err
