"""Strict config dicts and dotted overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from medtoken.config import (
    apply_overrides,
    closest,
    from_dict,
    parse_set_args,
    rename_nested,
    to_dict,
)
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


@dataclass(frozen=True)
class RenamedInner:
    method: str = "a"
    RENAMED: ClassVar[dict[str, str]] = {"selection": "method"}


@dataclass(frozen=True)
class RenamedOuter:
    roi_size: tuple[int, ...] = (8, 8)
    inner: RenamedInner = field(default_factory=RenamedInner)
    RENAMED: ClassVar[dict[str, str]] = {"patch_size": "roi_size"}


def test_from_dict_reads_renamed_keys_at_every_level_and_warns(deprecations) -> None:
    cfg = from_dict(RenamedOuter, {"patch_size": [4, 4], "inner": {"selection": "b"}})
    assert cfg == RenamedOuter(roi_size=(4, 4), inner=RenamedInner("b"))
    assert from_dict(RenamedOuter, {"roi_size": [4, 4], "inner": {"method": "b"}}) == cfg
    messages = deprecations()
    assert len(messages) == 2
    assert "'patch_size' is deprecated; use 'roi_size'" in messages[0]
    assert "'inner.selection' is deprecated; use 'inner.method'" in messages[1]
    from_dict(RenamedOuter, {"patch_size": [4, 4]})
    assert len(deprecations()) == 2  # once per spelling and process


def test_apply_overrides_reads_renamed_dotted_keys(deprecations) -> None:
    cfg = apply_overrides(RenamedOuter(), {"inner.selection": "c"})
    assert cfg.inner.method == "c"
    assert apply_overrides(RenamedOuter(), {"inner.method": "c"}) == cfg
    assert deprecations() == ["'inner.selection' is deprecated; use 'inner.method' (the old "
                              "spelling will be removed in a future release)"]


def test_old_and_new_spelling_together_are_refused() -> None:
    with pytest.raises(InputError, match="'patch_size' and 'roi_size' are the same option"):
        from_dict(RenamedOuter, {"patch_size": [4, 4], "roi_size": [4, 4]})


def test_rename_nested_renames_only() -> None:
    old = {"patch_size": [4, 4], "inner": {"selection": "b"}, "extra": 1}
    assert rename_nested(RenamedOuter, old) == {"roi_size": [4, 4], "inner": {"method": "b"},
                                                "extra": 1}
