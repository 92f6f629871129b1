"""-o/--out on every command that writes, and the old --output spelling that still works."""

from __future__ import annotations

import re

import pytest

from medtoken.cli.main import build_parser, main

# each command with its other required arguments
COMMANDS = {
    "train": ["train", "--data", "d", "--model", "unet3d"],
    "predict": ["predict", "--model", "m", "-i", "in"],
    "export": ["export", "--model", "m"],
    "evaluate": ["evaluate", "--gt", "g", "--pred", "p"],
    "benchmark": ["benchmark", "--models", "unet3d", "--input-size", "1,1,8,8,8"],
    "plot": ["plot", "curves", "--run", "r"],
    "token-stats": ["token-stats", "--model", "m"],
    "postprocess": ["postprocess", "-i", "in", "--plan", "p.json"],
    "plan": ["plan", "data"],
}
HAD_OUTPUT = ("predict", "export", "evaluate")  # spelled -o/--output before
NEW = ("postprocess", "plan")  # -o/--out from the start: no old spelling to keep


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["-o", "--out"])
def test_every_command_takes_o_and_out(command: str, flag: str, deprecations) -> None:
    args = build_parser().parse_args([*COMMANDS[command], flag, "x.json"])
    assert args.out == "x.json"
    assert deprecations() == []


@pytest.mark.parametrize("command", HAD_OUTPUT)
def test_output_still_works_and_warns(command: str, deprecations) -> None:
    args = build_parser().parse_args([*COMMANDS[command], "--output", "x.json"])
    assert args.out == "x.json"
    assert deprecations() == ["'--output' is deprecated; use '--out' (the old spelling will be "
                              "removed in a future release)"]


@pytest.mark.parametrize("command", NEW)
def test_new_commands_have_no_output_alias(command: str, capsys) -> None:
    assert main([*COMMANDS[command], "-o", "x.json", "--output", "y.json"]) == 2
    assert "unrecognized arguments: --output y.json" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_errors_name_only_out(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*COMMANDS[command], "--help"])
    text = capsys.readouterr().out
    assert re.search(r"-o \S+, --out \S+", text) and "--output" not in text


def test_missing_required_out_names_the_new_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(COMMANDS["predict"]) == 2
    err = capsys.readouterr().err
    assert "required: -o/--out" in err and "--output" not in err
