"""Strict JSON for job data, return values and progress (orjson; never pickle)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from corral.errors import SerializationError

JSON = Any
"""A strict JSON value: dict with str keys, list, str, finite number, bool or None."""


MAX_DEPTH = 200
"""How deeply lists and dicts may nest (the stores' JSON decoders have limits too)."""


class _Refused(Exception):
    """A value that is not strict JSON; `steps` grow from the bad value outwards."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.steps: list[str] = []


def check_json(value: object, path: str) -> JSON:
    """Return `value` as strict JSON (tuples become lists) or raise naming the bad path."""
    try:
        return _checked(value, MAX_DEPTH)
    except _Refused as refused:
        raise SerializationError(path + "".join(reversed(refused.steps)), refused.reason) from None


def _checked(value: object, depth: int) -> JSON:
    # The path is only built on the way out of a refusal: the common case pays nothing.
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"{value!r} is not a finite number")
        return value
    if depth == 0 and isinstance(value, dict | list | tuple):
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        checked: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(f"key {key!r} is not a string")
            try:
                checked[key] = _checked(item, depth - 1)
            except _Refused as refused:
                refused.steps.append(f".{key}")
                raise
        return checked
    if isinstance(value, list | tuple):
        items: list[JSON] = []
        for index, item in enumerate(value):
            try:
                items.append(_checked(item, depth - 1))
            except _Refused as refused:
                refused.steps.append(f"[{index}]")
                raise
        return items
    raise _Refused(f"{type(value).__name__} is not JSON")


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
