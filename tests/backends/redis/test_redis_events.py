"""The capped event stream and the per-minute metrics of the Redis store."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import pytest
import redis

from corral import clock
from corral.backends.base import (
    Complete,
    DedupeRule,
    Fail,
    Retention,
    RetryLater,
)
from corral.backends.redis import RedisBackend
from corral.backends.redis import events as event_reads
from corral.backends.redis.keys import queue_keys
from corral.backends.redis.scripts import source
from corral.errors import InvalidOptionError
from tests.backends.protocol.events_support import (
    LEVELS,
    add,
    at_level,
    configure,
    events,
    settle,
)
from tests.backends.redis.redis_support import LOCK_MS, T0, claim, new_job

CAP = 10_000
SLACK = 200
"""How far past the cap an approximately trimmed stream may run (whole nodes go)."""
MINUTE_MS = 60_000
DAY_MS = 86_400_000
M0 = T0 - T0 % MINUTE_MS
"""The start of the minute holding T0."""
KEYS = queue_keys("q")


def stream_id(event_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair."""
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


# -- what each transition records, at each level -------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
async def test_adds(backend: RedisBackend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("a", name="mail"), new_job("b", delay_ms=5000))
    await add(backend, new_job("a"))  # an id still stored: no event
    assert await events(backend) == at_level(level, [
        ("added", "a", {"name": "mail"}),
        ("waiting", "a", None),
        ("added", "b", {"name": "task", "delay_ms": 5000}),
        ("delayed", "b", {"run_at": T0 + 5000}),
    ])


async def test_a_queue_never_configured_records_at_level_final(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"))
    assert await events(backend) == [("added", "a", {"name": "task"})]
    assert raw.hget(KEYS["meta"], "events") is None


async def test_a_scheduled_job_records_its_add(backend: RedisBackend) -> None:
    await configure(backend, "all")
    await backend.upsert_schedule("q", "s", '{"every": 1000}', T0)
    assert await backend.fire_schedule("q", "s", 1, T0, T0 + 1000, new_job("tick"), T0)
    assert await events(backend) == [("added", "tick", {"name": "task"}), ("waiting", "tick", None)]


async def test_retention_records_nothing(backend: RedisBackend) -> None:
    await add(
        backend,
        new_job("a", keep_completed=Retention(0, None)),
        new_job("b", keep_completed=Retention(1, None)),
    )
    (a, b) = await claim(backend, 2)
    await settle(backend, [Complete("a", a.token, "1"), Complete("b", b.token, "2")], T0)
    assert (await backend.counts("q"))["completed"] == 1
    assert [e[0] for e in await events(backend)] == ["added", "added", "completed", "completed"]


async def test_off_records_nothing_at_all(backend: RedisBackend, raw: redis.Redis) -> None:
    await configure(backend, "off")
    await add(backend, new_job("a"), new_job("b", delay_ms=10), new_job("c", tags=("t",)))
    await add(backend, new_job("x", dedupe=DedupeRule("k", None, False)))
    await add(backend, new_job("y", dedupe=DedupeRule("k", None, False)))
    jobs = await claim(backend, 1, T0 + 10)
    await backend.update_progress("q", "a", "50")
    await settle(backend, [Fail("a", jobs[0].token, "x", None)], T0 + 10, claim_count=1)
    await backend.recover_stalled("q", 0, T0 + LOCK_MS + 20)
    await backend.retry_failed("q", None, T0)
    await backend.remove_tagged("q", "t")
    await backend.drain("q", delayed=True)
    assert await backend.last_event_id("q") == "0"
    assert await backend.read_events("q", "0", 10, 0) == []
    assert not raw.exists(KEYS["events"])


async def test_the_level_changes_with_the_config(backend: RedisBackend) -> None:
    await configure(backend, "off")
    await add(backend, new_job("a"))
    await configure(backend, "all")
    await add(backend, new_job("b"))
    await configure(backend, "final")
    await add(backend, new_job("c"))
    assert await events(backend) == [
        ("added", "b", {"name": "task"}), ("waiting", "b", None), ("added", "c", {"name": "task"}),
    ]


async def test_events_carry_ids_times_and_their_queue(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"), now=T0)
    await add(backend, new_job("b"), now=T0 + 5, queue="other")
    await add(backend, new_job("c"), now=T0 + 9)
    records = await backend.read_events("q", "0", 10, 0)
    assert [(r.job_id, r.timestamp) for r in records] == [("a", T0), ("c", T0 + 9)]
    assert stream_id(records[0].id) < stream_id(records[1].id)
    # The stream's own ids, from the server's clock; `at` is the transition's (virtual) time.
    stored: Any = raw.xrange(KEYS["events"])
    assert [entry[0].decode() for entry in stored] == [r.id for r in records]
    assert [r.job_id for r in await backend.read_events("other", "0", 10, 0)] == ["b"]


# -- reading -------------------------------------------------------------------------------


async def test_read_after_an_id(backend: RedisBackend) -> None:
    assert await backend.last_event_id("q") == "0"
    await add(backend, *[new_job(f"j{i}") for i in range(5)])
    first = await backend.read_events("q", "0", 2, 0)
    assert [r.job_id for r in first] == ["j0", "j1"]
    rest = await backend.read_events("q", first[-1].id, 10, 0)
    assert [r.job_id for r in rest] == ["j2", "j3", "j4"]
    assert await backend.last_event_id("q") == rest[-1].id
    assert await backend.read_events("q", rest[-1].id, 10, 0) == []
    assert await backend.read_events("q", "0", 0, 0) == []
    assert [r.job_id for r in await backend.read_events("q", "0-0", 1, 0)] == ["j0"]
    for wrong in ("5", "abc", "1-2-3", "", "$"):  # "5": an id of the SQLite store
        with pytest.raises(InvalidOptionError):
            await backend.read_events("q", wrong, 10, 0)


async def test_the_stream_is_capped(backend: RedisBackend) -> None:
    await add(backend, *[new_job(f"a{i}") for i in range(CAP - 10)])
    # Trimming drops whole nodes of entries (100 each): past the cap by more than one.
    await add(backend, *[new_job(f"b{i}") for i in range(300)])
    kept = await backend.read_events("q", "0", 2 * CAP, 0)
    assert CAP <= len(kept) <= CAP + SLACK
    assert kept[0].job_id != "a0"
    assert kept[-1].job_id == "b299"
    assert kept[-1].id == await backend.last_event_id("q")
    ids = [stream_id(r.id) for r in kept]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # Resuming from a trimmed id reads from the oldest kept.
    assert (await backend.read_events("q", "0-1", 1, 0))[0].id == kept[0].id
    # One transition with more events than the cap writes only its newest.
    before = kept[-1].id
    assert await backend.drain("q", delayed=False) == CAP + 290
    removed = await backend.read_events("q", before, 2 * CAP, 0)
    assert len(removed) == CAP
    assert {e.type for e in removed} == {"removed"}
    kept = await backend.read_events("q", "0", 2 * CAP, 0)
    assert CAP <= len(kept) <= CAP + SLACK


async def test_obliterate_drops_the_events_and_metrics(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"), new_job("b"))
    (job,) = await claim(backend, 1)
    await settle(backend, [Complete("a", job.token, "null")], T0)
    assert len(await backend.metrics("q", 0, T0)) == 1
    await backend.obliterate("q", force=False)
    assert await backend.last_event_id("q") == "0"
    assert await backend.metrics("q", 0, T0) == []
    assert raw.keys("corral:{q}:*") == []
    await add(backend, new_job("c"))
    assert [r.job_id for r in await backend.read_events("q", "0", 10, 0)] == ["c"]


async def test_a_blocking_read_times_out(backend: RedisBackend) -> None:
    await add(backend, new_job("a"))
    last = await backend.last_event_id("q")
    started = clock.monotonic()
    assert await backend.read_events("q", last, 10, 100) == []
    assert 0.1 <= clock.monotonic() - started < 5
    # Events of another queue do not end the wait.
    reading = asyncio.ensure_future(backend.read_events("q", last, 10, 300))
    for i in range(3):
        await asyncio.sleep(0.03)
        await add(backend, new_job(f"o{i}"), queue="other")
    assert await reading == []


async def test_a_long_wait_is_several_blocking_reads(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_reads, "_MAX_BLOCK_MS", 50)
    started = clock.monotonic()
    assert await backend.read_events("q", "0", 10, 200) == []
    assert 0.2 <= clock.monotonic() - started < 5
    reading = asyncio.ensure_future(backend.read_events("q", "0", 10, 30_000))
    await asyncio.sleep(0.15)  # past a few of the short blocking reads
    assert not reading.done()
    await add(backend, new_job("late"))
    assert [r.job_id for r in await asyncio.wait_for(reading, 5)] == ["late"]


async def test_a_blocking_read_returns_at_once_when_events_wait(backend: RedisBackend) -> None:
    await add(backend, new_job("a"))
    started = clock.monotonic()
    assert [r.job_id for r in await backend.read_events("q", "0", 10, 30_000)] == ["a"]
    assert clock.monotonic() - started < 5


async def test_a_blocking_read_is_woken_by_another_connection(
    backend: RedisBackend, redis_url: str
) -> None:
    other = RedisBackend(redis_url, {})
    try:
        await add(backend, new_job("a"))
        last = await backend.last_event_id("q")
        reading = asyncio.ensure_future(backend.read_events("q", last, 10, 30_000))
        await asyncio.sleep(0.05)
        assert not reading.done()
        started = clock.monotonic()
        await other.update_progress("q", "a", "7")
        records = await asyncio.wait_for(reading, 30)
        assert clock.monotonic() - started < 1.0
        assert [(r.type, r.data) for r in records] == [("progress", '{"progress":7}')]
    finally:
        await other.close()


async def test_a_blocking_read_stalls_no_other_call(backend: RedisBackend) -> None:
    reading = asyncio.ensure_future(backend.read_events("q", "0", 10, 30_000))
    waiting = asyncio.ensure_future(backend.wait_for_change("q", 30))
    await asyncio.sleep(0.05)
    started = clock.monotonic()
    await add(backend, new_job("a"))  # wakes both
    assert [c.record.id for c in await claim(backend, 1)] == ["a"]
    assert clock.monotonic() - started < 1.0
    assert [r.job_id for r in await asyncio.wait_for(reading, 5)] == ["a"]
    await asyncio.wait_for(waiting, 5)


async def test_a_cancelled_read_leaves_the_backend_working(backend: RedisBackend) -> None:
    reading = asyncio.ensure_future(backend.read_events("q", "0", 10, 30_000))
    await asyncio.sleep(0.05)
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    await add(backend, new_job("a"))
    assert [r.job_id for r in await backend.read_events("q", "0", 10, 1000)] == ["a"]


# -- metrics -------------------------------------------------------------------------------


def rows(metrics: list[Any]) -> list[tuple[int, ...]]:
    return [
        (m.minute, m.completed, m.failed, m.processing_ms_total, m.processing_ms_max,
         m.wait_ms_total, m.wait_ms_max)
        for m in metrics
    ]


async def test_metrics_per_minute(backend: RedisBackend) -> None:
    assert T0 - M0 == 20_000  # T0 is 20 s into its minute
    await add(backend, *[new_job(i) for i in "abcr"])
    await add(backend, new_job("d", run_at_ms=T0 + 4000))  # due 4 s after it was added
    await add(backend, new_job("p", run_at_ms=T0 - 90_000))  # due before it was added
    held = {c.record.id: c.token for c in await claim(backend, 6, T0 + 4000)}
    await settle(backend, [
        Complete("a", held["a"], "1"),  # processing 2000, wait 4000
        Fail("b", held["b"], "no", None),  # processing 2000, wait 4000
        RetryLater("r", held["r"], "again", None, 0),  # not finished: not counted
    ], T0 + 6000)
    await settle(backend, [
        Complete("d", held["d"], "1"),  # processing 4000, wait 0
        Complete("p", held["p"], "1"),  # processing 4000, wait 4000
    ], T0 + 8000)
    await settle(backend, [Complete("c", held["c"], "1")], T0 + 50_000)  # next minute
    # processing 46000, wait 4000
    first = (M0, 3, 1, 2000 + 2000 + 4000 + 4000, 4000, 4000 + 4000 + 0 + 4000, 4000)
    second = (M0 + MINUTE_MS, 1, 0, 46_000, 46_000, 4000, 4000)
    assert rows(await backend.metrics("q", M0, M0 + MINUTE_MS)) == [first, second]
    assert rows(await backend.metrics("q", M0 + 1, M0 + 10 * MINUTE_MS)) == [second]
    assert rows(await backend.metrics("q", 0, M0)) == [first]
    assert await backend.metrics("q", M0 + 2 * MINUTE_MS, M0 + 9 * MINUTE_MS) == []
    assert await backend.metrics("other", 0, M0 + DAY_MS) == []


async def test_metrics_count_stall_failures_whatever_the_level(backend: RedisBackend) -> None:
    await configure(backend, "off")
    await add(backend, new_job("s"))
    await claim(backend, 1, T0, lock_ms=1000)
    await backend.recover_stalled("q", 0, T0 + 1500)
    (minute,) = await backend.metrics("q", M0, M0)
    assert (minute.completed, minute.failed, minute.processing_ms_total, minute.wait_ms_max) == (
        0, 1, 1500, 0,
    )


async def test_large_totals_stay_exact(backend: RedisBackend) -> None:
    await add(backend, new_job("a"), now=T0 - 10 * DAY_MS)  # waited 10 days
    (job,) = await claim(backend, 1, T0)
    await settle(backend, [Complete("a", job.token, "1")], T0 + 123_457)
    assert rows(await backend.metrics("q", 0, T0 + DAY_MS)) == [
        (M0 + 2 * MINUTE_MS, 1, 0, 123_457, 123_457, 10 * DAY_MS, 10 * DAY_MS)
    ]


async def test_old_minutes_are_dropped(backend: RedisBackend, raw: redis.Redis) -> None:
    async def finish(job_id: str, now: int) -> None:
        await add(backend, new_job(job_id), now=now)
        (job,) = await claim(backend, 1, now)
        await settle(backend, [Complete(job_id, job.token, "null")], now)

    await finish("a", T0)
    await finish("b", T0 + 2 * DAY_MS)
    await finish("c", T0 + 2 * DAY_MS + 1)  # the same minute: nothing to drop
    assert len(await backend.metrics("q", 0, T0 + 10 * DAY_MS)) == 2
    await finish("d", T0 + 9 * DAY_MS)
    kept = await backend.metrics("q", 0, T0 + 10 * DAY_MS)
    assert [(m.minute - M0, m.completed) for m in kept] == [(2 * DAY_MS, 2), (9 * DAY_MS, 1)]
    assert raw.hlen(KEYS["metrics"]) == raw.zcard(KEYS["metric_minutes"]) == 2


# -- the scripts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "add", "fire_schedule", "settle", "recover_stalled", "remove", "remove_tagged", "clean",
    "drain", "promote", "retry_job", "retry_failed", "update_progress",
])
def test_scripts_that_record_read_the_level_once(name: str) -> None:
    assert "events" in source(name).keys
    own = resources.files("corral.backends.redis").joinpath("lua", f"{name}.lua").read_text()
    assert own.count("recorder(Q") == 1, f"{name}.lua reads the level more than once"


def test_the_new_keys_come_last() -> None:
    parts = list(KEYS)
    assert parts[-4:] == ["events", "metrics", "metric_minutes", "deps"]
    assert set(source("obliterate").keys) == set(parts)
