"""Bad input is refused with the right error, and nothing is written to the store."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import corral
from corral.testing import VirtualClock


class Opaque:
    """Not JSON."""


@pytest.fixture
async def guarded(queue: corral.Queue) -> AsyncIterator[corral.Queue]:
    """The queue with one job in it; after the test its counts must be unchanged."""
    await queue.add("existing", {"i": 0})
    before = await queue.counts()
    yield queue
    assert await queue.counts() == before, "a refused call wrote to the store"


def bad(**options: Any) -> Any:
    return pytest.param(options, id="-".join(f"{k}={v!r}" for k, v in options.items()))


@pytest.mark.parametrize(
    "options",
    [
        bad(delay=-1),
        bad(delay=timedelta(seconds=-5)),
        bad(delay=math.nan),
        bad(delay=math.inf),
        bad(delay=-math.inf),
        bad(run_at=datetime(2026, 3, 1, 12, 0)),
        bad(delay=5, run_at=datetime(2026, 3, 1, tzinfo=UTC)),
        bad(attempts=0),
        bad(attempts=-1),
        bad(attempts="3"),
        bad(attempts=True),
        bad(attempts=2.5),
        bad(priority=math.nan),
        bad(priority=math.inf),
        bad(priority="high"),
        bad(backoff="exponential"),
        bad(backoff={"type": "linear", "delay": 5}),
        bad(backoff={"type": "fixed", "delay": -5}),
        bad(backoff=5),
        bad(lifo="yes"),
        bad(tags="lead:L1"),
        bad(tags=[""]),
        bad(tags=["a\x00b"]),
        bad(timeout=0),
        bad(timeout=-1),
        bad(timeout=math.nan),
        bad(remove_on_complete=-1),
        bad(remove_on_complete="yes"),
        bad(remove_on_complete=2.5),
        bad(remove_on_fail=-3),
        bad(remove_on_fail={"count": -1}),
        bad(no_such_option=1),
    ],
)
async def test_bad_option_is_refused(guarded: corral.Queue, options: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await guarded.add("m", {}, **options)


async def test_bad_option_is_a_value_error(guarded: corral.Queue) -> None:
    with pytest.raises(ValueError, match="attempts"):
        await guarded.add("m", {}, attempts=0)


def test_keep_needs_count_or_age() -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Keep()


@pytest.mark.parametrize(
    "keep", [{"count": -1}, {"age": -5}, {"count": True}, {"age": math.nan}, {"count": 1.5}],
    ids=["count-negative", "age-negative", "count-bool", "age-nan", "count-float"],
)
def test_keep_refuses_bad_values(keep: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Keep(**keep)


@pytest.mark.parametrize(
    "make",
    [
        lambda: corral.Backoff.fixed(-1),
        lambda: corral.Backoff.exponential(math.nan),
        lambda: corral.Backoff.exponential(10, cap=-1),
        lambda: corral.Backoff.exponential(10, jitter=1.5),
        lambda: corral.Backoff.exponential(10, jitter=-0.1),
        lambda: corral.Backoff.custom([]),
        lambda: corral.Backoff.custom([5, -1]),
    ],
    ids=["fixed-neg", "exp-nan", "cap-neg", "jitter-high", "jitter-neg", "custom-empty",
         "custom-neg"],
)
def test_backoff_refuses_bad_values(make: Any) -> None:
    with pytest.raises(corral.InvalidOptionError):
        make()


# -- names and ids -------------------------------------------------------------------------

BAD_LABELS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 257, id="257-chars"),
    pytest.param("line\nbreak", id="newline"),
    pytest.param("nul\x00", id="nul"),
    pytest.param("tab\there", id="tab"),
    pytest.param("esc\x1b[31m", id="escape"),
]


@pytest.mark.parametrize("name", BAD_LABELS)
async def test_bad_job_name_is_refused(guarded: corral.Queue, name: str) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await guarded.add(name, {})


@pytest.mark.parametrize("job_id", BAD_LABELS)
async def test_bad_job_id_is_refused(guarded: corral.Queue, job_id: str) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await guarded.add("m", {}, job_id=job_id)


async def test_longest_names_and_ids_with_colons_are_fine(queue: corral.Queue) -> None:
    job = await queue.add("n" * 256, {}, job_id="a:" + "i" * 254)

    assert (job.name, job.id) == ("n" * 256, "a:" + "i" * 254)
    assert await queue.get_job("a:" + "i" * 254) is not None


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "with space", "a/b", "tab\t", "ünïcode", "colon:name"],
    ids=["empty", "65-chars", "space", "slash", "tab", "unicode", "colon"],
)
def test_bad_queue_name_is_refused_at_construction(store_url: str, name: str) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Queue(name, url=store_url)


@pytest.mark.parametrize("name", ["q", "x" * 64, "Emails.v2_high-prio", "0"])
async def test_good_queue_names(store_url: str, clock: VirtualClock, name: str) -> None:
    async with corral.Queue(name, url=store_url, clock=clock) as queue:
        await queue.add("m", {})
        assert (await queue.counts())["waiting"] == 1


# -- data ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        pytest.param({1, 2}, "data", id="set"),
        pytest.param(Opaque(), "data", id="object"),
        pytest.param(b"bytes", "data", id="bytes"),
        pytest.param(math.nan, "data", id="nan"),
        pytest.param({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "data.when", id="datetime"),
        pytest.param({"ratio": math.inf}, "data.ratio", id="inf"),
        pytest.param({"ratio": -math.inf}, "data.ratio", id="minus-inf"),
        pytest.param({"items": [1, 2, {3}]}, "data.items[2]", id="nested-list"),
        pytest.param({"a": {"b": [0, {"c": math.nan}]}}, "data.a.b[1].c", id="deep"),
        pytest.param({1: "int key"}, "data", id="int-key"),
        pytest.param({"inner": {(1, 2): "tuple key"}}, "data.inner", id="tuple-key"),
    ],
)
async def test_non_json_data_names_the_path(guarded: corral.Queue, data: Any, path: str) -> None:
    with pytest.raises(corral.SerializationError) as refused:
        await guarded.add("m", data)

    assert path in str(refused.value)


async def test_json_data_round_trips(queue: corral.Queue) -> None:
    data = {"s": "ü", "i": -3, "f": 1.5, "b": False, "n": None, "l": [1, [2]], "t": (1, 2)}

    job = await queue.add("m", data)

    expected = {**data, "t": [1, 2]}
    assert job.data == expected
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert stored.data == expected


async def test_payload_over_max_payload_is_refused(guarded: corral.Queue) -> None:
    await guarded.configure(max_payload=100)

    with pytest.raises(corral.PayloadTooLargeError):
        await guarded.add("m", {"blob": "x" * 200})

    assert issubclass(corral.PayloadTooLargeError, corral.CorralError)


async def test_payload_at_max_payload_is_accepted(queue: corral.Queue) -> None:
    await queue.configure(max_payload=100)
    # {"blob":"…"} is 11 bytes of JSON around the string.
    job = await queue.add("m", {"blob": "x" * 89})

    assert job.data == {"blob": "x" * 89}


async def test_default_max_payload_is_one_mebibyte(guarded: corral.Queue) -> None:
    with pytest.raises(corral.PayloadTooLargeError):
        await guarded.add("m", "x" * 1_048_576)


# -- store URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["postgres://localhost/db", "mysql://x", "http://example.com", "corral.db", ""],
)
def test_bad_url_is_refused_at_construction(url: str) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Queue("q", url=url)
    with pytest.raises(corral.InvalidOptionError):
        corral.Worker("q", lambda job: None, url=url)


@pytest.mark.parametrize("value", ["", "   "])
async def test_empty_corral_url_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CORRAL_URL", value)

    with pytest.raises(corral.InvalidOptionError):
        corral.Queue("q")
    # A Worker without url= may still be bound to the CLI's --url, so it may refuse at run().
    with pytest.raises(corral.InvalidOptionError):
        await corral.Worker("q", lambda job: None).run(burst=True)


def test_corral_url_is_used_when_no_url_is_given(
    monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    monkeypatch.setenv("CORRAL_URL", store_url)

    assert corral.Queue("q").url == store_url
