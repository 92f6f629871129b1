"""Frozen config dataclasses to and from plain dicts, with strict dotted overrides.

A config is a frozen dataclass (possibly nested). ``to_dict`` gives YAML/JSON-ready data;
``from_dict`` rebuilds it and refuses unknown keys, naming the closest valid ones, so that a typo in
``--set pruning.keep_ratoi=0.3`` is an error and not a silently ignored option.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import yaml

from medtoken.utils.errors import InputError

__all__ = [
    "apply_overrides",
    "closest",
    "from_dict",
    "parse_set_args",
    "to_dict",
]

T = TypeVar("T")


def closest(name: str, valid: Iterable[str], n: int = 5) -> list[str]:
    """The valid names closest to ``name`` first, then the rest in sorted order."""
    valid = sorted(set(valid))
    near = difflib.get_close_matches(name, valid, n=n, cutoff=0.4)
    return near + [v for v in valid if v not in near]


def _unknown_key(key: str, valid: Iterable[str], where: str) -> InputError:
    options = ", ".join(closest(key, valid)[:12])
    return InputError(where, f"unknown key '{key}'; valid keys: {options}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A nested plain dict (tuples become lists) suitable for YAML or JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    result = plain(cfg)
    assert isinstance(result, dict)
    return result


def _coerce(value: Any, hint: Any) -> Any:
    """Convert YAML/JSON data (lists, ints) to the field's declared type where that is cheap."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None:
            return None
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                continue
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build the dataclass ``cls`` from ``data``; unknown keys raise :class:`InputError`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(key, fields, where)
        kwargs[key] = _coerce(value, hints[key])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(where, str(err)) from None


def apply_overrides(cfg: T, overrides: Mapping[str, Any], where: str = "--set") -> T:
    """Return a copy of ``cfg`` with dotted-key overrides applied (``pruning.keep_ratio``)."""
    data = to_dict(cfg)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                valid = node.keys() if isinstance(node, dict) else []
                prefix = ".".join(parts[:i])
                raise _unknown_key(dotted, [f"{prefix}.{k}" if prefix else k for k in valid],
                                   where)
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return from_dict(type(cfg), data, where)


def parse_set_args(items: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML (``3``, ``0.5``, ``[1, 2]``)."""
    result: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError("--set", f"expected key=value, got '{item}'")
        try:
            result[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError("--set", f"cannot parse the value of '{item}'") from None
    return result
