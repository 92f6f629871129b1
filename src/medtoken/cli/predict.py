"""Predict a file or a folder of images with a trained model (sliding window, original geometry)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="run folder, checkpoint file, or exported model (.onnx with its sidecar)")
    p.add_argument("-i", "--input", required=True, help="image file or folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (0..1)")
    p.add_argument("--tta", action="store_true", help="average over mirrored inputs")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--skip-existing", action="store_true", help="keep outputs that exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="inference-time model overrides that keep the weights valid, e.g. "
                   "selection.num_selected=50 or pruning.keep_ratio=0.2 (checkpoints only)")


def run(args: argparse.Namespace) -> int:
    from medtoken.config import parse_set_args
    from medtoken.data.datasets import list_input_cases
    from medtoken.export.runtime import is_exported, load_exported
    from medtoken.inference.predict import predict_cases
    from medtoken.train.checkpoint import load_model_checkpoint
    from medtoken.utils.device import resolve_device
    from medtoken.utils.errors import InputError

    if not 0.0 <= args.overlap < 1.0:
        raise InputError("--overlap", f"must be in [0, 1), got {args.overlap}")
    device = resolve_device(args.device)
    overrides = parse_set_args(args.set)
    if is_exported(args.model):  # `medtoken export` output; runs on the CPU unless told
        if overrides:
            raise InputError("--set", "an exported model is fixed; export again with the "
                             "overrides instead")
        loaded = load_exported(args.model, device=None if args.device == "auto" else device)
    else:
        loaded = load_model_checkpoint(args.model, device=device, overrides=overrides)
    cases = list_input_cases(args.input, loaded.model.in_channels)
    if not cases:
        raise InputError(args.input, "no images found")
    report = predict_cases(loaded, cases, Path(args.output), overlap=args.overlap, tta=args.tta,
                           skip_existing=args.skip_existing,
                           progress=not args.no_progress and sys.stderr.isatty())
    print(f"wrote {len(report.written)} prediction(s) to {args.output}"
          + (f", kept {len(report.skipped)} existing" if report.skipped else ""))
    if report.failed:
        names = ", ".join(case_id for case_id, _ in report.failed)
        print(f"medtoken: error: {len(report.failed)} case(s) could not be predicted: {names}",
              file=sys.stderr)
        return 2
    return 0
