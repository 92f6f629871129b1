"""``fit``: train a model on a dataset fold into a run folder.

AdamW, warm-up + cosine (over the step or time budget), DiceCE (+ the model's auxiliary losses),
gradient clipping, optional AMP, validation on whole cases with sliding-window inference, atomic
checkpoints, resumable to the exact batch sequence, SIGINT/SIGTERM stop with a checkpoint.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from medtoken.config import to_dict
from medtoken.data.datasets import DatasetInfo, load_dataset
from medtoken.data.preprocess import NormalizationPlan, plan_normalization
from medtoken.data.splits import get_fold
from medtoken.registry import build_model, get_config
from medtoken.train.checkpoint import load_checkpoint, save_checkpoint
from medtoken.train.config import TrainConfig
from medtoken.train.data import LoadedCase, PatchSampler, derive_patch_size, load_cases
from medtoken.train.optim import ProgressSchedule, build_optimizer
from medtoken.train.run_folder import RunFolder
from medtoken.train.validate import validate
from medtoken.utils.device import resolve_device, seed_everything
from medtoken.utils.errors import InputError

__all__ = ["FitResult", "fit"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Outcome of :func:`fit`."""

    run_dir: Path
    best_metric: float
    epochs_done: int
    steps_done: int
    interrupted_by: str | None = None


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, str | None]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps."""
    flag: dict[str, str | None] = {"signal": None}

    def handler(signum: int, _frame: Any) -> None:
        flag["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _model_config(train_cfg: TrainConfig, info: DatasetInfo, overrides: dict[str, Any],
                  cases: list[LoadedCase]) -> Any:
    """The preset filled from the dataset (channels, classes, patch, spacing) plus overrides."""
    base = get_config(train_cfg.model)
    if base.spatial_dims != info.spatial_dims:
        raise InputError("--model", f"'{train_cfg.model}' is a {base.spatial_dims}D model but "
                         f"the dataset is {info.spatial_dims}D")
    fill: dict[str, Any] = {"in_channels": info.num_channels, "num_classes": info.num_classes}
    if hasattr(base, "spacing"):
        spacing = np.median(np.array([c.meta.spacing for c in cases]), axis=0)
        fill["spacing"] = [round(float(s), 4) for s in spacing]
    cfg = get_config(train_cfg.model, **fill, **overrides)
    if train_cfg.patch_size is not None:
        patch = tuple(train_cfg.patch_size)
    elif "roi_size" in overrides:
        patch = tuple(cfg.roi_size)
    else:
        probe = build_model(cfg)
        patch = probe.fixed_input_size or derive_patch_size(cases, cfg.roi_size,
                                                              probe.input_multiple)
    return get_config(train_cfg.model, **fill, **overrides, roi_size=list(patch))


def _check_patch(model: Any) -> None:
    roi = model.config.roi_size
    bad = [r for r, m in zip(roi, model.input_multiple, strict=True) if r % m]
    if bad:
        raise InputError("--patch-size", f"{tuple(roi)} is not divisible by "
                         f"{model.input_multiple} as this model requires")


def fit(train_cfg: TrainConfig, out_dir: str | Path, model_overrides: dict[str, Any] | None = None,
        device: str = "auto", resume: bool = False, overwrite: bool = False,
        progress: bool | None = None) -> FitResult:
    """Train ``train_cfg.model`` on ``train_cfg.data`` (its ``fold``) into ``out_dir``."""
    dev = resolve_device(device)
    get_config(train_cfg.model)  # an unknown preset fails before any data is read
    info = load_dataset(train_cfg.data)
    train_ids, val_ids = get_fold(info, train_cfg.fold)
    plan = plan_normalization(info, train_ids)
    train_cases = load_cases(info, train_ids, plan)
    val_cases = load_cases(info, val_ids, plan)
    model_cfg = _model_config(train_cfg, info, dict(model_overrides or {}), train_cases)
    seed_everything(train_cfg.seed)
    model = build_model(model_cfg).to(dev)
    _check_patch(model)
    dataset_facts = _dataset_facts(info, plan)
    resolved = {"train": to_dict(train_cfg), "model": {"preset": train_cfg.model,
                "family": type(model_cfg).family, **to_dict(model_cfg)},
                "dataset": {**dataset_facts, "train_cases": len(train_ids),
                            "val_cases": len(val_ids)}}
    run = RunFolder(out_dir)
    run.prepare(resolved, resume=resume, overwrite=overwrite)
    trainer = _Trainer(train_cfg, model, dev, run, dataset_facts, train_cases, val_cases)
    if resume:
        trainer.restore()
    if progress is None:
        progress = sys.stderr.isatty()
    result = trainer.run(progress)
    if result.interrupted_by is None and val_ids:
        from medtoken.train.final_validation import final_validation

        final_validation(run, info, val_ids)
    return result


def _dataset_facts(info: DatasetInfo, plan: NormalizationPlan) -> dict[str, Any]:
    """What prediction needs to know about the training data (stored in every checkpoint)."""
    return {"root": str(info.root), "layout": info.layout,
            "labels": {str(k): v for k, v in info.labels.items()},
            "channel_names": list(info.channel_names), "file_ending": info.file_ending,
            "spatial_dims": info.spatial_dims, "normalization": plan.to_dict()}


class _Trainer:
    """The epoch loop with its state (kept out of ``fit`` so each piece stays short)."""

    def __init__(self, cfg: TrainConfig, model: Any, device: torch.device, run: RunFolder,
                 dataset: dict[str, Any], train_cases: list[LoadedCase],
                 val_cases: list[LoadedCase]) -> None:
        self.cfg, self.model, self.device, self.folder = cfg, model, device, run
        self.dataset = dataset
        self.val_cases = val_cases
        self.sampler = PatchSampler(train_cases, model.config.roi_size, cfg.batch_size, cfg.seed,
                                    foreground_ratio=cfg.foreground_ratio)
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False,
                                  batch=True)
        self.optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
        self.schedule = ProgressSchedule(
            self.optimizer, cfg.lr, cfg.total_steps,
            cfg.max_minutes * 60 if cfg.max_minutes else None, cfg.warmup_steps)
        use_amp = cfg.amp and device.type == "cuda"
        self.amp_dtype = torch.float16 if use_amp else torch.bfloat16
        self.autocast = cfg.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.epoch = 0
        self.best = -math.inf
        self.rows = run.read_log()
        self.class_names = [dataset["labels"][k] for k in sorted(dataset["labels"], key=int)][1:]

    def state(self) -> dict[str, Any]:
        return {"family": type(self.model.config).family, "preset": self.cfg.model,
                "model_config": to_dict(self.model.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                "epoch": self.epoch, "step": self.schedule.step_count, "best_metric": self.best,
                "train_config": to_dict(self.cfg), "dataset": self.dataset}

    def restore(self) -> None:
        """Continue from ``checkpoint_last.pt`` (model, optimiser, schedule, scaler, RNG)."""
        if not self.folder.last.exists():
            raise InputError(self.folder.root, "--resume: no checkpoint_last.pt to resume from")
        state = load_checkpoint(self.folder.last)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.best = int(state["epoch"]), float(state["best_metric"])
        self.rows = [r for r in self.rows if int(r["epoch"]) <= self.epoch]
        log.info("resumed from epoch %d, step %d", self.epoch, self.schedule.step_count)

    def train_step(self, step: int) -> float:
        x, y = self.sampler.batch(step)
        x, y = x.to(self.device), y.to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.autocast):
            out = self.model.forward_with_aux(x, y)
            loss = self.loss_fn(out.logits.float(), y) + sum(out.losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

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
                         interrupted)

    def run_epoch(self, flag: dict[str, str | None], progress: bool) -> str | None:
        losses: list[float] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.steps_per_epoch, desc=f"epoch {self.epoch + 1}",
                       leave=False, unit="step")
        end_step = (self.epoch + 1) * self.cfg.steps_per_epoch  # a resumed epoch finishes its rest
        while self.schedule.step_count < end_step:
            start = time.perf_counter()
            losses.append(self.train_step(self.schedule.step_count))
            self.schedule.step(time.perf_counter() - start)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if flag["signal"] or self.schedule.finished():
                break
        if bar is not None:
            bar.close()
        if flag["signal"]:
            log.warning("stopped by %s; saving %s", flag["signal"], self.folder.last)
            return flag["signal"]
        self.epoch += 1
        self.end_epoch(float(np.mean(losses)))
        return None

    def end_epoch(self, loss: float) -> None:
        start = time.perf_counter()
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.schedule.step_count,
                               "loss": round(loss, 6)}
        row.update({k: round(v, 6) for k, v in self.model.on_epoch_end().items()})
        if self.val_cases and (self.epoch % self.cfg.val_every == 0 or self.done()):
            dice = validate(self.model, self.val_cases, self.model.config.roi_size,
                            self.cfg.val_overlap, self.device)
            for name, d in zip(self.class_names, dice, strict=True):
                row[f"val_dice_{name}"] = round(d, 6)
            mean = float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float("nan")
            row["val_mean_fg_dice"] = round(mean, 6)
            if mean > self.best:
                self.best = mean
                self.save(self.folder.best)
        self.schedule.seconds += time.perf_counter() - start
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = round(self.schedule.seconds, 2)
        self.rows.append(row)
        self.folder.write_log(self.rows)
        self.save(self.folder.last)
        log.info("epoch %s", " ".join(f"{k}={v}" for k, v in row.items()))

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.state())
