"""Time, measure and compare models side by side (latency, throughput, memory, FLOPs).

Examples::

    medtoken benchmark --models scd_btcv,unetr_btcv --baseline monai_unetr3d \\
        --input-size 1,1,96,96,96 --mode infer --device cuda --amp
    medtoken benchmark --models "unet3d:channels=[8,16]" --input-size 2,1,32,32,32 \\
        --sweep batch_size=1,2,4
    medtoken benchmark --models unet3d --input-size 2,1,40,56,40 --mode volume \\
        --data ../shared/data/msd_hippocampus --repeats 10 --stitching slab,full
    medtoken benchmark --models unet3d:num_classes=14 --input-size 2,1,96,96,96 --mode volume \\
        --volume-size 512,512,300 --spacing 0.8,0.8,2.5 --repeats 1 --warmup 0
"""

from __future__ import annotations

import argparse
import shlex

from medtoken.cli.options import add_out

_DEFAULT_OUT = "benchmark-results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", required=True, metavar="SPEC[,SPEC...]",
                   help="presets with optional overrides: 'tmunet_b:mstm.mlstm_mode=parallel,"
                   "num_classes=2' (values are YAML, nested keys dotted)")
    p.add_argument("--baseline", metavar="SPEC", help="model the others are compared with")
    p.add_argument("--input-size", required=True, metavar="B,C,D,H,W|B,C,H,W",
                   help="C and the spatial size set the models' in_channels and roi_size; in "
                   "volume mode B is the sliding-window batch and the spatial size the window")
    p.add_argument("--mode", choices=("infer", "train", "volume"), default="infer",
                   help="infer: eval forward; train: forward+backward+step; volume: "
                   "whole cases predicted as 'medtoken predict' does, one process each, on "
                   "--data or generated --volume-size cases (default: infer)")
    p.add_argument("--repeats", type=int, default=20, metavar="N",
                   help="timed steps per model, interleaved; volume mode: cases (default: 20)")
    p.add_argument("--warmup", type=int, default=5, metavar="N",
                   help="untimed steps per model first (default: 5)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--amp", nargs="?", const="on", default="off", metavar="off|on|both",
                   help="autocast (float16 on CUDA, bfloat16 on CPU): on, or both = each model "
                   "in float32 and under autocast side by side (default: off)")
    p.add_argument("--threads", type=int, metavar="N", help="torch.set_num_threads(N)")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...",
                   help="one point per value: batch_size, roi_size (the input's spatial size, "
                   "e.g. roi_size=[32,32],[64,64]) or a model config key (applied to --models; "
                   "the baseline stays as it is)")
    p.add_argument("--data", metavar="PATH", help="dataset folder for --mode volume")
    p.add_argument("--volume-size", metavar="X,Y,Z",
                   help="--mode volume on generated CT-like cases of this size (one per repeat)")
    p.add_argument("--spacing", metavar="SX,SY,SZ",
                   help="voxel spacing in mm of the generated cases (recorded)")
    p.add_argument("--stitching", default="slab", metavar="slab[,full]",
                   help="volume mode: how cases are stitched; 'slab,full' runs both, "
                   "interleaved (default: slab, as medtoken predict)")
    p.add_argument("--accumulate-dtype", choices=("float16", "float32"),
                   help="volume mode: slab stitching's accumulation dtype (default: "
                   "medtoken predict's, float16)")
    p.add_argument("--overlap", type=float, default=0.5,
                   help="sliding-window overlap in volume mode (default: 0.5)")
    p.add_argument("--memory", choices=("isolated", "inprocess", "off"), default="isolated",
                   help="peak memory: a fresh process per model on CPU (isolated, default), a "
                   "sampled in-process estimate, or off; volume mode always measures each run's "
                   "own process")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, N forwards per model with the time split by top-level "
                   "submodule (where the time goes; default: 0 = off)")
    p.add_argument("--compile", nargs="?", const="on", default="off", metavar="off|on|both",
                   help="torch.compile the models (inductor): on, or both = each model eager and "
                   "compiled side by side; compile time is reported apart (default: off)")
    add_out(p, f"folder for results.json/.csv/.md and charts (default: {_DEFAULT_OUT})",
            default=_DEFAULT_OUT, metavar="DIR")


def command_line(args: argparse.Namespace) -> str:
    """The full command line, every option spelled out, to reproduce the run."""
    parts = ["medtoken", "benchmark", "--models", args.models]
    if args.baseline:
        parts += ["--baseline", args.baseline]
    parts += ["--input-size", args.input_size, "--mode", args.mode, "--repeats",
              str(args.repeats), "--warmup", str(args.warmup), "--device", args.device]
    parts += ["--amp", args.amp] if args.amp != "off" else []
    parts += ["--threads", str(args.threads)] if args.threads else []
    parts += ["--sweep", args.sweep] if args.sweep else []
    if args.mode == "volume":
        parts += ["--data", str(args.data)] if args.data else \
            ["--volume-size", args.volume_size] + (["--spacing", args.spacing]
                                                   if args.spacing else [])
        parts += ["--stitching", args.stitching, "--overlap", str(args.overlap)]
        parts += ["--accumulate-dtype", args.accumulate_dtype] if args.accumulate_dtype else []
    parts += ["--profile", str(args.profile)] if args.profile else []
    parts += ["--compile", args.compile] if args.compile != "off" else []
    parts += ["--memory", args.memory, "--out", args.out]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from medtoken.benchmark.report import write_results
    from medtoken.benchmark.runner import BenchmarkSettings, run_benchmark
    from medtoken.benchmark.spec import parse_input_size, parse_sweep
    from medtoken.benchmark.volume import parse_volume_size
    from medtoken.config import parse_spec, parse_specs
    from medtoken.utils.errors import InputError

    volume_size = spacing = None
    if args.mode == "volume":
        if bool(args.data) == bool(args.volume_size):
            raise InputError("--data", "--mode volume needs a dataset folder or --volume-size "
                             "(one of them)")
        if args.volume_size:
            volume_size = parse_volume_size(args.volume_size, "--volume-size")
        if args.spacing:
            spacing = parse_volume_size(args.spacing, "--spacing", float)
    stitching = tuple(s.strip() for s in args.stitching.split(","))
    if any(s not in ("slab", "full") for s in stitching) or len(set(stitching)) < len(stitching):
        raise InputError("--stitching", f"must be slab, full or slab,full, got {args.stitching!r}")
    try:
        settings = BenchmarkSettings(
            input_size=parse_input_size(args.input_size), mode=args.mode, repeats=args.repeats,
            warmup=args.warmup, device=args.device, amp=args.amp, threads=args.threads,
            data=args.data, volume_size=volume_size, spacing=spacing, stitching=stitching,
            accumulate_dtype=args.accumulate_dtype, overlap=args.overlap, memory=args.memory,
            profile=args.profile, compile=args.compile)
    except ValueError as err:
        raise InputError(None, str(err)) from None
    records = run_benchmark(parse_specs(args.models),
                            settings,
                            baseline=parse_spec(args.baseline) if args.baseline else None,
                            sweep=parse_sweep(args.sweep) if args.sweep else None)
    paths = write_results(records, args.out, command_line(args))
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
