"""Apply a postprocessing.json (largest connected component) to a folder of label files."""

from __future__ import annotations

import argparse

from medtoken.cli.options import add_out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, help="folder of label files")
    add_out(p, "output folder (not the input folder)", required=True)
    p.add_argument("--plan", required=True,
                   help="postprocessing.json from `medtoken determine-postprocessing` (or "
                   "nnUNetv2_determine_postprocessing)")


def run(args: argparse.Namespace) -> int:
    from medtoken.postprocessing.folder import postprocess_folder

    written = postprocess_folder(args.input, args.out, args.plan)
    print(f"wrote {len(written)} post-processed label file(s) to {args.out}")
    return 0
