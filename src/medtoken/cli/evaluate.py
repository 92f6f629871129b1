"""Evaluate a folder of predictions against references: Dice, IoU, HD95 (mm), NSD."""

from __future__ import annotations

import argparse

from medtoken.cli.options import add_out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", required=True, help="folder of reference label files")
    p.add_argument("--pred", required=True, help="folder of predicted label files")
    add_out(p, "summary .json path (default: PRED/summary.json); the per-case CSV goes "
            "beside it", old=("--output",))
    p.add_argument("--labels", type=int, nargs="+", help="labels to score (default: all found)")
    p.add_argument("--nsd-tolerance", type=float, default=1.0, metavar="MM",
                   help="NSD tolerance in mm")


def run(args: argparse.Namespace) -> int:
    from medtoken.metrics.evaluate import evaluate_folder
    from medtoken.utils.errors import InputError

    if args.nsd_tolerance < 0:
        raise InputError("--nsd-tolerance", f"must be >= 0, got {args.nsd_tolerance}")
    if args.out is not None and not args.out.lower().endswith(".json"):
        # the summary (and the CSV beside it) must never land on a label file of --gt/--pred
        raise InputError("--out", f"must name a .json file (the CSV is written beside it), "
                         f"got {args.out}")
    summary = evaluate_folder(args.gt, args.pred, labels=args.labels,
                              nsd_tolerance_mm=args.nsd_tolerance, output=args.out)
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """A small table of per-label means (Dice, HD95, NSD) and the foreground mean."""
    lines = [f"{'label':<10} {'Dice':>8} {'IoU':>8} {'HD95_mm':>9} {'NSD':>8}"]

    def fmt(v: object) -> str:
        return "nan" if v is None else f"{float(v):.4f}"  # type: ignore[arg-type]

    for label, m in sorted(summary["mean"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"{label:<10} {fmt(m.get('Dice')):>8} {fmt(m.get('IoU')):>8} "
                     f"{fmt(m.get('HD95_mm')):>9} {fmt(m.get('NSD')):>8}")
    fg = summary["foreground_mean"]
    lines.append(f"{'fg mean':<10} {fmt(fg.get('Dice')):>8} {fmt(fg.get('IoU')):>8} "
                 f"{fmt(fg.get('HD95_mm')):>9} {fmt(fg.get('NSD')):>8}")
    lines.append(f"({len(summary['metric_per_case'])} cases)")
    return "\n".join(lines)
