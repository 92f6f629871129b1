"""Demo: synthetic phantoms (or your data) → train a token model and its dense baseline on the
same budget → predict → evaluate → a side-by-side table (Dice, whole-case time, peak memory), the
accuracy-against-speed picture and an overlay PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# token model, then the dense baseline it is compared with
DEFAULT_PAIRS = {3: ("tokenseg3d_small", "unet3d"), 2: ("tokenseg2d_small", "unet2d")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="a real dataset instead of the generated phantoms")
    p.add_argument("--work", default="medtoken-demo", help="work folder (default: ./medtoken-demo)")
    p.add_argument("--models", metavar="TOKEN,BASELINE",
                   help="the two presets (default: tokenseg3d_small,unet3d for 3D data, "
                   "tokenseg2d_small,unet2d for 2D)")
    p.add_argument("--minutes", type=float, default=1.0,
                   help="training budget per model (default: 1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _pair(args: argparse.Namespace, spatial_dims: int) -> list[str]:
    from medtoken.utils.errors import InputError

    if not args.models:
        return list(DEFAULT_PAIRS[spatial_dims])
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if len(names) != 2:
        raise InputError("--models", f"give two presets, TOKEN,BASELINE; got '{args.models}'")
    return names


def _train(model: str, data: Path, work: Path, args: argparse.Namespace) -> Any:
    import sys

    from medtoken.train.config import TrainConfig
    from medtoken.train.fit import fit

    cfg = TrainConfig(data=str(data), model=model, fold="0", max_minutes=args.minutes,
                      val_every=5)
    result = fit(cfg, work / model, device=args.device, overwrite=True,
                 progress=False if args.no_progress else sys.stderr.isatty())
    print(f"  {model}: {result.steps_done} steps, best validation mean foreground Dice "
          f"{result.best_metric:.4f}")
    return result


def _overlay(info: Any, run_dir: Path, out: Path) -> Path:
    from medtoken.data.io import read_image, read_label, split_file_ending
    from medtoken.plots.overlay import plot_overlay
    from medtoken.utils.jsonio import read_json

    summary = read_json(run_dir / "validation" / "summary.json", "the run's validation summary")
    first = summary["metric_per_case"][0]
    case_id = split_file_ending(Path(first["prediction_file"]))[0]
    image, _ = read_image(info.case(case_id).images)
    reference, _ = read_label(Path(first["reference_file"]))
    prediction, _ = read_label(Path(first["prediction_file"]))
    return plot_overlay(image, out, reference, prediction, title=f"{run_dir.name}: {case_id}")


def run(args: argparse.Namespace) -> int:
    from medtoken.benchmark.compare import compare_runs, comparison_table, write_comparison
    from medtoken.data.datasets import load_dataset
    from medtoken.data.synthetic import make_synthetic_dataset
    from medtoken.utils.device import resolve_device

    work = Path(args.work)
    data = Path(args.data) if args.data else make_synthetic_dataset(work / "data", spatial_dims=3,
                                                                    num_cases=20, seed=0)
    info = load_dataset(data)
    names = _pair(args, info.spatial_dims)
    print(f"dataset: {data} ({info.layout}, {len(info.cases)} cases, {info.spatial_dims}D); "
          f"models: {' vs '.join(names)}; budget: {args.minutes} min each")
    results = {name: _train(name, data, work, args) for name in names}
    print("timing whole cases and measuring peak memory ...")
    rows = compare_runs([(n, r.run_dir, r.steps_done) for n, r in results.items()], data,
                        resolve_device(args.device))
    print(comparison_table(rows))
    table, _, picture = write_comparison(
        rows, work, title=f"{' vs '.join(names)}: same {args.minutes:g}-minute budget")
    overlay = _overlay(info, results[names[0]].run_dir, work / "overlay.png")
    print(f"run folders: {', '.join(str(r.run_dir) for r in results.values())}\n"
          f"table: {table}\npicture: {picture}\noverlay: {overlay}")
    return 0
