"""Recipes resolve to their documented values; flags and --set train.* win over them."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from medtoken.cli.train import add_arguments, build_train_config
from medtoken.config import to_dict
from medtoken.train.config import TrainConfig
from medtoken.train.recipes import RECIPES, recipe_values
from medtoken.utils.errors import InputError

# The tables of docs/training.md, field by field.
DOCUMENTED = {
    "medtoken": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 3e-5, "betas": [0.9, 0.999],
                 "scheduler": "warmup_cosine", "warmup_steps": 50, "min_lr_ratio": 0.01,
                 "loss": "dice_ce", "batch_size": None, "grad_clip": 12.0, "epochs": 1000,
                 "steps_per_epoch": 50, "accumulate": 1, "layer_decay": 1.0},
    "tmunet": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999],
               "scheduler": "exponential", "lr_gamma": 0.98, "warmup_steps": 0,
               "loss": "dice_focal_bce", "loss_smooth_nr": 1.0, "loss_smooth_dr": 1.0,
               "loss_batch": True, "batch_size": 4, "grad_clip": None, "epochs": 200,
               "steps_per_epoch": 90},
    "vit": {"optimizer": "adamw", "lr": 1.34375e-4, "weight_decay": 0.05, "betas": [0.9, 0.95],
            "layer_decay": 0.75, "scheduler": "warmup_cosine", "min_lr_ratio": 0.0,
            "warmup_steps": 450, "epochs": 900, "steps_per_epoch": 50, "loss": "dice_ce",
            "loss_include_background": True, "loss_squared_pred": True, "loss_batch": False,
            "loss_smooth_nr": 0.0, "loss_smooth_dr": 1e-6, "batch_size": 2, "accumulate": 4,
            "foreground_ratio": 0.5, "grad_clip": None},
    "nnunet": {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.99, "nesterov": True,
               "weight_decay": 3e-5, "scheduler": "poly", "poly_exponent": 0.9,
               "warmup_steps": 0, "epochs": 1000, "steps_per_epoch": 250, "loss": "dice_ce",
               "loss_include_background": False, "batch_size": None, "grad_clip": 12.0},
}


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--data", "d", "--model", "unet3d", "--out", "o", *argv])


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_recipe_resolves_to_the_documented_values(name: str) -> None:
    cfg, _ = build_train_config(_args("--recipe", name))
    resolved = to_dict(cfg)
    assert resolved["recipe"] == name
    for key, value in DOCUMENTED[name].items():
        assert resolved[key] == pytest.approx(value) if isinstance(value, float) else \
            resolved[key] == value, key
    assert total_steps(name) == {"medtoken": 50_000, "tmunet": 18_000, "vit": 45_000,
                                 "nnunet": 250_000}[name]


def total_steps(name: str) -> int:
    return build_train_config(_args("--recipe", name))[0].total_steps


def test_every_recipe_names_only_config_fields_and_medtoken_is_the_default() -> None:
    known = {f.name for f in fields(TrainConfig)}
    for name in RECIPES:
        assert set(recipe_values(name)) <= known, name
    default, _ = build_train_config(_args())
    assert default == TrainConfig(data="d", model="unet3d")  # medtoken = the defaults
    assert to_dict(default) == {**to_dict(TrainConfig()), "data": "d", "model": "unet3d"}
    assert RECIPES["medtoken"] == {}  # the defaults are the medtoken recipe, stated once
    named, _ = build_train_config(_args("--recipe", "medtoken"))
    assert named == default == TrainConfig(data="d", model="unet3d", recipe="medtoken")


def test_flags_and_set_override_the_recipe() -> None:
    cfg, _ = build_train_config(_args("--recipe", "tmunet", "--lr", "0.01", "--batch-size", "3",
                                      "--set", "train.lr_gamma=0.9", "train.loss=dice_ce"))
    assert (cfg.lr, cfg.batch_size, cfg.lr_gamma, cfg.loss) == (0.01, 3, 0.9, "dice_ce")
    assert cfg.optimizer == "adam" and cfg.recipe == "tmunet"  # the rest stays the recipe's
    flag_wins, _ = build_train_config(_args("--recipe", "nnunet", "--lr", "0.5", "--set",
                                            "train.lr=0.2"))
    assert flag_wins.lr == 0.5


def test_unknown_recipe_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown recipe 'tm-unet'; known: medtoken"):
        build_train_config(_args("--recipe", "tm-unet"))
