"""Training recipes: named presets of :class:`~medtoken.train.config.TrainConfig` values.

``medtoken train --recipe NAME`` starts from a recipe; ``--set train.KEY=VALUE`` and explicit
flags (``--lr``, ``--batch-size``, ...) win over it; ``config.yaml`` stores every resolved field
and the recipe's name. A recipe is data, not code: every difference is a config field.

- ``medtoken``: the house default (the :class:`TrainConfig` defaults).
- ``tmunet``: the TM-UNet release (``train.py``; spec tm_unet.md §4.3-4.4).
- ``vit``: the STP+MTA release's BTCV recipe (spec stp_mta.md §6), for the ViT models (SCD,
  UNETR).
- ``nnunet``: nnU-Net v2's ``nnUNetTrainer`` (nnunetv2 2.8.1).

docs/training.md has the table and, per recipe, what the source states and what was chosen.
"""

from __future__ import annotations

from typing import Any

from medtoken.utils.errors import InputError

__all__ = ["RECIPES", "recipe_values"]

RECIPES: dict[str, dict[str, Any]] = {
    # the TrainConfig defaults are the house recipe; batch_size stays None there: the plan's
    # for the nnunet models, else DEFAULT_BATCH_SIZE (2)
    "medtoken": {},
    "tmunet": {
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "betas": (0.9, 0.999),
        "scheduler": "exponential", "lr_gamma": 0.98, "warmup_steps": 0,
        "loss": "dice_focal_bce", "loss_include_background": False, "loss_batch": True,
        "loss_smooth_nr": 1.0, "loss_smooth_dr": 1.0,
        "batch_size": 4, "grad_clip": None, "epochs": 200,
        "steps_per_epoch": 90,  # chosen: one pass over BUSI fold 0 (361 images / 4, drop_last)
    },
    "vit": {
        "optimizer": "adamw", "lr": 1.72e-2 * 2 / 256, "weight_decay": 0.05,
        "betas": (0.9, 0.95), "layer_decay": 0.75,
        "scheduler": "warmup_cosine", "min_lr_ratio": 0.0,
        "epochs": 900, "steps_per_epoch": 50,  # 45,000 steps = 5,000 epochs x 9 iterations
        "warmup_steps": 450,  # 50 of 5,000 epochs
        "loss": "dice_ce", "loss_include_background": True, "loss_squared_pred": True,
        "loss_batch": False, "loss_smooth_nr": 0.0, "loss_smooth_dr": 1e-6,
        "batch_size": 2, "accumulate": 4,  # 2 volumes x 4 crops = 8 crops per step
        "foreground_ratio": 0.5,  # RandCropByPosNegLabel pos=1, neg=1
        "grad_clip": None,
    },
    "nnunet": {
        "optimizer": "sgd", "lr": 1e-2, "momentum": 0.99, "nesterov": True,
        "weight_decay": 3e-5, "scheduler": "poly", "poly_exponent": 0.9, "warmup_steps": 0,
        "epochs": 1000, "steps_per_epoch": 250, "loss": "dice_ce",  # the nnunet models: theirs
        "grad_clip": 12.0, "foreground_ratio": 0.33,  # batch_size: the plan's (else 2)
    },
}


def recipe_values(name: str) -> dict[str, Any]:
    """The :class:`~medtoken.train.config.TrainConfig` fields a recipe sets, plus ``recipe``.

    Raises:
        InputError: an unknown recipe.
    """
    if name not in RECIPES:
        raise InputError("--recipe", f"unknown recipe '{name}'; known: {', '.join(RECIPES)}")
    return {**RECIPES[name], "recipe": name}
