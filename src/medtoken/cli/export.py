"""Export a trained model to ONNX or TorchScript (with a sidecar), optionally verified and timed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medtoken.cli.options import add_out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint file")
    p.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    add_out(p, "model file to write; the sidecar goes to OUT.json", old=("--output",),
            required=True)
    p.add_argument("--dynamic-batch", action="store_true",
                   help="free batch axis (default: batch 1)")
    p.add_argument("--verify", action="store_true",
                   help="compare with PyTorch on random and real windows; fail beyond 1e-4 or "
                        "0.01%% differing labels")
    p.add_argument("--benchmark", type=int, default=0, metavar="N",
                   help="time eager PyTorch vs the export, N interleaved repeats after 3 warm-ups")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for verify and benchmark")
    p.add_argument("--exporter", default="auto",
                   help="ONNX exporter: auto (dynamo, else TorchScript-based), dynamo, torchscript")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")


def _describe(sidecar: dict[str, Any]) -> str:
    variant = ", ".join(f"{k} {v}" for k, v in sidecar["variant"].items())
    batch = "dynamic batch" if sidecar["dynamic_batch"] else f"batch {sidecar['batch_size']}"
    how = sidecar["exporter"] + (f", opset {sidecar['opset']}" if sidecar["opset"] else "")
    roi = "x".join(map(str, sidecar["roi_size"]))
    return (f"{sidecar['family']} ({sidecar['preset']}{'; ' + variant if variant else ''}), "
            f"window {roi}, {batch}, {sidecar['format']} via {how}")


def _print_verification(verification: dict[str, Any]) -> None:
    for check in verification["checks"]:
        print(f"  verify {check['name']}: max abs diff {check['max_abs_diff']:.3g}, labels "
              f"differ on {100 * check['label_disagreement']:.4f}% of voxels")
    for reason in verification["skipped"]:
        print(f"  verify skipped: {reason}")
    print(f"  verified: max abs diff {verification['max_abs_diff']:.3g} <= "
          f"{verification['atol']:g}, label disagreement "
          f"{100 * verification['label_disagreement']:.4f}% <= "
          f"{100 * verification['max_label_disagreement']:.2f}%")


def run(args: argparse.Namespace) -> int:
    from medtoken.export import ExportOptions, export_model
    from medtoken.export.onnx import DEFAULT_OPSET

    options = ExportOptions(model=Path(args.model), output=Path(args.out), format=args.format,
                            dynamic_batch=args.dynamic_batch, verify=args.verify,
                            benchmark=args.benchmark, threads=args.threads,
                            exporter=args.exporter, opset=args.opset or DEFAULT_OPSET)
    result = export_model(options)
    sidecar = result.sidecar
    print(f"exported {_describe(sidecar)} to {result.path}")
    if sidecar["verification"] is not None:
        _print_verification(sidecar["verification"])
    if sidecar["benchmark"] is not None:
        b = sidecar["benchmark"]
        runtime = "onnxruntime" if sidecar["format"] == "onnx" else "TorchScript"
        print(f"  benchmark ({b['threads']} thread(s), batch {b['batch_size']}, median of "
              f"{b['repeats']}): PyTorch eager {b['eager_ms']:.2f} ms, {runtime} "
              f"{b['exported_ms']:.2f} ms, ratio {b['ratio']:.3f} (exported / eager)")
    print(f"  sidecar: {result.sidecar_path}")
    return 0
