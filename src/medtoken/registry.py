"""The model registry: families (a model class per config class) and named presets.

A *family* is a :class:`~medtoken.models.base.SegmentationModel` subclass whose config dataclass
names the family in a ``family`` class variable. A *preset* is a registered function, named like
the preset, that returns a config. ``create_model(name, **overrides)`` = preset → overrides → build.

This module holds only the decorators and the tables; it imports no family (timm's
``_registry.py`` pattern). The families register themselves when :mod:`medtoken.models` is
imported, and the package (``medtoken/__init__.py``) installs that import as the *family loader*
(:func:`set_family_loader`), run once before the first look-up. So ``import medtoken.registry``
stays cheap (no torch), and every look-up still sees every family.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from medtoken.config import apply_overrides, closest
from medtoken.utils.errors import InputError

__all__ = [
    "build_model",
    "create_model",
    "get_config",
    "list_models",
    "register_family",
    "register_preset",
]

_FAMILIES: dict[str, type] = {}
_PRESETS: dict[str, Callable[[], Any]] = {}
_loader: list[Callable[[], None]] = []  # at most one: imports every family (see module doc)

M = TypeVar("M", bound=type)
F = TypeVar("F", bound=Callable[[], Any])


def register_family(model_cls: M) -> M:
    """Class decorator: register a model class under its config's ``family`` name."""
    family = model_cls.config_class.family  # type: ignore[attr-defined]
    if family in _FAMILIES and _FAMILIES[family] is not model_cls:
        raise ValueError(f"model family '{family}' is registered twice")
    _FAMILIES[family] = model_cls
    return model_cls


def register_preset(fn: F) -> F:
    """Function decorator: register ``fn`` (returning a config) as the preset ``fn.__name__``."""
    if fn.__name__ in _PRESETS:
        raise ValueError(f"preset '{fn.__name__}' is registered twice")
    _PRESETS[fn.__name__] = fn
    return fn


def set_family_loader(load: Callable[[], None]) -> None:
    """Install ``load`` (imports every family) to run once before the first look-up."""
    _loader[:] = [load]


def _ensure_loaded() -> None:
    while _loader:
        _loader.pop()()


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted preset names, optionally filtered by a shell pattern (``"scd_*"``)."""
    _ensure_loaded()
    names = sorted(_PRESETS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_config(name: str, **overrides: Any) -> Any:
    """The config of preset ``name`` with dotted-key ``overrides`` applied."""
    _ensure_loaded()
    if name not in _PRESETS:
        raise InputError(
            "--model", f"unknown model preset '{name}'; valid presets: "
            + ", ".join(closest(name, _PRESETS)[:12]))
    cfg = _PRESETS[name]()
    return apply_overrides(cfg, overrides, where=f"overrides of '{name}'") if overrides else cfg


def build_model(cfg: Any) -> Any:
    """Instantiate the registered family class for the config ``cfg``."""
    _ensure_loaded()
    family = type(cfg).family
    if family not in _FAMILIES:
        raise InputError(None, f"no model family '{family}' is registered")
    return _FAMILIES[family](cfg)


def family_config_class(family: str) -> type:
    """The config class of a registered family (used to rebuild models from checkpoints)."""
    _ensure_loaded()
    if family not in _FAMILIES:
        raise InputError(None, f"unknown model family '{family}'; known: "
                         + ", ".join(sorted(_FAMILIES)))
    return _FAMILIES[family].config_class  # type: ignore[attr-defined, no-any-return]


def create_model(name: str, **overrides: Any) -> Any:
    """Build preset ``name`` with overrides, e.g. ``create_model("unet3d", num_classes=3)``.

    Nested fields use dotted keys: ``create_model("scd_btcv", **{"pruning.keep_ratio": 0.3})``.
    """
    return build_model(get_config(name, **overrides))
