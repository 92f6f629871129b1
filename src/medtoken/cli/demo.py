"""Demo: synthetic (or your) dataset → train a small model → predict → evaluate → overlay PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="a real dataset instead of the generated phantoms")
    p.add_argument("--work", default="medtoken-demo", help="work folder (default: ./medtoken-demo)")
    p.add_argument("--model", help="preset (default: unet3d for 3D data, unet2d for 2D)")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget (default: 2)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from medtoken.cli.evaluate import format_summary
    from medtoken.data.datasets import load_dataset
    from medtoken.data.io import read_image, read_label
    from medtoken.data.synthetic import make_synthetic_dataset
    from medtoken.plots.overlay import plot_overlay
    from medtoken.train.config import TrainConfig
    from medtoken.train.fit import fit

    work = Path(args.work)
    data = Path(args.data) if args.data else make_synthetic_dataset(work / "data", spatial_dims=3,
                                                                    num_cases=20, seed=0)
    info = load_dataset(data)
    model = args.model or ("unet3d" if info.spatial_dims == 3 else "unet2d")
    print(f"dataset: {data} ({info.layout}, {len(info.cases)} cases, {info.spatial_dims}D); "
          f"model: {model}; budget: {args.minutes} min")
    cfg = TrainConfig(data=str(data), model=model, fold="0", max_minutes=args.minutes,
                      val_every=5)
    result = fit(cfg, work / "run", device=args.device, overwrite=True,
                 progress=False if args.no_progress else sys.stderr.isatty())
    summary_path = result.run_dir / "validation" / "summary.json"
    summary = json.loads(summary_path.read_text())
    print(format_summary(summary))
    first = summary["metric_per_case"][0]
    case_id = Path(first["prediction_file"]).name
    image, _ = read_image(info.case(_case_id(first["prediction_file"])).images)
    reference, _ = read_label(Path(first["reference_file"]))
    prediction, _ = read_label(Path(first["prediction_file"]))
    overlay = plot_overlay(image, work / "overlay.png", reference, prediction, title=case_id)
    print(f"run folder: {result.run_dir}\nsummary: {summary_path}\noverlay: {overlay}")
    return 0


def _case_id(path: str) -> str:
    from medtoken.data.io import split_file_ending

    return split_file_ending(Path(path))[0]
