"""Train a model on a dataset fold into a run folder.

Under ``torchrun --nproc_per_node=N -m medtoken train ...`` the same flags train data-parallel
(docs/distributed.md); only rank 0 prints.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

from medtoken.cli.options import add_out, add_renamed, add_spacing
from medtoken.config import from_dict, parse_set_args, rename_keys
from medtoken.train.config import AMP_DTYPES, TrainConfig
from medtoken.utils.errors import InputError

TRAIN_PREFIX = "train."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder (MSD, nnU-Net raw or 2D)")
    p.add_argument("--model", required=True, help="model preset (see `medtoken models`)")
    add_out(p, "run folder to create", required=True)
    p.add_argument("--fold", nargs="+", default=["0"], metavar="F",
                   help="0-4 (nnU-Net 5-fold split) or 'all'; several folds (e.g. --fold 0 1 2 3 "
                   "4) train one after the other into OUT/fold_F, the layout that predict's "
                   "ensembles and determine-postprocessing read")
    p.add_argument("--recipe", default="medtoken", metavar="NAME",
                   help="training recipe: medtoken (default), tmunet, vit or nnunet "
                   "(docs/training.md); flags and --set train.* override its values")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="wall-clock budget")
    p.add_argument("--max-steps", type=int, help="optimiser step budget")
    add_renamed(p, "--roi-size", old=("--patch-size",), type=int, nargs="+", metavar="N",
                help="training patch = the model's sliding window (default: from the dataset, "
                "capped by the preset)")
    p.add_argument("--batch-size", type=int, help="patches per micro-batch and process "
                   "(default: the plan's for nnunet models, else 2)")
    p.add_argument("--accumulate", type=int, metavar="N",
                   help="micro-batches per optimiser step (gradient accumulation)")
    p.add_argument("--plans", metavar="FILE",
                   help="nnUNetPlans.json to build and train an nnunet model from (default: "
                   "planned from the dataset; docs/nnunet.md)")
    p.add_argument("--configuration", choices=("3d_fullres", "2d"),
                   help="plan configuration (default: 3d_fullres for 3D data, 2d for 2D)")
    add_spacing(p, None, "auto: plan for nnunet models, else native", auto=True)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--amp", nargs="?", const="auto", choices=AMP_DTYPES,
                   help="mixed precision: auto (fp16 on CUDA, bf16 on CPU), fp16 or bf16")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute transformer/MSTM block activations in the backward pass "
                   "(less memory, more compute)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (inductor; the first step compiles)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--val", action="store_true",
                   help="do not train: predict the fold's validation cases with the best "
                   "checkpoint of the run in --out into OUT/validation/ with its summary.json "
                   "(nnU-Net's --val; e.g. for a run stopped before its end)")
    p.add_argument("--tta", action="store_true",
                   help="the final validation (after training, or with --val) averages over "
                   "mirrored inputs, as nnU-Net's validation does (8 passes in 3D, 4 in 2D)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--force-memory", action="store_true",
                   help="train even when the estimated peak memory exceeds what is available")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="model config overrides (e.g. pruning.keep_ratio=0.3); "
                   "train.KEY=VALUE sets a training option (e.g. train.steps_per_epoch=100)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_train_config(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, object]]:
    """The training config (recipe, then ``--set train.*``, then flags), and the model
    overrides."""
    from medtoken.train.recipes import recipe_values

    overrides = parse_set_args(args.set)
    train_keys = rename_keys(TrainConfig, {k[len(TRAIN_PREFIX):]: v for k, v in overrides.items()
                                           if k.startswith(TRAIN_PREFIX)},
                             "--set train.*", TRAIN_PREFIX)  # old names first: the flags win
    model_overrides = {k: v for k, v in overrides.items() if not k.startswith(TRAIN_PREFIX)}
    flags = {"data": args.data, "model": args.model, "fold": str(args.fold[0]),
             "epochs": args.epochs, "max_minutes": args.max_minutes, "max_steps": args.max_steps,
             "roi_size": args.roi_size, "batch_size": args.batch_size, "lr": args.lr,
             "seed": args.seed, "amp": True if args.amp else None, "amp_dtype": args.amp,
             "grad_checkpointing": args.grad_checkpointing or None,
             "accumulate": args.accumulate, "plans": args.plans,
             "configuration": args.configuration, "spacing": args.spacing,
             "compile": args.compile or None, "val_tta": args.tta or None}
    values = {**recipe_values(args.recipe), **train_keys,
              **{k: v for k, v in flags.items() if v is not None}}
    return from_dict(TrainConfig, values, where="--set train.*"), model_overrides


def fold_runs(folds: list[str], out: str) -> list[tuple[str, Path]]:
    """``(fold, run folder)`` per requested fold: ``OUT`` for one fold, ``OUT/fold_F`` for
    several (the cross-validation layout of nnU-Net's ``fold_0`` … ``fold_4``)."""
    if len(set(folds)) != len(folds):
        raise InputError("--fold", f"a fold is given twice: {' '.join(folds)}")
    if len(folds) == 1:
        return [(folds[0], Path(out))]
    if "all" in (f.strip().lower() for f in folds):
        raise InputError("--fold", "'all' trains on every case; give it alone, not with folds")
    from medtoken.models.checkpoint import FOLD_DIR

    return [(fold, Path(out) / FOLD_DIR.format(fold=fold)) for fold in folds]


def check_fold_runs(runs: list[tuple[str, Path]], data: str, resume: bool,
                    overwrite: bool) -> None:
    """Refuse a bad fold list before anything trains: every fold must exist in the dataset's
    split and every run folder must be usable with ``--resume`` / ``--overwrite``.

    Raises:
        InputError: the first fold or run folder that would fail later.
    """
    from medtoken.data.datasets import load_dataset
    from medtoken.data.splits import get_fold
    from medtoken.train.run_folder import check_reusable

    info = load_dataset(data)
    for fold, _ in runs:
        get_fold(info, fold)
    for _, out in runs:
        check_reusable(out, resume, overwrite)


def run(args: argparse.Namespace) -> int:
    train_cfg, model_overrides = build_train_config(args)
    runs = fold_runs([str(f) for f in args.fold], args.out)
    if len(runs) > 1 and not args.val:  # one fold: fit checks the same before writing
        check_fold_runs(runs, args.data, args.resume, args.overwrite)
    for fold, out in runs:
        code = _train_one(replace(train_cfg, fold=fold), model_overrides, out, args)
        if code:
            return code
    return 0


def _train_one(train_cfg: TrainConfig, model_overrides: dict[str, object], out: Path,
               args: argparse.Namespace) -> int:
    if args.val:
        from medtoken.train.final_validation import validate_run

        summary = validate_run(out, train_cfg.data, train_cfg.fold, tta=train_cfg.val_tta)
        mirrored = ", mirroring TTA" if train_cfg.val_tta else ""
        print(f"validated {out} (fold {train_cfg.fold}, {summary['num_cases']} cases{mirrored}): "
              f"foreground mean Dice {summary['foreground_mean']['Dice']:.4f}")
        return 0
    from medtoken.train.fit import fit

    result = fit(train_cfg, out, model_overrides, device=args.device, resume=args.resume,
                 overwrite=args.overwrite, progress=False if args.no_progress else None,
                 force_memory=args.force_memory)
    quiet = result.rank != 0  # under torchrun rank 0 reports for the job
    if result.interrupted_by:
        if not quiet:
            print(f"stopped by {result.interrupted_by} after epoch {result.epochs_done}; resume "
                  f"with --resume (checkpoint: {result.run_dir / 'checkpoint_last.pt'})")
        return 130 if result.interrupted_by == "SIGINT" else 143
    if not quiet:
        best = (f"best validation mean foreground Dice {result.best_metric:.4f}"
                if math.isfinite(result.best_metric) else "no validation cases")
        print(f"trained {result.epochs_done} epochs ({result.steps_done} steps); {best}; "
              f"run folder: {result.run_dir}")
    return 0
