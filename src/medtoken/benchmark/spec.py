"""Benchmark inputs on the command line: input sizes, sweeps, and model specs resolved to configs.

The spec grammar itself (``PRESET[:key=value,...]``, :class:`~medtoken.config.ModelSpec`,
:func:`~medtoken.config.parse_specs`) lives in :mod:`medtoken.config`, so that readers of
benchmark results (``plots/pareto.py``) spell specs the same way without importing benchmark code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medtoken.config import ModelSpec, parse_yaml_value, split_top_level
from medtoken.registry import get_config
from medtoken.utils.deprecation import warn_renamed
from medtoken.utils.errors import InputError

__all__ = [
    "BATCH_SIZE_KEY",
    "INPUT_SWEEP_KEYS",
    "ROI_SIZE_KEY",
    "Sweep",
    "check_input_size",
    "parse_input_size",
    "parse_sweep",
    "resolve_config",
]

BATCH_SIZE_KEY = "batch_size"  # sweep keys that change the input, not the model
ROI_SIZE_KEY = "roi_size"  # the input's spatial size, and with it the models' roi_size
INPUT_SWEEP_KEYS = (BATCH_SIZE_KEY, ROI_SIZE_KEY)
INPUT_KEYS = ("in_channels", ROI_SIZE_KEY)  # set from --input-size (roi_size also by a sweep)
RENAMED_SWEEP_KEYS = {"spatial_size": ROI_SIZE_KEY}  # old --sweep keys, still accepted
log = logging.getLogger(__name__)
def parse_input_size(text: str, where: str = "--input-size") -> tuple[int, ...]:
    """``B,C,D,H,W`` (3D) or ``B,C,H,W`` (2D) as a tuple of positive ints."""
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(where, f"expected integers B,C,D,H,W or B,C,H,W, got '{text}'") from None
    if len(size) not in (4, 5) or min(size) < 1:
        raise InputError(where, f"expected 4 (B,C,H,W) or 5 (B,C,D,H,W) positive integers, got "
                         f"'{text}'")
    return size


@dataclass(frozen=True)
class Sweep:
    """``--sweep key=v1,v2,...``: one benchmark point per value."""

    key: str
    values: tuple[Any, ...]


def parse_sweep(text: str, where: str = "--sweep") -> Sweep:
    """Parse ``key=v1,v2,...`` (values as YAML; brackets protect commas: ``roi=[8,8],[16,16]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise InputError(where, f"expected key=v1,v2,..., got '{text}'")
    values = tuple(parse_yaml_value(v, where) for v in split_top_level(raw))
    if any(v is None for v in values):
        raise InputError(where, f"empty value in '{text}'")
    key = key.strip()
    if key in RENAMED_SWEEP_KEYS:
        warn_renamed(f"--sweep {key}", f"--sweep {RENAMED_SWEEP_KEYS[key]}")
        key = RENAMED_SWEEP_KEYS[key]
    if key in INPUT_KEYS and key not in INPUT_SWEEP_KEYS:
        raise InputError(where, f"'{key}' comes from --input-size; sweep batch_size, "
                         "roi_size or a model key")
    if key == BATCH_SIZE_KEY and not all(isinstance(v, int) and v > 0 for v in values):
        raise InputError(where, f"batch_size values must be positive integers, got '{raw}'")
    if key == ROI_SIZE_KEY:
        values = tuple(_roi_value(v, where) for v in values)
    return Sweep(key, values)


def _roi_value(value: Any, where: str) -> tuple[int, ...]:
    """One ``roi_size`` sweep value: ``[H, W]`` or ``[D, H, W]`` of positive integers."""
    if not isinstance(value, list) or len(value) not in (2, 3) \
            or not all(isinstance(v, int) and v > 0 for v in value):
        raise InputError(where, f"roi_size values must be [H,W] or [D,H,W] lists of positive "
                         f"integers, got {value!r}")
    return tuple(value)


def resolve_config(spec: ModelSpec, input_size: Sequence[int], where: str = "--models") -> Any:
    """The preset's config with the spec's overrides, ``in_channels`` and ``roi_size`` from the
    input size ``(B, C, *S)``.

    Raises:
        InputError: unknown preset or key (the message lists the valid ones), a 2D input for a 3D
            model (or the reverse), or a spatial size the model does not accept.
    """
    spatial = tuple(int(s) for s in input_size[2:])
    try:
        base = get_config(spec.preset)
    except InputError as err:
        raise InputError(where, err.problem) from None
    if base.spatial_dims != len(spatial) and "spatial_dims" not in dict(spec.overrides):
        raise InputError("--input-size", f"'{spec.preset}' is {base.spatial_dims}D but the input "
                         f"size has {len(spatial)} spatial dims")
    overrides = {**dict(spec.overrides), "in_channels": int(input_size[1]), "roi_size": spatial}
    for key in INPUT_KEYS:
        given = dict(spec.overrides).get(key)
        if given is not None and (tuple(given) if isinstance(given, list) else given) \
                != overrides[key]:
            log.warning("%s: %s=%s is replaced by --input-size (%s=%s)", spec.text, key, given,
                        key, overrides[key])
    try:
        return get_config(spec.preset, **overrides)
    except InputError as err:
        raise InputError(where, f"{spec.text}: {err.problem}") from None


def check_input_size(model: Any, spec: ModelSpec, input_size: Sequence[int]) -> None:
    """Raise :class:`InputError` when the spatial size is not a multiple of the model's."""
    spatial = tuple(input_size[2:])
    multiple = tuple(model.input_multiple)
    if any(s % m for s, m in zip(spatial, multiple, strict=True)):
        raise InputError("--input-size", f"{spec.text} needs spatial sizes divisible by "
                         f"{'x'.join(map(str, multiple))}, got {'x'.join(map(str, spatial))}")

