"""``fit``: train a model on a dataset fold into a run folder.

The recipe's optimiser, schedule (over the step or time budget) and loss (+ the model's auxiliary
losses; nnU-Net's models bring their own deep-supervision loss instead; see
:mod:`medtoken.train.recipes`), gradient clipping, optional AMP, gradient accumulation, optional
activation checkpointing, validation on whole cases with sliding-window inference, atomic
checkpoints, resumable to the exact batch sequence, SIGINT/SIGTERM stop with a checkpoint. Under
``torchrun`` the same code trains data-parallel (see :mod:`medtoken.train.distributed`): rank 0
writes, and the final validation runs on rank 0 after the other ranks have left.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoken.config import to_dict
from medtoken.data.datasets import DatasetInfo, load_dataset
from medtoken.data.preprocess import NormalizationPlan, plan_normalization
from medtoken.data.splits import get_fold
from medtoken.models.checkpoint import load_checkpoint, save_checkpoint
from medtoken.registry import build_model, get_config
from medtoken.train import distributed as ddp
from medtoken.train.config import TrainConfig
from medtoken.train.data import LoadedCase, PatchSampler, load_cases
from medtoken.train.distributed import DistInfo
from medtoken.train.losses import build_loss
from medtoken.train.model_config import resolve_model_config
from medtoken.train.nnunet_plans import RunPlan, resolve_plan
from medtoken.train.optim import load_optimizer_state, optimizer_from_config, schedule_from_config
from medtoken.train.run_folder import RunFolder
from medtoken.train.validate import validate
from medtoken.utils.device import seed_everything, seed_step
from medtoken.utils.errors import InputError

__all__ = ["FitResult", "accumulate_gradients", "fit"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Outcome of :func:`fit` (the same on every rank but for ``rank``)."""

    run_dir: Path
    best_metric: float
    epochs_done: int
    steps_done: int
    interrupted_by: str | None = None
    rank: int = 0


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn SIGINT/SIGTERM into a flag (the signal number) the loop checks between steps."""
    flag = {"signal": 0}

    def handler(signum: int, _frame: Any) -> None:
        flag["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _check_patch(model: Any) -> None:
    roi = model.config.roi_size
    bad = [r for r, m in zip(roi, model.input_multiple, strict=True) if r % m]
    if bad:
        raise InputError("--roi-size", f"{tuple(roi)} is not divisible by "
                         f"{model.input_multiple} as this model requires")


def _refuse_bad_data(root: str) -> None:
    """The checks of ``medtoken check-dataset``; the first problem and the count if any."""
    from medtoken.data.check import check_dataset

    _, problems = check_dataset(root)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `medtoken check-dataset " \
               f"{root}` for all)" if len(problems) > 1 else ""
        first = problems[0]
        case = f"{first.case_id}: " if first.case_id else ""
        raise InputError(first.path, f"{case}{first.message}{more}")


def _refuse_memory(model: Any, cfg: TrainConfig, dev: torch.device) -> None:
    """Refuse a run whose estimated peak memory exceeds what ``dev`` has available."""
    from medtoken.train.memory import check_memory_fits, estimate_training_memory
    from medtoken.utils.memory import available_memory

    estimate = estimate_training_memory(model, cfg.micro_batch_size, model.config.roi_size, dev,
                                        cfg.accumulate, _amp_dtype(cfg, dev), cfg)
    check_memory_fits(estimate, available_memory(dev))
    log.debug("%s (training memory)", estimate.summary())


def fit(train_cfg: TrainConfig, out_dir: str | Path, model_overrides: dict[str, Any] | None = None,
        device: str = "auto", resume: bool = False, overwrite: bool = False,
        progress: bool | None = None, force_memory: bool = False) -> FitResult:
    """Train ``train_cfg.model`` on ``train_cfg.data`` (its ``fold``) into ``out_dir``.

    Before anything is written, the dataset is checked like ``medtoken check-dataset`` (bad data
    is refused) and the peak training memory is estimated (refused when it exceeds what is
    available, unless ``force_memory``).

    Launched by ``torchrun`` with ``WORLD_SIZE > 1``, every process calls this with the same
    arguments; each returns the same :class:`FitResult` (with its ``rank``).
    """
    get_config(train_cfg.model)  # an unknown preset fails before any data is read
    with ddp.process_group(device) as (dist, dev), ddp.quiet_unless_main(dist):
        ddp.run_on_main(lambda: _refuse_bad_data(train_cfg.data), dist)
        info = load_dataset(train_cfg.data)
        train_cfg, run_plan = resolve_plan(train_cfg, info)
        train_ids, val_ids = get_fold(info, train_cfg.fold)
        trainer = _build_trainer(train_cfg, info, train_ids, val_ids, dict(model_overrides or {}),
                                 dev, dist, out_dir, resume, overwrite, force_memory,
                                 run_plan)
        if progress is None:
            progress = sys.stderr.isatty()
        result = trainer.run(progress and dist.is_main)
    if dist.is_main and result.interrupted_by is None and val_ids:
        from medtoken.train.final_validation import final_validation

        # rank 0 alone, the others have left
        final_validation(trainer.folder, info, val_ids, tta=train_cfg.val_tta)
    return result


def _build_trainer(train_cfg: TrainConfig, info: DatasetInfo, train_ids: list[str],
                   val_ids: list[str], model_overrides: dict[str, Any], dev: torch.device,
                   dist: DistInfo, out_dir: str | Path, resume: bool,
                   overwrite: bool, force_memory: bool = False,
                   nnunet: RunPlan | None = None) -> _Trainer:
    """Load the data, build the model, prepare the run folder (rank 0), restore if resuming."""
    nnunet = nnunet or RunPlan(None, None)
    plan = plan_normalization(info, train_ids)
    train_cases = load_cases(info, train_ids, plan, nnunet.spacing)
    val_cases = load_cases(info, ddp.split_for_rank(val_ids, dist), plan,  # this rank's share
                           nnunet.spacing)
    model_cfg = resolve_model_config(train_cfg, info, model_overrides, train_cases, nnunet.plan)
    seed_everything(train_cfg.seed)  # identical initial weights on every rank
    model = build_model(model_cfg).to(dev)
    _check_patch(model)
    if train_cfg.compile and model.compiled_training_problem:  # before the run folder
        raise InputError("--compile", model.compiled_training_problem)
    if train_cfg.grad_checkpointing:
        from medtoken.train.activation_checkpointing import apply_grad_checkpointing

        if not apply_grad_checkpointing(model) and dist.is_main:
            log.warning("--grad-checkpointing: %s has no transformer or MSTM blocks to "
                        "checkpoint; training as usual", train_cfg.model)
    if not force_memory:
        ddp.run_on_main(lambda: _refuse_memory(model, train_cfg, dev), dist)
    dataset_facts = {**_dataset_facts(info, plan), **nnunet.facts()}
    resolved = {"train": to_dict(train_cfg), "model": {"preset": train_cfg.model,
                "family": type(model_cfg).family, **to_dict(model_cfg)},
                "dataset": {**dataset_facts, "train_cases": len(train_ids),
                            "val_cases": len(val_ids)},
                "runtime": {"world_size": dist.world_size, "device": dev.type}}
    run = RunFolder(out_dir)
    ddp.run_on_main(lambda: run.prepare(resolved, resume=resume, overwrite=overwrite,
                                        plans=nnunet.plans), dist)
    trainer = _Trainer(train_cfg, model, dev, run, dataset_facts, train_cases, val_cases,
                       bool(val_ids), dist)
    if resume:
        trainer.restore()
    if dist.enabled:
        log.info("data-parallel on %d processes (%s): %d patches per optimiser step",
                 dist.world_size, dev.type,
                 train_cfg.micro_batch_size * train_cfg.accumulate * dist.world_size)
    return trainer


def _dataset_facts(info: DatasetInfo, plan: NormalizationPlan) -> dict[str, Any]:
    """What prediction needs to know about the training data (stored in every checkpoint)."""
    return {"root": str(info.root), "layout": info.layout,
            "labels": {str(k): v for k, v in info.labels.items()},
            "channel_names": list(info.channel_names), "file_ending": info.file_ending,
            "spatial_dims": info.spatial_dims, "normalization": plan.to_dict()}


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` on ``device``, or ``None`` without AMP."""
    if not cfg.amp:
        return None
    if cfg.amp_dtype == "fp16" and device.type != "cuda":
        raise InputError("--amp", "fp16 needs CUDA; use bf16 (or auto) on the CPU")
    if cfg.amp_dtype == "bf16" or (cfg.amp_dtype == "auto" and device.type != "cuda"):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise InputError("--amp", "this GPU does not support bf16; use fp16 (or auto)")
        return torch.bfloat16
    return torch.float16


def accumulate_gradients(module: torch.nn.Module, loss_fn: Callable[..., torch.Tensor],
                         batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]], n: int,
                         scaler: torch.amp.GradScaler,
                         autocast: Callable[[], AbstractContextManager[Any]]) -> float:
    """Backward passes over ``n`` micro-batches, each loss scaled by ``1/n``; DDP syncs on the last.

    Args:
        module: ``(x, y) -> (logits, auxiliary loss)`` (a :class:`ddp.TrainForward`, maybe in DDP).
        loss_fn: ``(logits (B, K, *P) float32, y (B, 1, *P)) -> scalar``.
        batch: micro-batch ``i`` as ``(x (B, C, *P), y (B, 1, *P))`` on the module's device.
        n: micro-batches per optimiser step.
        scaler: the gradient scaler (disabled without fp16).
        autocast: a fresh autocast context per call.

    Returns:
        the mean loss of the micro-batches.
    """
    total = 0.0
    for i in range(n):
        x, y = batch(i)
        with ddp.sync_gradients(module, sync=i == n - 1):
            with autocast():
                logits, aux = module(x, y)
                loss = loss_fn(logits.float(), y) + aux
            scaler.scale(loss / n).backward()
        total += float(loss.detach())
    return total / n


class _Trainer:
    """The epoch loop with its state (kept out of ``fit`` so each piece stays short)."""

    def __init__(self, cfg: TrainConfig, model: Any, device: torch.device, run: RunFolder,
                 dataset: dict[str, Any], train_cases: list[LoadedCase],
                 val_cases: list[LoadedCase], has_val: bool, dist: DistInfo = ddp.SINGLE) -> None:
        self.cfg, self.model, self.device, self.folder = cfg, model, device, run
        self.dataset, self.dist = dataset, dist
        self.val_cases, self.has_val = val_cases, has_val  # this rank's share; any rank has some
        self.sampler = PatchSampler(train_cases, model.config.roi_size, cfg.micro_batch_size,
                                    cfg.seed, rank=dist.rank,
                                    foreground_ratio=cfg.foreground_ratio)
        self.loss_fn = build_loss(cfg, model)
        self.optimizer = optimizer_from_config(model, cfg)
        self.schedule = schedule_from_config(self.optimizer, cfg)
        self.amp_dtype = _amp_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step_module = ddp.wrap_for_training(model, dist, device, compile=cfg.compile)
        self.epoch = 0
        self.best = -math.inf
        self.rows = run.read_log() if dist.is_main else []
        self.class_names = [dataset["labels"][k] for k in sorted(dataset["labels"], key=int)][1:]

    def state(self) -> dict[str, Any]:
        return {"family": type(self.model.config).family, "preset": self.cfg.model,
                "model_config": to_dict(self.model.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                "epoch": self.epoch, "step": self.schedule.step_count, "best_metric": self.best,
                "train_config": to_dict(self.cfg), "dataset": self.dataset}

    def restore(self) -> None:
        """Continue from ``checkpoint_last.pt`` (model, optimiser, schedule, scaler); every rank
        reads the same file, so ``--out`` must be on storage all nodes see."""
        if not self.folder.last.exists():
            raise InputError(self.folder.root, "--resume: no checkpoint_last.pt to resume from")
        state = load_checkpoint(self.folder.last)
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = int(state["epoch"]), float(state["best_metric"])
        self.rows = [r for r in self.rows if int(r["epoch"]) <= self.epoch]
        log.info("resumed from epoch %d, step %d", self.epoch, self.schedule.step_count)

    def micro_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch ``index`` (counted over the whole run) of this rank, on the device."""
        seed_step(self.cfg.seed, self.dist.rank, index)  # the model's own randomness
        x, y = self.sampler.batch(index)
        return x.to(self.device), y.to(self.device)

    def train_step(self, step: int) -> float:
        n = self.cfg.accumulate
        self.optimizer.zero_grad(set_to_none=True)
        loss = accumulate_gradients(
            self.step_module, self.loss_fn, lambda i: self.micro_batch(step * n + i), n,
            self.scaler, lambda: torch.autocast(self.device.type, dtype=self.amp_dtype,
                                                enabled=self.amp_dtype is not None))
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs or self.schedule.finished()

    def run(self, progress: bool) -> FitResult:
        interrupted = None
        self.model.train()
        with _stop_on_signals() as flag:
            while not self.done() and interrupted is None:
                interrupted = self.run_epoch(flag, progress)
        self.save(self.folder.last)
        return FitResult(self.folder.root, self.best, self.epoch, self.schedule.step_count,
                         interrupted, self.dist.rank)

    def run_epoch(self, flag: dict[str, int], progress: bool) -> str | None:
        losses: list[float] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.steps_per_epoch, desc=f"epoch {self.epoch + 1}",
                       leave=False, unit="step")
        end_step = (self.epoch + 1) * self.cfg.steps_per_epoch  # a resumed epoch finishes its rest
        stop = 0  # the agreed signal; the raw flag may differ between ranks
        while self.schedule.step_count < end_step:
            start = time.perf_counter()
            losses.append(self.train_step(self.schedule.step_count))
            seconds, signum = ddp.reduce_values([time.perf_counter() - start, flag["signal"]],
                                                "max", self.dist, self.device)
            self.schedule.step(seconds)  # the slowest rank's time: one schedule, one stop
            stop = int(signum)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if stop or self.schedule.finished():
                break
        if bar is not None:
            bar.close()
        if stop:
            name = signal.Signals(stop).name
            if self.dist.is_main:
                log.warning("stopped by %s; saving %s", name, self.folder.last)
            return name
        self.epoch += 1
        self.end_epoch(float(np.mean(losses)))
        return None

    def end_epoch(self, loss: float) -> None:
        start = time.perf_counter()
        loss = ddp.reduce_values([loss], "mean", self.dist, self.device)[0]
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.schedule.step_count,
                               "loss": round(loss, 6)}
        row.update({k: round(v, 6) for k, v in self.model.on_epoch_end().items()})
        ddp.broadcast_model_state(self.model, self.dist)
        if self.has_val and (self.epoch % self.cfg.val_every == 0 or self.done()):
            dice = validate(self.model, self.val_cases, self.model.config.roi_size,
                            self.cfg.val_overlap, self.device, self.dist)
            for name, d in zip(self.class_names, dice, strict=True):
                row[f"val_dice_{name}"] = round(d, 6)
            mean = float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float("nan")
            row["val_mean_fg_dice"] = round(mean, 6)
            if mean > self.best:
                self.best = mean
                self.save(self.folder.best)
        self.schedule.seconds += ddp.reduce_values([time.perf_counter() - start], "max",
                                                   self.dist, self.device)[0]
        row["lr"] = self.schedule.lr()  # the peak group's (layer decay scales the others)
        row["seconds"] = round(self.schedule.seconds, 2)
        self.rows.append(row)
        if self.dist.is_main:
            self.folder.write_log(self.rows)
        self.save(self.folder.last)
        log.info("epoch %s", " ".join(f"{k}={v}" for k, v in row.items()))

    def save(self, path: Path) -> None:
        """Write a checkpoint (rank 0 only; the model's own keys, never DDP's ``module.``)."""
        if self.dist.is_main:
            save_checkpoint(path, self.state())
