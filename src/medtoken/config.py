"""Frozen config dataclasses to and from plain dicts, with strict dotted overrides.

A config is a frozen dataclass (possibly nested). ``to_dict`` gives YAML/JSON-ready data;
``from_dict`` rebuilds it and refuses unknown keys, naming the closest valid ones, so that a typo in
``--set pruning.keep_ratoi=0.3`` is an error and not a silently ignored option.

A config class may rename a field and keep the old spelling working: a class attribute
``RENAMED: ClassVar[dict[str, str]] = {"old": "new"}`` makes ``from_dict`` (old checkpoints,
old ``config.yaml``) and ``apply_overrides`` (``--set``, ``create_model`` keywords) accept the old
key with a deprecation warning.

A *model spec* is a preset name with overrides in one string, as ``medtoken benchmark --models``
and benchmark records spell it: after a colon, dotted-key overrides whose values are read as YAML
(``tmunet_b:mlstm_mode=parallel,num_classes=2``, ``unet3d:channels=[4,8]``). Several specs are
joined by commas; a comma inside brackets or braces belongs to a value, and a piece that is
``key=value`` continues the spec before it::

    --models "unet3d:channels=[4,8],num_res_units=1,dynunet3d"
             -> unet3d {channels: [4, 8], num_res_units: 1}  and  dynunet3d {}
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from medtoken.utils.deprecation import warn_renamed
from medtoken.utils.errors import InputError

__all__ = [
    "ModelSpec",
    "apply_overrides",
    "closest",
    "from_dict",
    "parse_set_args",
    "parse_spec",
    "parse_specs",
    "parse_yaml_value",
    "rename_keys",
    "rename_nested",
    "renamed_key",
    "split_top_level",
    "to_dict",
]

T = TypeVar("T")
_OPEN, _CLOSE = "[{(", "]})"


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


def renamed_key(cls: Any, key: str, prefix: str = "") -> str:
    """``key``, or its new name when ``cls.RENAMED`` maps it (then a deprecation warning).

    Args:
        cls: a config dataclass (or anything; only a ``RENAMED`` class attribute matters).
        key: one field name (not dotted).
        prefix: dotted path of ``cls`` inside the outer config, for the warning (``pruning.``).
    """
    new = getattr(cls, "RENAMED", {}).get(key)
    if new is None:
        return key
    warn_renamed(prefix + key, prefix + new)
    return str(new)


def rename_keys(cls: Any, data: Mapping[str, Any], where: str = "config",
                prefix: str = "") -> dict[str, Any]:
    """``data`` with the old keys of ``cls.RENAMED`` replaced by the new ones (one level).

    Raises:
        InputError: both the old and the new spelling of a key are given.
    """
    result: dict[str, Any] = {}
    for key, value in data.items():
        new = renamed_key(cls, key, prefix)
        if new in result or (new != key and new in data):
            raise InputError(where, f"'{prefix}{key}' and '{prefix}{new}' are the same option "
                             f"(the first is its old name); give only '{prefix}{new}'")
        result[new] = value
    return result


def rename_nested(cls: Any, data: Mapping[str, Any], where: str = "config",
                  prefix: str = "") -> dict[str, Any]:
    """:func:`rename_keys` at every level of the nested config ``cls``; nothing else changes
    (no defaults filled, no values checked), so that an old stored dict compares with a new one.
    """
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    result: dict[str, Any] = {}
    for key, value in rename_keys(cls, data, where, prefix).items():
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = rename_nested(hint, value, where, f"{prefix}{key}.")
        result[key] = value
    return result


def _coerce(value: Any, hint: Any, prefix: str = "") -> Any:
    """Convert YAML/JSON data (lists, ints) to the field's declared type where that is cheap."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value, prefix=prefix)  # type: ignore[arg-type]
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


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config",
              prefix: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``; unknown keys raise :class:`InputError`.

    Old keys listed in ``RENAMED`` (here or in nested configs) are accepted with a warning;
    ``prefix`` is the dotted path of ``cls`` in an outer config (for messages).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in rename_keys(cls, data, where, prefix).items():
        if key not in fields:
            raise _unknown_key(key, fields, where)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}.")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(where, str(err)) from None


def apply_overrides(cfg: T, overrides: Mapping[str, Any], where: str = "--set") -> T:
    """Return a copy of ``cfg`` with dotted-key overrides applied (``pruning.keep_ratio``)."""
    data = to_dict(cfg)
    for dotted, value in overrides.items():
        node: Any = data  # the dict being edited
        obj: Any = cfg  # the config object it came from (whose RENAMED applies)
        parts = dotted.split(".")
        for i, given in enumerate(parts):
            part = parts[i] = renamed_key(type(obj), given, "".join(f"{p}." for p in parts[:i]))
            obj = getattr(obj, part, None)
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


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at ``sep`` outside brackets/braces/parentheses; pieces are stripped."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(depth - 1, 0)
        elif char == sep and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
    pieces.append(text[start:].strip())
    return pieces


def parse_yaml_value(raw: str, where: str) -> Any:
    """``raw`` read as YAML (``3``, ``0.5``, ``[4, 8]``, ``parallel``); an error names ``where``."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise InputError(where, f"cannot parse the value '{raw}' (values are read as YAML)") \
            from None


def _inline_yaml(value: Any) -> str:
    """``value`` as one line of YAML (``[4, 8]``, ``0.5``, ``parallel``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def _is_override(piece: str) -> bool:
    """``key=value`` (continues a spec) as opposed to ``preset`` or ``preset:key=value``."""
    eq = piece.find("=")
    colon = piece.find(":")
    return eq > 0 and (colon < 0 or colon > eq)


@dataclass(frozen=True)
class ModelSpec:
    """A preset name with overrides (in the order given)."""

    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def text(self) -> str:
        """The canonical spelling, e.g. ``unet3d:channels=[4, 8]``."""
        if not self.overrides:
            return self.preset
        parts = [f"{k}={_inline_yaml(v)}" for k, v in self.overrides]
        return f"{self.preset}:{','.join(parts)}"

    def with_override(self, key: str, value: Any) -> ModelSpec:
        """A copy with ``key`` set to ``value`` (replacing an earlier override of ``key``)."""
        kept = tuple((k, v) for k, v in self.overrides if k != key)
        return ModelSpec(self.preset, (*kept, (key, value)))


def _add_override(spec: ModelSpec, piece: str, where: str) -> ModelSpec:
    key, _, raw = piece.partition("=")
    key = key.strip()
    if not key:
        raise InputError(where, f"expected key=value in '{piece}'")
    return spec.with_override(key, parse_yaml_value(raw.strip(), where))


def parse_specs(text: str, where: str = "--models") -> list[ModelSpec]:
    """Parse comma-joined specs (see the module docstring); at least one is required."""
    specs: list[ModelSpec] = []
    for piece in split_top_level(text):
        if not piece:
            raise InputError(where, f"empty model spec in '{text}'")
        if _is_override(piece):
            if not specs:
                raise InputError(where, f"'{piece}' is an override with no preset before it; "
                                 "write PRESET:key=value")
            specs[-1] = _add_override(specs[-1], piece, where)
            continue
        preset, _, first = piece.partition(":")
        spec = ModelSpec(preset.strip())
        if not spec.preset:
            raise InputError(where, f"missing preset name in '{piece}'")
        specs.append(_add_override(spec, first, where) if first.strip() else spec)
    return specs


def parse_spec(text: str, where: str = "--baseline") -> ModelSpec:
    """Parse exactly one spec."""
    specs = parse_specs(text, where)
    if len(specs) != 1:
        raise InputError(where, f"expected one model spec, got {len(specs)}: "
                         + ", ".join(s.text for s in specs))
    return specs[0]
