"""Check a dataset for missing, unreadable or inconsistent files; report every problem."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="dataset folder (or a folder of DICOM series folders)")


def run(args: argparse.Namespace) -> int:
    from medtoken.data.check import check_dataset

    info, problems = check_dataset(args.path)
    for problem in problems:
        print(f"medtoken: error: {problem}", file=sys.stderr)
    if problems and info is not None:  # a layout that cannot be read is one problem, one line
        print(f"{len(problems)} problem(s) found in {args.path}", file=sys.stderr)
    if problems:
        return 2
    assert info is not None
    labels = ("images only (no labels)" if info.layout == "dicom"
              else f"labels {info.labels}")
    print(f"{args.path}: OK — {info.layout} layout, {len(info.cases)} cases, "
          f"{info.spatial_dims}D, {info.num_channels} channel(s), {labels}")
    return 0
