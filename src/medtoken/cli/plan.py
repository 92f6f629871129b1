"""Plan a dataset as nnU-Net v2 does: fingerprint, then nnUNetPlans.json (2d, 3d_fullres)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from medtoken.cli.options import add_out
from medtoken.utils.errors import InputError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="DATA", help="dataset folder (MSD, nnU-Net raw or 2D folder)")
    add_out(p, "plans file to write (default: print the plans to stdout)",
            metavar="PLANS.json")
    p.add_argument("--fingerprint", metavar="FINGERPRINT.json",
                   help="also write nnU-Net's dataset_fingerprint.json here")
    p.add_argument("--foreground-samples", type=float, default=10e7, metavar="N",
                   help="foreground intensities sampled in all (default: nnU-Net's 10e7; "
                        "fewer is faster but gives intensity statistics nnU-Net would not)")


def _check_target(option: str, value: str | None) -> None:
    if value is None:
        return
    if not value.lower().endswith(".json"):
        raise InputError(option, f"must name a .json file, got {value}")
    if Path(value).name == "dataset.json":
        raise InputError(option, "refusing to write over a dataset.json")


def _summary(plans: dict[str, Any]) -> list[str]:
    lines = [f"{plans['dataset_name']}: transpose_forward {plans['transpose_forward']}, "
             f"median spacing {plans['original_median_spacing_after_transp']}"]
    for name, config in plans["configurations"].items():
        if "patch_size" not in config:
            continue
        kw = config["architecture"]["arch_kwargs"]
        lines.append(f"  {name}: patch {config['patch_size']}, batch {config['batch_size']}, "
                     f"spacing {[round(s, 4) for s in config['spacing']]}, {kw['n_stages']} "
                     f"stages {kw['features_per_stage']}, strides {kw['strides']}")
    return lines


def run(args: argparse.Namespace) -> int:
    from medtoken.data.datasets import load_dataset
    from medtoken.planning.plans import plan_dataset, write_plans
    from medtoken.utils.atomic import atomic_write_text

    _check_target("--out", args.out)
    if not args.foreground_samples >= 1:
        raise InputError("--foreground-samples", f"must be >= 1, got {args.foreground_samples}")
    _check_target("--fingerprint", args.fingerprint)
    plans, fingerprint = plan_dataset(load_dataset(args.path),
                                      num_foreground_voxels=args.foreground_samples)
    if args.fingerprint:
        atomic_write_text(args.fingerprint, json.dumps(fingerprint.to_dict(), indent=4) + "\n")
    if args.out is None:
        print(json.dumps(plans, indent=4))
        for line in _summary(plans):
            log.info(line)
        return 0
    write_plans(plans, args.out)
    print("\n".join(_summary(plans)))
    print(f"plans written to {args.out}")
    return 0
