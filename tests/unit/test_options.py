"""Pure tests of `corral.options`: durations, scalar checks, option types, JobOptions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

import corral
from corral.errors import InvalidOptionError
from corral.options import (
    LIBRARY_DEFAULTS,
    Backoff,
    JobOptions,
    Keep,
    QueueConfig,
    check_int,
    check_label,
    check_queue_name,
    parse_duration,
    stored_options,
)

# -- parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        (0, 0.0),
        (timedelta(minutes=1, seconds=30), 90.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("1.5h", 5400.0),
        ("10", 10.0),
        ("0.25", 0.25),
        (" 30s ", 30.0),
    ],
)
def test_parse_duration_forms(value: Any, seconds: float) -> None:
    assert parse_duration(value, "delay") == seconds


@pytest.mark.parametrize(
    "value",
    ["", "abc", "5x", "m5", "1h 30m", "30 s", "-5s", "5s-", "1e400", "ms", "1h30", "h1"],
)
def test_parse_duration_refuses_bad_strings(value: str) -> None:
    with pytest.raises(InvalidOptionError, match="delay"):
        parse_duration(value, "delay")


@pytest.mark.parametrize(
    "value", [-1, -0.001, math.nan, math.inf, -math.inf, True, False, None, [5], timedelta(-1)]
)
def test_parse_duration_refuses_bad_values(value: Any) -> None:
    with pytest.raises(InvalidOptionError):
        parse_duration(value, "delay")


def test_parse_duration_zero_only_when_allowed() -> None:
    assert parse_duration(0, "delay") == 0
    with pytest.raises(InvalidOptionError):
        parse_duration(0, "timeout", allow_zero=False)
    with pytest.raises(InvalidOptionError):
        parse_duration("0s", "timeout", allow_zero=False)


# -- scalar checks -------------------------------------------------------------------------


def test_check_int() -> None:
    assert check_int(3, "attempts", minimum=1) == 3
    for value in [True, 2.0, "3", None]:
        with pytest.raises(InvalidOptionError):
            check_int(value, "attempts")
    with pytest.raises(InvalidOptionError, match="attempts"):
        check_int(0, "attempts", minimum=1)


@pytest.mark.parametrize("name", ["q", "a" * 64, "A.b_c-9"])
def test_check_queue_name_accepts(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 65, "a b", "a/b", "a:b", "é", None, 5])
def test_check_queue_name_refuses(name: Any) -> None:
    with pytest.raises(InvalidOptionError):
        check_queue_name(name)


@pytest.mark.parametrize("label", ["x", "x" * 256, "email1:L1", "with space", "ünï"])
def test_check_label_accepts(label: str) -> None:
    assert check_label(label, "job name") == label


@pytest.mark.parametrize("label", ["", "x" * 257, "a\nb", "a\x00", "\x7f", 5, None])
def test_check_label_refuses(label: Any) -> None:
    with pytest.raises(InvalidOptionError, match="job name"):
        check_label(label, "job name")


# -- Backoff, Keep -------------------------------------------------------------------------


def test_backoff_constructors() -> None:
    assert Backoff.fixed(timedelta(seconds=10)) == Backoff.fixed(10)
    exponential = Backoff.exponential(60, cap=timedelta(minutes=10), jitter=0.25)
    assert (exponential.delay, exponential.cap, exponential.jitter) == (60, 600, 0.25)
    assert Backoff.custom([60, timedelta(minutes=5)]).delays == (60, 300)


@pytest.mark.parametrize(
    "backoff",
    [
        Backoff.fixed(10),
        Backoff.exponential(60, cap=600, jitter=0.5),
        Backoff.exponential(1),
        Backoff.custom([1, 2, 3]),
        Backoff.by_worker(),
    ],
)
def test_backoff_json_round_trip(backoff: Backoff) -> None:
    assert Backoff.parse(backoff.to_json()) == backoff


@pytest.mark.parametrize(
    "value",
    ["fixed", 5, {"type": "linear"}, {"type": "fixed", "delay": -1}, {"type": "fixed", "x": 1},
     {"delay": 5}],
)
def test_backoff_parse_refuses_unknown(value: Any) -> None:
    with pytest.raises(InvalidOptionError):
        Backoff.parse(value)


def test_keep_forms() -> None:
    assert Keep.parse(True, "remove_on_complete") == Keep(count=0)
    assert Keep.parse(0, "remove_on_complete") == Keep(count=0)
    assert Keep.parse(7, "remove_on_complete") == Keep(count=7)
    assert Keep.parse(Keep(age=60), "remove_on_complete") == Keep(age=60)
    kept_all = Keep.parse(False, "remove_on_complete")
    assert (kept_all.count, kept_all.age) == (None, None)
    an_hour: Any = timedelta(hours=1)  # durations take timedelta everywhere
    assert Keep(age=an_hour).age == 3600


def test_keep_needs_count_or_age() -> None:
    with pytest.raises(InvalidOptionError):
        Keep()


@pytest.mark.parametrize("value", [-1, 1.5, "3", None, [1]])
def test_keep_parse_refuses(value: Any) -> None:
    with pytest.raises(InvalidOptionError, match="remove_on_fail"):
        Keep.parse(value, "remove_on_fail")


# -- JobOptions ----------------------------------------------------------------------------


def test_job_options_attributes_fall_back_to_library_defaults() -> None:
    options = JobOptions(attempts=3)

    assert options.attempts == 3
    assert options.priority == 0
    assert options.backoff is None
    assert options.remove_on_complete == Keep(count=1000)
    assert options.remove_on_fail == Keep(count=10000)
    assert options.given() == {"attempts": 3}


def test_job_options_merge_precedence() -> None:
    stored_defaults = JobOptions(attempts=3, priority=2, backoff=Backoff.fixed(5))
    own = JobOptions(attempts=1, lifo=True)

    merged = own.merged_over(stored_defaults)

    assert merged.attempts == 1
    assert merged.priority == 2
    assert merged.backoff == Backoff.fixed(5)
    assert merged.lifo is True
    assert merged.timeout is None


def test_job_options_json_round_trip() -> None:
    options = JobOptions(
        delay=timedelta(minutes=5), attempts=4, backoff=Backoff.exponential(2, cap=60),
        priority=-3, lifo=True, tags=["a", "b"], timeout="30s", remove_on_complete=True,
        remove_on_fail=Keep(count=5, age=3600),
    )

    again = JobOptions.from_json(options.to_json())

    assert again == options
    assert again.delay == 300
    assert again.timeout == 30
    assert list(again.tags) == ["a", "b"]


def test_job_options_run_at_round_trip() -> None:
    moment = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)

    assert JobOptions.from_json(JobOptions(run_at=moment).to_json()).run_at == moment


def test_job_options_refuse_delay_with_run_at() -> None:
    with pytest.raises(InvalidOptionError):
        JobOptions(delay=5, run_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_job_options_from_mapping_refuses_unknown_names() -> None:
    with pytest.raises(InvalidOptionError, match="atempts"):
        JobOptions.from_mapping({"atempts": 3})


def test_per_job_options_are_not_queue_defaults() -> None:
    with pytest.raises(InvalidOptionError):
        QueueConfig().updated({"defaults": JobOptions(job_id="x")})
    with pytest.raises(InvalidOptionError):
        QueueConfig().updated({"defaults": JobOptions(run_at=datetime(2026, 1, 1, tzinfo=UTC))})


def test_queue_config_round_trip_and_partial_update() -> None:
    config = QueueConfig().updated(
        {"defaults": JobOptions(attempts=2), "max_payload": 10, "events": "all"}
    )

    assert QueueConfig.from_json(config.to_json()) == config
    partial = config.updated({"events": "off"})
    assert (partial.max_payload, partial.events, partial.defaults.attempts) == (10, "off", 2)
    assert QueueConfig.from_json(None) == QueueConfig()


@pytest.mark.parametrize(
    "changes",
    [{"events": "some"}, {"max_payload": 0}, {"max_payload": True}, {"limiter": 5},
     {"rate": None}],
)
def test_queue_config_refuses_bad_settings(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionError):
        QueueConfig().updated(changes)


def test_job_spec_takes_add_options() -> None:
    spec = corral.JobSpec("m", {"i": 1}, delay=5, attempts=2)

    assert (spec.name, spec.data) == ("m", {"i": 1})
    assert (spec.options.delay, spec.options.attempts) == (5, 2)
    with pytest.raises(InvalidOptionError):
        corral.JobSpec("", {})


def test_stored_options_leave_out_the_library_defaults() -> None:
    defaults = dict(LIBRARY_DEFAULTS)
    assert stored_options(defaults) == "{}"
    own = stored_options({**defaults, "attempts": 4, "tags": ("a",)})
    assert orjson.loads(own) == {"attempts": 4, "tags": ["a"]}
    expected = JobOptions(**{**defaults, "attempts": 4, "tags": ["a"]})
    assert JobOptions.from_stored(own) == expected


def test_options_stored_in_full_by_an_earlier_version_read_the_same() -> None:
    full = orjson.dumps(JobOptions(**{**LIBRARY_DEFAULTS, "attempts": 2}).to_json()).decode()
    compact = stored_options({**LIBRARY_DEFAULTS, "attempts": 2})
    assert JobOptions.from_stored(full) == JobOptions.from_stored(compact)
