"""Strict JSON for job data, return values and progress (orjson; never pickle)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from corral.errors import SerializationError

JSON = Any
"""A strict JSON value: dict with str keys, list, str, finite number, bool or None."""


def check_json(value: object, path: str) -> JSON:
    """Return `value` as strict JSON (tuples become lists) or raise naming the bad path."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(path, f"{value!r} is not a finite number")
        return value
    if isinstance(value, dict):
        checked: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(path, f"key {key!r} is not a string")
            checked[key] = check_json(item, f"{path}.{key}")
        return checked
    if isinstance(value, list | tuple):
        return [check_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise SerializationError(path, f"{type(value).__name__} is not JSON")


def dumps(value: object, path: str = "data") -> str:
    """Encode a strict JSON value to text, raising `SerializationError` for anything else."""
    checked = check_json(value, path)
    try:
        return orjson.dumps(checked).decode()
    except (orjson.JSONEncodeError, TypeError) as exc:  # e.g. integers beyond 64 bits
        raise SerializationError(path, str(exc)) from exc


def loads(text: str | bytes | None) -> JSON:
    """Decode stored JSON text (None stays None)."""
    if text is None:
        return None
    return orjson.loads(text)
