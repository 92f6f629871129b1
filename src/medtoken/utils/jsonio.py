"""Reading the JSON files users hand us (dataset.json, splits, sidecars, results) as InputErrors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medtoken.utils.errors import InputError

__all__ = ["nan_to_none", "read_json", "read_json_object"]


def read_json(path: str | Path, what: str | None = None) -> Any:
    """The parsed content of ``path`` (``what`` names the file in the error when it is missing).

    Raises:
        InputError: at ``path``, when it does not exist, cannot be read, is not UTF-8 or is not
            valid JSON.
    """
    path = Path(path)
    if what is not None and not path.is_file():
        raise InputError(path, f"no such file ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read JSON: {err}") from None


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """:func:`read_json` of a file that must hold one JSON object (``what`` names it)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InputError(path, f"{what} must hold a JSON object")
    return data


def nan_to_none(value: Any) -> Any:
    """``value`` with every float NaN (in nested dicts, lists and tuples) replaced by ``None``,
    so that it serialises as strict JSON (``null``); tuples become lists."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
