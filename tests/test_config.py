"""Strict config dicts and dotted overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from medtoken.config import apply_overrides, closest, from_dict, parse_set_args, to_dict
from medtoken.utils.errors import InputError


@dataclass(frozen=True)
class Inner:
    keep_ratio: float = 1.0
    prune_after: tuple[int, ...] = ()


@dataclass(frozen=True)
class Outer:
    roi_size: tuple[int, ...] = (8, 8)
    name: str = "x"
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if not 0 < self.inner.keep_ratio <= 1:
            raise ValueError(f"inner.keep_ratio must be in (0, 1], got {self.inner.keep_ratio}")


def test_round_trip_restores_tuples_and_nested() -> None:
    cfg = Outer(roi_size=(4, 6), inner=Inner(0.5, (3, 6)))
    data = to_dict(cfg)
    assert data["roi_size"] == [4, 6] and data["inner"]["prune_after"] == [3, 6]
    assert from_dict(Outer, data) == cfg


def test_dotted_override_and_int_to_float() -> None:
    cfg = apply_overrides(Outer(), {"inner.keep_ratio": 1, "limit": 3})
    assert cfg.inner.keep_ratio == 1.0 and isinstance(cfg.inner.keep_ratio, float)
    assert cfg.limit == 3


def test_unknown_key_names_closest_valid_key() -> None:
    with pytest.raises(InputError, match=r"unknown key 'inner.keep_ratoi'; valid keys: inner"):
        apply_overrides(Outer(), {"inner.keep_ratoi": 0.3})


def test_validation_error_becomes_input_error() -> None:
    with pytest.raises(InputError, match="keep_ratio must be in"):
        apply_overrides(Outer(), {"inner.keep_ratio": 0.0})


def test_parse_set_args_reads_yaml_values() -> None:
    assert parse_set_args(["a=3", "b=0.5", "c=[1, 2]", "d=true", "e=text"]) == {
        "a": 3, "b": 0.5, "c": [1, 2], "d": True, "e": "text"}
    with pytest.raises(InputError, match="expected key=value"):
        parse_set_args(["novalue"])


def test_closest_puts_near_matches_first() -> None:
    assert closest("unet_3d", ["scd_btcv", "unet2d", "unet3d"])[0] == "unet3d"
