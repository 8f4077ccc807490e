"""Pure tests of `corral.codec`: strict JSON with the path of the first bad value."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from corral import codec
from corral.errors import InvalidOptionError, SerializationError


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -7, 2.5, "", "ünïcode ✓", [], {}, [1, "a", None],
     {"a": {"b": [1, {"c": False}]}}],
)
def test_json_values_round_trip(value: Any) -> None:
    assert codec.loads(codec.dumps(value)) == value


def test_tuples_become_lists() -> None:
    assert codec.check_json({"t": (1, (2, 3))}, "data") == {"t": [1, [2, 3]]}
    assert codec.loads(codec.dumps((1, 2))) == [1, 2]


def test_loads_none_is_none() -> None:
    assert codec.loads(None) is None


def test_dumps_is_compact_text() -> None:
    assert codec.dumps({"a": [1, 2]}) == '{"a":[1,2]}'


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1, 2}, "data"),
        (b"raw", "data"),
        (object(), "data"),
        (Decimal("1.5"), "data"),
        (math.nan, "data"),
        ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "data.when"),
        ({"items": [0, 1, {2}]}, "data.items[2]"),
        ({"x": {"y": [math.inf]}}, "data.x.y[0]"),
        ({"x": -math.inf}, "data.x"),
        ({"nested": {1: "a"}}, "data.nested"),
        ([{"ok": 1}, {"bad": {None: 1}}], "data[1].bad"),
    ],
)
def test_non_json_names_the_path(value: Any, path: str) -> None:
    with pytest.raises(SerializationError) as refused:
        codec.dumps(value, "data")

    assert refused.value.path == path
    assert str(refused.value).startswith(path)


def test_path_root_is_the_callers_name() -> None:
    with pytest.raises(SerializationError, match=r"^return_value\.x"):
        codec.dumps({"x": {1}}, "return_value")


def test_serialization_error_is_an_invalid_option_error() -> None:
    assert issubclass(SerializationError, InvalidOptionError)
    assert issubclass(SerializationError, ValueError)


def test_huge_integers_are_refused_not_crashing() -> None:
    with pytest.raises(SerializationError):
        codec.dumps({"n": 2**70}, "data")
