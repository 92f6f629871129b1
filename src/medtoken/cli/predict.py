"""Predict a file or a folder of images with a trained model or an ensemble (original geometry)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medtoken.cli.options import add_out, add_spacing


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, nargs="+", metavar="RUN",
                   help="run folder, checkpoint file, or exported model (.onnx with its sidecar);"
                   " several (or a folder of fold_N runs) are an ensemble: softmax averaged")
    p.add_argument("-i", "--input", required=True, help="image file or folder")
    add_out(p, "output folder", old=("--output",), required=True)
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (0..1)")
    p.add_argument("--tta", action="store_true", help="average over mirrored inputs")
    add_spacing(p, "plan", "plan, the spacing the model was trained at")
    p.add_argument("--device", default="auto", help="where windows run: auto, cpu or cuda")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (inductor; checkpoints only): slower first "
                   "case, faster windows after it")
    p.add_argument("--stitching", choices=("slab", "full"), default="slab",
                   help="slab: blend and argmax slab by slab, memory grows with the voxels "
                   "(default); full: MONAI's whole-volume float32 probabilities (reference)")
    p.add_argument("--accumulate-dtype", choices=("float16", "float32"),
                   help="slab accumulators (default float16; full is always float32)")
    p.add_argument("--accumulate-device", default="auto",
                   help="where windows are stitched: auto (the window device if it fits, else "
                   "cpu), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=2, metavar="N", help="windows per call")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write {case}.npz with 'probabilities' (K, *S) beside the labels")
    p.add_argument("--probabilities-dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--force-memory", action="store_true",
                   help="predict a case even if its estimated peak exceeds the free memory")
    p.add_argument("--threads", type=int, metavar="N", help="torch.set_num_threads(N)")
    p.add_argument("--skip-existing", action="store_true", help="keep outputs that exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--postprocess", metavar="FILE",
                   help="postprocessing.json (from determine-postprocessing) applied to the labels")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="inference-time model overrides that keep the weights valid, e.g. "
                   "selection.num_selected=50 or pruning.keep_ratio=0.2 (checkpoints only)")


def run(args: argparse.Namespace) -> int:
    import torch

    from medtoken.config import parse_set_args
    from medtoken.data.datasets import list_input_cases
    from medtoken.inference.ensemble import load_members
    from medtoken.inference.options import PredictOptions
    from medtoken.inference.predict import check_postprocessing, predict_cases
    from medtoken.utils.device import resolve_device
    from medtoken.utils.errors import InputError

    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads", f"must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    options = PredictOptions(
        overlap=args.overlap, tta=args.tta, stitching=args.stitching,
        accumulate_dtype=args.accumulate_dtype, accumulate_device=args.accumulate_device,
        batch_size=args.batch_size, save_probabilities=args.save_probabilities,
        probabilities_dtype=args.probabilities_dtype, force_memory=args.force_memory,
        target_spacing=args.spacing, compile=args.compile,
        progress=not args.no_progress and not getattr(args, "quiet", False) and sys.stderr.isatty())
    device = resolve_device(args.device)
    members = load_members(args.model, device, overrides=parse_set_args(args.set),
                           threads=args.threads,
                           export_device=None if args.device == "auto" else device)
    plan = check_postprocessing(args.postprocess, members) if args.postprocess else None
    cases = list_input_cases(args.input, members[0].model.in_channels)
    if not cases:
        raise InputError(args.input, "no images found")
    report = predict_cases(members, cases, Path(args.out), options,
                           skip_existing=args.skip_existing, postprocess=plan)
    print(f"wrote {len(report.written)} prediction(s) to {args.out}"
          + (f", kept {len(report.skipped)} existing" if report.skipped else ""))
    if report.failed:
        names = ", ".join(case_id for case_id, _ in report.failed)
        print(f"medtoken: error: {len(report.failed)} case(s) could not be predicted: {names}",
              file=sys.stderr)
        return 2
    return 0
