"""Training curves from log.csv, through the library and ``medtoken plot curves``."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoken.cli.main import main
from medtoken.plots.curves import plot_training_curves, read_log
from medtoken.utils.errors import InputError
from tests.plots.test_charts import assert_real_png

# validation every 2nd epoch; first-seen column order puts the val columns after lr/seconds
LOG = """epoch,step,loss,codebook_usage,lr,seconds,val_dice_anterior,val_dice_posterior,\
val_mean_fg_dice
1,10,0.9,0.5,0.001,1.0,,,
2,20,0.7,0.6,0.0009,2.0,0.3,0.2,0.25
3,30,0.6,0.7,0.0007,3.0,,,
4,40,0.5,0.8,0.0004,4.0,0.6,0.5,0.55
"""


def _run_dir(tmp_path: Path, text: str = LOG) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text(text)
    return run


def test_read_log_gives_nan_for_epochs_without_validation(tmp_path: Path) -> None:
    log = read_log(_run_dir(tmp_path) / "log.csv")
    assert log["epoch"] == [1.0, 2.0, 3.0, 4.0]
    assert log["val_mean_fg_dice"][1] == 0.25
    assert log["val_mean_fg_dice"][0] != log["val_mean_fg_dice"][0]  # NaN


def test_cli_plot_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI path covers the library function (one rendering keeps the test quick)."""
    run = _run_dir(tmp_path)
    assert main(["plot", "curves", "--run", str(run), "-o", str(tmp_path / "c.png")]) == 0
    assert "c.png" in capsys.readouterr().out
    assert_real_png(tmp_path / "c.png")


@pytest.mark.parametrize(("text", "message"), [(None, "no such file"),
                                               ("epoch,step,loss\n", "has no rows"),
                                               ("step,lr\n1,0.1\n", "missing column")])
def test_bad_logs_are_input_errors(tmp_path: Path, text: str | None, message: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if text is not None:
        (run / "log.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        plot_training_curves(run, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# validated at steps 20, 40, 60, 80; the last quarter is steps > 60
RISING = """epoch,step,loss,val_mean_fg_dice,lr,seconds
1,20,0.9,0.50,0.001,1800
2,40,0.7,0.60,0.001,3600
3,60,0.6,0.70,0.001,5400
4,80,0.5,0.72,0.001,7200
"""
FLAT = RISING.replace("0.72", "0.702")


@pytest.mark.parametrize(("text", "gain", "plateaued"), [(RISING, 0.02, False),
                                                         (FLAT, 0.002, True)])
def test_learning_applies_the_last_quarter_rule(tmp_path: Path, text: str, gain: float,
                                                plateaued: bool) -> None:
    from medtoken.plots.curves import learning

    s = learning(read_log(_run_dir(tmp_path, text) / "log.csv"))
    assert s.steps == 80 and s.hours == pytest.approx(2.0)
    assert s.final_dice == pytest.approx(float(text.splitlines()[-1].split(",")[3]))
    assert s.last_quarter_gain == pytest.approx(gain)
    assert s.plateaued is plateaued


def test_cli_plot_learning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for run, text in ((a, RISING), (b, FLAT)):
        run.mkdir()
        (run / "log.csv").write_text(text)
    out = tmp_path / "l.png"
    assert main(["plot", "learning", "--runs", f"scd={a}", f"unetr={b}", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scd: 80 steps, 2.00 h" in printed and "+2.00 points (still rising" in printed
    assert "unetr:" in printed and "+0.20 points (plateaued" in printed
    assert_real_png(out)


def test_learning_without_validation_names_the_log(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path, "epoch,step,loss,val_mean_fg_dice\n1,10,0.9,\n")
    out = tmp_path / "l.png"
    assert main(["plot", "learning", "--runs", f"x={run}", "-o", str(out)]) == 2
    assert "log.csv: has no validation Dice yet" in capsys.readouterr().err
    assert not out.exists()


def test_learning_is_undecided_without_validations_in_both_parts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path, "epoch,step,loss,val_mean_fg_dice\n1,10,0.9,\n2,20,0.8,0.5\n")
    out = tmp_path / "l.png"
    assert main(["plot", "learning", "--runs", f"x={run}", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "x: 20 steps, – h" in captured.out and "plateau undecided" in captured.out
    assert "nan" not in captured.out and captured.err == ""


def test_a_gain_of_exactly_the_rule_is_a_plateau(tmp_path: Path) -> None:
    from medtoken.plots.curves import learning

    text = RISING.replace("0.72,", "0.703,")  # 0.703 - 0.700 is 0.30000000000000027 points
    assert learning(read_log(_run_dir(tmp_path, text) / "log.csv")).plateaued


def _config(run: Path, batch: int | None, accumulate: int = 1, world: int = 1) -> None:
    batch_line = "null" if batch is None else str(batch)
    (run / "config.yaml").write_text(f"train:\n  batch_size: {batch_line}\n  accumulate: "
                                     f"{accumulate}\nruntime:\n  world_size: {world}\n")


def test_patches_per_step_reads_batch_accumulate_and_world_size(tmp_path: Path) -> None:
    from medtoken.plots.curves import patches_per_step

    run = _run_dir(tmp_path)
    assert patches_per_step(run) is None  # no config.yaml
    _config(run, None)
    assert patches_per_step(run) is None  # no batch size recorded
    _config(run, 4, accumulate=3, world=2)
    assert patches_per_step(run) == 24
    assert patches_per_step(run / "log.csv") == 24  # the log names the same run
    for text in ("- just\n- a list\n", "train: [1, 2]\n"):
        (run / "config.yaml").write_text(text)
        with pytest.raises(InputError, match="not a YAML mapping"):
            patches_per_step(run)
    (run / "config.yaml").write_text("train: {batch_size: 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        patches_per_step(run)


def test_cli_plot_learning_counts_patches_when_every_run_records_its_batch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for run, text, batch in ((a, RISING, 2), (b, FLAT, 4)):
        run.mkdir()
        (run / "log.csv").write_text(text)
        _config(run, batch)
    out = tmp_path / "l.png"
    assert main(["plot", "learning", "--runs", f"x={a}", f"y={b}", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "x: 80 steps (160 patches), 2.00 h" in printed
    assert "y: 80 steps (320 patches), 2.00 h" in printed
    assert_real_png(out)
    (b / "config.yaml").unlink()  # one run that does not say its batch: no patches panel
    two_panels = tmp_path / "two.png"
    assert main(["plot", "learning", "--runs", f"x={a}", f"y={b}", "-o", str(two_panels)]) == 0
    assert "y: 80 steps, 2.00 h" in capsys.readouterr().out
    from PIL import Image

    with Image.open(out) as three, Image.open(two_panels) as two:
        assert three.height == two.height
        assert three.width == pytest.approx(1.5 * two.width, rel=0.01)
