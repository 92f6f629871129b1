"""List the model presets with their parameter counts, or show one preset's config."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="shell pattern, e.g. 'scd_*'")
    p.add_argument("--show", metavar="NAME", help="print this preset's full config as YAML")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def count_parameters(name: str) -> int:
    """Parameters of preset ``name``, counted without allocating weights (meta device)."""
    import torch

    from medtoken.registry import create_model

    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def run(args: argparse.Namespace) -> int:
    import yaml

    from medtoken.config import to_dict
    from medtoken.registry import get_config, list_models

    if args.show:
        cfg = get_config(args.show)
        data = {"preset": args.show, "family": type(cfg).family, **to_dict(cfg)}
        print(json.dumps(data, indent=2) if args.json else yaml.safe_dump(data, sort_keys=False))
        return 0
    rows = []
    for name in list_models(args.pattern):
        cfg = get_config(name)
        rows.append({"preset": name, "family": type(cfg).family, "dims": cfg.spatial_dims,
                     "roi_size": list(cfg.roi_size), "params": count_parameters(name)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<22} {'family':<14} {'dims':>4} {'roi_size':<16} {'params':>12}")
    for r in rows:
        roi = "x".join(map(str, r["roi_size"]))
        print(f"{r['preset']:<22} {r['family']:<14} {r['dims']:>4} {roi:<16} {r['params']:>12,}")
    return 0
