"""The training configuration (everything about a run that is not the model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["AMP_DTYPES", "DEFAULT_BATCH_SIZE", "LOSSES", "OPTIMIZERS", "SCHEDULERS", "TrainConfig"]

AMP_DTYPES = ("auto", "fp16", "bf16")
DEFAULT_BATCH_SIZE = 2
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("warmup_cosine", "exponential", "poly")
LOSSES = ("dice_ce", "dice_focal_bce")


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``medtoken train``; saved fully resolved in the run folder's ``config.yaml``.

    Budgets: training stops at whichever of ``epochs``, ``max_steps`` and ``max_minutes`` comes
    first, and the cosine schedule anneals over that budget. Steps are optimiser steps.

    Under ``torchrun`` every option is per process: each rank draws ``batch_size`` patches per
    micro-batch, so one optimiser step sees ``batch_size * accumulate * world_size`` patches, and
    ``lr`` is used as given (never scaled with the world size).

    Attributes:
        roi_size: the training patch, which is also the model's ``roi_size`` (its sliding window);
            ``None``: derived from the dataset, capped by the preset. Was ``patch_size`` (still
            read from old ``config.yaml`` files, with a deprecation warning).
        amp: mixed precision autocast.
        amp_dtype: ``auto`` (float16 with a gradient scaler on CUDA, bfloat16 on CPU), ``fp16``
            (CUDA only) or ``bf16``; used only when ``amp`` is on.
        grad_checkpointing: recompute the activations of transformer and MSTM blocks in the
            backward pass instead of storing them (less memory; those blocks run their forward
            pass twice per step).
        accumulate: micro-batches whose gradients are summed (loss scaled by ``1/accumulate``)
            before each optimiser step.
        batch_size: patches per micro-batch; ``None``: the plan's for the nnunet models, else
            ``DEFAULT_BATCH_SIZE`` (``fit`` records the value it used).
        plans: an ``nnUNetPlans.json`` to train an nnunet model from (default: planned from
            the dataset).
        configuration: the plan configuration, ``3d_fullres`` or ``2d`` (default: by the
            dataset's dimensionality).
        spacing: resampling of the cases: ``auto`` (the plan's target spacing for the nnunet
            models, else none), ``plan``, ``native`` (none) or ``X,Y,Z`` in mm per array axis.
        val_tta: the final validation (after training, and ``train --val``) averages the
            softmax over all mirrorings of the spatial axes, as nnU-Net's final validation does
            (``--tta``); off by default, like ``predict``'s ``--tta``. The periodic validation
            during training never mirrors.
        compile: ``torch.compile`` (inductor) the training step's forward and backward; the
            first step compiles (seconds to minutes), validation stays eager (docs/benchmarks.md
            has the measured speed-ups).
        recipe: the named preset (:mod:`medtoken.train.recipes`) these values started from;
            the defaults below are the ``medtoken`` recipe.
        optimizer: ``adamw``, ``adam`` or ``sgd`` (:mod:`medtoken.train.optim`); ``betas`` for
            the Adams, ``momentum`` and ``nesterov`` for SGD; ``layer_decay`` < 1 lowers the
            learning rate of early ViT encoder blocks.
        scheduler: ``warmup_cosine`` (floor ``min_lr_ratio``), ``exponential`` (``lr_gamma``
            per epoch) or ``poly`` (``poly_exponent``), see :mod:`medtoken.train.optim`.
        grad_clip: gradient-norm clip (``None``: no clipping).
        loss: ``dice_ce`` (MONAI DiceCE, Dice and CE weighted 1:1) or ``dice_focal_bce``
            (TM-UNet's 0.8 Dice + 0.2 focal-BCE), see :mod:`medtoken.train.losses`; the
            ``loss_*`` fields set its Dice term (background class included, squared
            predictions in the denominator, one Dice over the whole batch, smoothing).
    """

    data: str = ""
    model: str = "unet3d"
    fold: str = "0"
    epochs: int = 1000
    steps_per_epoch: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None
    roi_size: tuple[int, ...] | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 3e-5
    warmup_steps: int = 50
    grad_clip: float | None = 12.0
    foreground_ratio: float = 0.33
    val_every: int = 5
    val_overlap: float = 0.5
    val_tta: bool = False
    seed: int = 0
    amp: bool = False
    amp_dtype: str = "auto"
    grad_checkpointing: bool = False
    accumulate: int = 1
    plans: str | None = None
    configuration: str | None = None
    spacing: str = "auto"
    compile: bool = False
    recipe: str = "medtoken"
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.99
    nesterov: bool = True
    layer_decay: float = 1.0
    scheduler: str = "warmup_cosine"
    min_lr_ratio: float = 0.01
    lr_gamma: float = 0.98
    poly_exponent: float = 0.9
    loss: str = "dice_ce"
    loss_include_background: bool = False
    loss_squared_pred: bool = False
    loss_batch: bool = True
    loss_smooth_nr: float = 1e-5
    loss_smooth_dr: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_every", "accumulate"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.foreground_ratio <= 1.0:
            raise ValueError(f"foreground_ratio must be in [0, 1], got {self.foreground_ratio}")
        if not 0.0 <= self.val_overlap < 1.0:
            raise ValueError(f"val_overlap must be in [0, 1), got {self.val_overlap}")
        for name, valid in (("amp_dtype", AMP_DTYPES), ("optimizer", OPTIMIZERS),
                            ("scheduler", SCHEDULERS), ("loss", LOSSES)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got "
                                 f"'{getattr(self, name)}'")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 (or None for no clipping), got "
                             f"{self.grad_clip}")

    @property
    def micro_batch_size(self) -> int:
        """``batch_size``, or ``DEFAULT_BATCH_SIZE`` when it is not set (nor resolved)."""
        return self.batch_size if self.batch_size is not None else DEFAULT_BATCH_SIZE

    @property
    def total_steps(self) -> int:
        steps = self.epochs * self.steps_per_epoch
        return min(steps, self.max_steps) if self.max_steps else steps

    # Fields that may change when a run is resumed (budgets, activation checkpointing and
    # compilation, which change memory and speed but not the maths, and the final validation's
    # mirroring); everything else must match.
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = ("epochs", "max_steps", "max_minutes",
                                                    "val_every", "grad_checkpointing", "compile",
                                                    "val_tta")
    # Old field names still accepted (medtoken.config.from_dict), old -> new.
    RENAMED: ClassVar[dict[str, str]] = {"patch_size": "roi_size"}
