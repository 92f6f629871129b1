"""Compare trained runs side by side: validation Dice, whole-case time and peak memory."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from medtoken.cli.options import add_out, parse_named
from medtoken.utils.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, nargs="+", metavar="NAME=RUN",
                   help="the trained runs (a run folder each, with its final validation), "
                   "the baseline last; NAME labels the run in the table and picture")
    p.add_argument("--summaries", nargs="+", default=[], metavar="NAME=summary.json",
                   help="take run NAME's Dice from this summary.json of medtoken evaluate "
                   "instead of its final validation (e.g. a run that has not finished)")
    p.add_argument("--data", required=True,
                   help="dataset whose cases are timed (the runs' channels and dimensionality)")
    p.add_argument("--cases", type=int, default=4,
                   help="timed whole cases per run, spread over the dataset (default: 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--title", default="", help="title of the picture")
    add_out(p, "folder for comparison.md, comparison.json and pareto.png", required=True,
            metavar="DIR")


def parse_runs(items: list[str]) -> list[tuple[str, Path]]:
    """``NAME=RUN`` items as ``(name, folder)``."""
    runs = [(name, Path(folder))
            for name, folder in parse_named(items, "--runs", "RUN").items()]
    for name, folder in runs:
        if not folder.is_dir():
            raise InputError("--runs", f"{name}={folder}: no such run folder")
    return runs


def parse_summaries(items: list[str], names: set[str]) -> dict[str, Path]:
    """``NAME=summary.json`` items for runs named in ``--runs``."""
    summaries = {name: Path(path)
                 for name, path in parse_named(items, "--summaries", "summary.json").items()}
    for name in summaries:
        if name not in names:
            raise InputError("--summaries", f"'{name}' is none of the runs "
                             f"({', '.join(sorted(names))})")
    return summaries


def steps_trained(run_dir: Path) -> int:
    """The last optimiser step in the run's ``log.csv``."""
    log = run_dir / "log.csv"
    if not log.is_file():
        raise InputError(log, "no such file (is this a medtoken run folder?)")
    with log.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return int(rows[-1]["step"])
    except (IndexError, KeyError, TypeError, ValueError):
        raise InputError(log, "has no training row with a numeric 'step'") from None


def run(args: argparse.Namespace) -> int:
    from medtoken.benchmark.compare import (
        compare_runs,
        comparison_table,
        run_summary,
        write_comparison,
    )
    from medtoken.utils.device import resolve_device

    if args.cases < 1:
        raise InputError("--cases", f"must be at least 1, got {args.cases}")
    runs = parse_runs(args.runs)
    summaries = parse_summaries(args.summaries, {name for name, _ in runs})
    for name, folder in runs:  # compare_runs reads them before it loads or times a model
        summary = summaries.get(name, run_summary(folder))
        if not summary.is_file():
            raise InputError(summary, "no such file (the run has not finished its final "
                             "validation: `medtoken train ... --val`, or --summaries)")
    steps = [(name, folder, steps_trained(folder)) for name, folder in runs]
    rows = compare_runs(steps, args.data, resolve_device(args.device), cases=args.cases,
                        summaries=summaries)
    print(comparison_table(rows))
    for path in write_comparison(rows, Path(args.out), title=args.title):
        print(f"wrote {path}")
    return 0
