"""Training curves from a run folder's ``log.csv``: loss, validation Dice per class, learning rate;
and learning curves of several runs side by side (validation Dice against steps, patches seen
and time).

``log.csv`` has one row per epoch with the columns ``epoch, step, loss, [model extras],
val_dice_<class>..., val_mean_fg_dice, lr, seconds``; the validation columns are empty on epochs
without validation. Model extras (codebook usage, ...) get a panel of their own.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import yaml

from medtoken.plots.charts import pyplot, save_figure
from medtoken.utils.errors import InputError

PLATEAU_POINTS = 0.3  # issue 15's rule: no gain above 0.3 Dice points over the last quarter

__all__ = ["PLATEAU_POINTS", "Learning", "learning", "patches_per_step", "plot_learning_curves",
           "plot_training_curves", "read_log"]

_FIXED = ("epoch", "step", "loss", "val_mean_fg_dice", "lr", "seconds")
_DICE_PREFIX = "val_dice_"


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_log(path: str | Path) -> dict[str, list[float]]:
    """Columns of ``log.csv`` as floats (NaN where empty).

    Raises:
        InputError: the file is missing, empty, or lacks the ``epoch`` and ``loss`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file (a training run folder has log.csv)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputError(path, "has no rows yet (no epoch finished)")
    columns = list(rows[0].keys())
    missing = [c for c in ("epoch", "loss") if c not in columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; found "
                         + ", ".join(columns))
    return {c: [_number(r.get(c)) for r in rows] for c in columns}


def _validated(epochs: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """Only the epochs that have a value (validation runs every few epochs)."""
    pairs = [(e, v) for e, v in zip(epochs, values, strict=True) if not math.isnan(v)]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _log_path(run: str | Path) -> Path:
    """A run folder's ``log.csv`` (or ``run`` itself when it names the file)."""
    run = Path(run)
    return run if run.suffix == ".csv" else run / "log.csv"


def patches_per_step(run: str | Path) -> int | None:
    """Training patches one optimiser step of ``run`` saw: ``batch_size * accumulate *
    world_size`` from the ``config.yaml`` beside its ``log.csv``; None when there is no
    ``config.yaml`` or it records no batch size. (``config.yaml`` holds the last start's world
    size: a run resumed on a different number of processes is counted at the last one.)

    Raises:
        InputError: ``config.yaml`` is not valid YAML, or not a mapping of mappings.
    """
    path = _log_path(run).parent / "config.yaml"
    if not path.is_file():
        return None
    try:
        resolved = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(path, f"is not valid YAML ({err})") from None
    sections = resolved if isinstance(resolved, dict) else None
    train = (sections or {}).get("train") or {}
    runtime = (sections or {}).get("runtime") or {}
    if sections is None or not isinstance(train, dict) or not isinstance(runtime, dict):
        raise InputError(path, "is not a YAML mapping of sections (a run folder's resolved "
                         "configuration)")
    if not isinstance(train.get("batch_size"), int):
        return None
    world = runtime.get("world_size") or 1
    return int(train["batch_size"]) * int(train.get("accumulate") or 1) * int(world)


def plot_training_curves(run_dir: str | Path, out: str | Path) -> Path:
    """Write a PNG with the loss, validation Dice per class (and the mean) and the lr per epoch.

    Args:
        run_dir: a training run folder (or its ``log.csv``).
        out: the PNG to write.
    """
    run = Path(run_dir)
    log = read_log(_log_path(run))
    epochs = log["epoch"]
    dice = [c for c in log if c.startswith(_DICE_PREFIX)]
    extras = [c for c in log if c not in _FIXED and c not in dice]
    panels = ["loss", "dice", "lr"] + (["extras"] if extras else [])
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    ax = dict(zip(panels, axes[0], strict=True))
    ax["loss"].plot(epochs, log["loss"], color="tab:blue")
    ax["loss"].set_title("training loss")
    for column in dice:
        ax["dice"].plot(*_validated(epochs, log[column]), marker=".",
                        label=column.removeprefix(_DICE_PREFIX))
    if "val_mean_fg_dice" in log:
        ax["dice"].plot(*_validated(epochs, log["val_mean_fg_dice"]), color="black",
                        linestyle="--", linewidth=2, label="mean foreground")
    ax["dice"].set_title("validation Dice")
    ax["dice"].set_ylim(0, 1)
    if dice or "val_mean_fg_dice" in log:
        ax["dice"].legend(fontsize=8)
    if "lr" in log:
        ax["lr"].plot(epochs, log["lr"], color="tab:orange")
    ax["lr"].set_title("learning rate")
    for column in extras:
        ax["extras"].plot(epochs, log[column], label=column)
    if extras:
        ax["extras"].set_title("model extras")
        ax["extras"].legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for a in axes[0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    fig.suptitle(f"training curves: {run.name}")
    fig.tight_layout()
    return save_figure(fig, out)


class Learning(NamedTuple):
    """Where one run's validation Dice stands (mean foreground Dice, 0..1).

    ``last_quarter_gain`` is the best Dice validated in the last quarter of the steps minus the
    best before it (NaN without a validation in both parts); the run has plateaued when that
    gain is at most :data:`PLATEAU_POINTS` Dice points. ``patches`` is the number of training
    patches its steps saw (None when the run folder does not say, see :func:`patches_per_step`).
    """

    steps: int
    hours: float
    final_dice: float
    best_dice: float
    last_quarter_gain: float
    patches: int | None = None

    @property
    def decided(self) -> bool:
        """Whether there are validations both before and in the last quarter."""
        return not math.isnan(self.last_quarter_gain)

    @property
    def plateaued(self) -> bool:
        # rounded: a gain of exactly 0.3 points must not miss the rule by float error
        return self.decided and round(self.last_quarter_gain * 100, 6) <= PLATEAU_POINTS


def _validation(log: dict[str, list[float]], x: str) -> tuple[list[float], list[float]]:
    if "val_mean_fg_dice" not in log or x not in log:
        return [], []
    return _validated(log[x], log["val_mean_fg_dice"])


def learning(log: dict[str, list[float]], where: str | Path = "log.csv") -> Learning:
    """The :class:`Learning` of a :func:`read_log` table.

    Raises:
        InputError: at ``where``, when the log has no validated epoch (or no ``step`` column).
    """
    steps, dice = _validation(log, "step")
    if not dice:
        raise InputError(where, "has no validation Dice yet (val_mean_fg_dice, step)")
    last = max(s for s in log["step"] if not math.isnan(s))
    cut = 0.75 * last
    before = [d for s, d in zip(steps, dice, strict=True) if s <= cut]
    after = [d for s, d in zip(steps, dice, strict=True) if s > cut]
    gain = max(after) - max(before) if before and after else math.nan
    seconds = [t for t in log.get("seconds", []) if not math.isnan(t)]
    return Learning(int(last), max(seconds, default=math.nan) / 3600, dice[-1], max(dice), gain)


def plot_learning_curves(runs: Mapping[str, str | Path], out: str | Path,
                         title: str = "") -> dict[str, Learning]:
    """Validation mean foreground Dice of each run against steps, training patches seen (when
    every run folder records its batch; runs of different batch sizes compare there) and
    training hours.

    Args:
        runs: name -> training run folder (or its ``log.csv``).
        out: the PNG to write.

    Returns:
        name -> :class:`Learning` of each run (read before anything is drawn).
    """
    logs = {name: (read_log(_log_path(run)), _log_path(run)) for name, run in runs.items()}
    per_step = {name: patches_per_step(run) for name, run in runs.items()}
    summary: dict[str, Learning] = {}
    for name, (log, path) in logs.items():
        s, p = learning(log, path), per_step[name]
        summary[name] = s._replace(patches=None if p is None else s.steps * p)
    axes_of = [("step", "training steps")]
    if all(p is not None for p in per_step.values()):
        axes_of.append(("patches", "training patches seen (steps × patches per step)"))
    axes_of.append(("seconds", "training hours (wall clock)"))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(axes_of), figsize=(5 * len(axes_of), 4), squeeze=False)
    for name, (log, _) in logs.items():
        scales = {"step": 1.0, "patches": float(per_step[name] or 0), "seconds": 1 / 3600}
        for ax, (x, _) in zip(axes[0], axes_of, strict=True):
            xs, ys = _validation(log, "step" if x == "patches" else x)  # patches: steps scaled
            scale = scales[x]
            if xs:
                ax.plot([v * scale for v in xs], ys, marker=".", label=name)
    for ax, (_, label) in zip(axes[0], axes_of, strict=True):
        ax.set_xlabel(label)
        ax.set_ylabel("validation mean foreground Dice")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.suptitle(title or "learning curves")
    fig.tight_layout()
    save_figure(fig, out)
    return summary
