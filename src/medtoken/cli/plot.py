"""Draw pictures: prediction overlays, training curves, accuracy-vs-speed plots, kept tokens.

Each picture is a sub-command with an ``_add_<name>(parser)`` and a ``_run_<name>(args)``
function, registered in ``PLOTS``; adding a picture means adding those two and one entry.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from medtoken.cli.options import add_out, parse_named
from medtoken.plots.pareto import AXES
from medtoken.utils.errors import InputError


def _add_out(p: argparse.ArgumentParser) -> None:
    add_out(p, "PNG to write", required=True, metavar="OUT.png")


def _add_overlay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, nargs="+", metavar="CASE",
                   help="image file (or one file per channel)")
    p.add_argument("--label", metavar="GT", help="reference label map (green contours)")
    p.add_argument("--pred", metavar="PRED", help="predicted label map (red contours)")
    _add_out(p)


def _run_overlay(args: argparse.Namespace) -> str:
    from medtoken.data.io import read_image, read_label
    from medtoken.plots.overlay import plot_overlay

    image, _ = read_image(args.image)
    maps = {}
    for flag, path in (("--label", args.label), ("--pred", args.pred)):
        if path:
            labels, _ = read_label(path)
            if labels.shape != image.shape[1:]:
                raise InputError(path, f"{flag} shape {labels.shape} differs from the image "
                                 f"shape {image.shape[1:]}")
            maps[flag] = labels
    return str(plot_overlay(image, args.out, reference=maps.get("--label"),
                            prediction=maps.get("--pred"), title=str(args.image[0])))


def _add_curves(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", dest="run_dir", required=True, metavar="RUN_DIR",
                   help="training run folder (holding log.csv)")
    _add_out(p)


def _run_curves(args: argparse.Namespace) -> str:
    from medtoken.plots.curves import plot_training_curves

    return str(plot_training_curves(args.run_dir, args.out))


def _add_learning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, nargs="+", metavar="NAME=RUN_DIR",
                   help="training run folders (holding log.csv), each named for the legend")
    p.add_argument("--title", default="", help="title of the picture")
    _add_out(p)


def _run_learning(args: argparse.Namespace) -> str:
    from medtoken.plots.curves import PLATEAU_POINTS, plot_learning_curves

    runs = parse_named(args.runs, "--runs", "RUN_DIR")
    for name, s in plot_learning_curves(runs, args.out, title=args.title).items():
        hours = "–" if math.isnan(s.hours) else f"{s.hours:.2f}"
        if s.decided:
            verdict = "plateaued" if s.plateaued else "still rising"
            quarter = (f"last quarter {100 * s.last_quarter_gain:+.2f} points ({verdict} by the "
                       f"{PLATEAU_POINTS}-point rule)")
        else:
            quarter = "plateau undecided (needs validations before and in the last quarter)"
        patches = "" if s.patches is None else f" ({s.patches:,} patches)"
        print(f"{name}: {s.steps} steps{patches}, {hours} h, validation Dice final "
              f"{s.final_dice:.4f}, best {s.best_dice:.4f}; {quarter}")
    return str(args.out)


def _add_pareto(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", required=True, metavar="results.json",
                   help="results.json of medtoken benchmark")
    p.add_argument("--summaries", required=True, nargs="+", metavar="NAME=summary.json",
                   help="per model: its benchmark label, spec or preset = summary.json of "
                   "medtoken evaluate")
    p.add_argument("--mode", choices=("infer", "train", "volume"),
                   help="use the benchmark records of this mode (when results.json has several)")
    p.add_argument("--x", nargs="+", choices=AXES, metavar="AXIS",
                   help="cost axes, one panel each: throughput, latency, memory (default: "
                   "latency and memory when every record is a whole-case volume record with "
                   "both measured, else throughput)")
    p.add_argument("--title", default="", help="title of the picture")
    _add_out(p)


def _run_pareto(args: argparse.Namespace) -> str:
    from medtoken.plots.pareto import load_pareto_points, plot_pareto

    summaries = parse_named(args.summaries, "--summaries", "summary.json")
    points = load_pareto_points(args.results, summaries, mode=args.mode)
    return str(plot_pareto(points, args.out, title=args.title, axes=args.x))


def _add_tokens(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint of an SCD or "
                   "TokenSeg model")
    p.add_argument("-i", "--input", required=True, nargs="+", metavar="CASE",
                   help="image file (or one file per channel)")
    p.add_argument("--slice", type=int, help="3D: slice along the last axis (default: the one "
                   "with most kept tokens)")
    _add_out(p)


def _run_tokens(args: argparse.Namespace) -> str:
    import torch

    from medtoken.data.io import read_image
    from medtoken.data.preprocess import NormalizationPlan, normalize
    from medtoken.models.checkpoint import load_model_checkpoint
    from medtoken.plots.tokens import center_window, plot_token_maps, token_maps

    loaded = load_model_checkpoint(args.model)
    model = loaded.model
    image, _ = read_image(args.input)
    if image.shape[0] != model.in_channels:
        raise InputError(args.input[0], f"has {image.shape[0]} channel(s); the model expects "
                         f"{model.in_channels}")
    roi = model.fixed_input_size or model.config.roi_size
    window = center_window(image, roi)  # (C, *roi): the window the model sees
    x = normalize(window, NormalizationPlan.from_dict(loaded.dataset["normalization"]))
    with torch.inference_mode():
        selection = model.forward_with_aux(torch.from_numpy(x)[None]).tokens
    maps = token_maps(selection, roi)
    return str(plot_token_maps(window, maps, args.out, title=str(args.input[0]),
                               slice_index=args.slice))


# picture name -> (help, add_arguments, run returning the written path)
PLOTS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                       Callable[[argparse.Namespace], str]]] = {
    "overlay": ("reference and prediction contours over image slices", _add_overlay,
                _run_overlay),
    "curves": ("training loss, validation Dice per class and learning rate of a run",
               _add_curves, _run_curves),
    "learning": ("validation Dice of several runs against training steps and hours, with "
                 "each run's plateau check", _add_learning, _run_learning),
    "pareto": ("foreground Dice against throughput, latency or peak memory, one point per model",
               _add_pareto, _run_pareto),
    "tokens": ("which tokens each stage of an SCD or TokenSeg model kept, over the image",
               _add_tokens, _run_tokens),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="picture", required=True, metavar="PICTURE")
    for name, (help_text, add, run_fn) in PLOTS.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        add(q)
        q.set_defaults(plot_run=run_fn)


def run(args: argparse.Namespace) -> int:
    path = args.plot_run(args)
    print(f"wrote {path}")
    return 0
