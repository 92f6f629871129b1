"""Decide from a run's cross-validation predictions whether keeping the largest component helps."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", dest="run_dir", metavar="RUN", required=True,
                   help="run folder with validation/ (or a folder of fold_0 ... fold_4 runs); "
                   "postprocessing.json is written into it")
    p.add_argument("--data", help="dataset folder to take the reference labels from (default: "
                   "the reference files named in validation/summary.json)")


def run(args: argparse.Namespace) -> int:
    from medtoken.postprocessing.determine import (
        determine_postprocessing_for_run,
        format_decisions,
    )

    plan, path = determine_postprocessing_for_run(args.run_dir, args.data)
    print(format_decisions(plan))
    steps = ", ".join("+".join(str(v) for v in g) for g in plan.steps) or "none"
    print(f"wrote {path} (steps: largest component of {steps}; "
          f"{plan.record['num_cases']} cases)")
    return 0
