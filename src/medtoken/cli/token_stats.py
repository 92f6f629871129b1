"""Report where a token model looks: selected tokens on the label boundary vs random selection."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from medtoken.cli.options import add_out
from medtoken.utils.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint of an SCD or "
                   "TokenSeg model")
    p.add_argument("--data", help="labelled dataset folder (default: the one the model was "
                   "trained on)")
    p.add_argument("--fold", default="0", help="report on this fold's validation cases, or "
                   "'all' for every labelled case (default: 0)")
    p.add_argument("--cases", type=int, help="at most this many cases (the first ones)")
    p.add_argument("--radius", type=int, default=2, help="boundary band half-width in voxels "
                   "(default: 2)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="inference-time model overrides, e.g. selection.num_selected=50")
    add_out(p, "JSON to write", required=True, metavar="REPORT.json")


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float:
        values = [r[key] for r in rows if not math.isnan(r[key])]
        return float(np.mean(values)) if values else math.nan

    return {"cases": len(rows), "windows": sum(r["windows"] for r in rows),
            "selected_hit_fraction": mean("selected_hit_fraction"),
            "random_hit_fraction": mean("random_hit_fraction")}


def run(args: argparse.Namespace) -> int:
    from medtoken.config import parse_set_args
    from medtoken.data.datasets import load_dataset
    from medtoken.data.preprocess import NormalizationPlan
    from medtoken.data.splits import get_fold
    from medtoken.metrics.tokens import case_token_hits
    from medtoken.models.checkpoint import load_model_checkpoint
    from medtoken.train.data import load_cases
    from medtoken.utils.atomic import atomic_write_text

    loaded = load_model_checkpoint(args.model, overrides=parse_set_args(args.set))
    model, state = loaded.model, loaded.state
    facts = state.get("dataset", {})
    data = args.data or facts.get("root")
    if not data:
        raise InputError("--data", "the checkpoint does not record its dataset; pass --data")
    info = load_dataset(data)
    ids = list(info.case_ids) if args.fold == "all" else list(get_fold(info, args.fold)[1])
    ids = ids[:args.cases] if args.cases else ids
    plan = NormalizationPlan.from_dict(facts["normalization"])
    rows = [case_token_hits(model, case.case_id, case.image, case.label[0],
                            args.radius).to_dict()
            for case in load_cases(info, ids, plan)]  # read, checked, normalised as in training
    summary = _summary(rows)
    report = {"model": str(args.model), "preset": state.get("preset"), "data": str(data),
              "fold": args.fold, "radius": args.radius, "overrides": list(args.set),
              "summary": summary, "cases": rows}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"{summary['cases']} cases, {summary['windows']} windows: "
          f"{summary['selected_hit_fraction']:.3f} of selected tokens meet the boundary band "
          f"(radius {args.radius}) vs {summary['random_hit_fraction']:.3f} for random selection; "
          f"wrote {args.out}")
    return 0
