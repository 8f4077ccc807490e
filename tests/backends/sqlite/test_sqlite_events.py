"""The capped event stream and the per-minute metrics of the SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from corral import clock
from corral.backends.base import (
    Complete,
    DedupeRule,
    Fail,
    Retention,
    RetryLater,
)
from corral.backends.sqlite import SqliteBackend, notify
from corral.backends.sqlite.events import CAP
from corral.backends.sqlite.metrics import KEEP_MS, MINUTE_MS
from corral.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from corral.errors import InvalidOptionError
from tests.backends.protocol.events_support import (
    LEVELS,
    add,
    at_level,
    configure,
    events,
    settle,
)
from tests.backends.sqlite.sqlite_support import (
    LOCK_MS,
    T0,
    claim,
    finish_process,
    go,
    new_job,
    ready,
    start_adder,
)

DAY_MS = 86_400_000
M0 = T0 - T0 % MINUTE_MS
"""The start of the minute holding T0."""


# -- what each transition records, at each level -------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
async def test_adds(backend: SqliteBackend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("a", name="mail"), new_job("b", delay_ms=5000))
    await add(backend, new_job("a"))  # an id still stored: no event
    assert await events(backend) == at_level(level, [
        ("added", "a", {"name": "mail"}),
        ("waiting", "a", None),
        ("added", "b", {"name": "task", "delay_ms": 5000}),
        ("delayed", "b", {"run_at": T0 + 5000}),
    ])


async def test_schedule_ticks_add_jobs(backend: SqliteBackend) -> None:
    await configure(backend, "all")
    assert await backend.upsert_schedule("q", "s", '{"every": 60000}', T0)
    (schedule,) = await backend.list_schedules("q")
    job = new_job("s:1", name="tick")
    assert await backend.fire_schedule("q", "s", schedule.version, T0, T0 + 60_000, job, T0)
    assert not await backend.fire_schedule("q", "s", schedule.version, T0, T0 + 60_000, job, T0)
    assert await events(backend) == [("added", "s:1", {"name": "tick"}), ("waiting", "s:1", None)]


async def test_a_queue_never_configured_records_at_level_final(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"))
    assert await events(backend) == [("added", "a", {"name": "task"})]


async def test_retention_records_nothing(backend: SqliteBackend) -> None:
    await add(
        backend,
        new_job("a", keep_completed=Retention(0, None)),
        new_job("b", keep_completed=Retention(1, None)),
    )
    (a, b) = await claim(backend, 2)
    await settle(backend, [Complete("a", a.token, "1"), Complete("b", b.token, "2")], T0)
    assert await backend.counts("q") == {
        "waiting": 0, "delayed": 0, "active": 0, "completed": 1, "failed": 0,
        "waiting-children": 0,
    }
    assert [e[0] for e in await events(backend)] == ["added", "added", "completed", "completed"]


async def test_off_records_nothing_at_all(backend: SqliteBackend) -> None:
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
    with sqlite3.connect(backend.settings.path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone()[0] == 0
    conn.close()


async def test_the_level_changes_with_the_config(backend: SqliteBackend) -> None:
    await configure(backend, "off")
    await add(backend, new_job("a"))
    await configure(backend, "all")
    await add(backend, new_job("b"))
    await configure(backend, "final")
    await add(backend, new_job("c"))
    assert await events(backend) == [
        ("added", "b", {"name": "task"}), ("waiting", "b", None), ("added", "c", {"name": "task"}),
    ]


async def test_events_carry_ids_times_and_their_queue(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"), now=T0)
    await add(backend, new_job("b"), now=T0 + 5, queue="other")
    await add(backend, new_job("c"), now=T0 + 9)
    records = await backend.read_events("q", "0", 10, 0)
    assert [(r.id, r.job_id, r.timestamp) for r in records] == [("1", "a", T0), ("2", "c", T0 + 9)]
    assert [r.job_id for r in await backend.read_events("other", "0", 10, 0)] == ["b"]


# -- reading -------------------------------------------------------------------------------


async def test_read_after_an_id(backend: SqliteBackend) -> None:
    assert await backend.last_event_id("q") == "0"
    await add(backend, *[new_job(f"j{i}") for i in range(5)])
    assert await backend.last_event_id("q") == "5"
    first = await backend.read_events("q", "0", 2, 0)
    assert [(r.id, r.job_id) for r in first] == [("1", "j0"), ("2", "j1")]
    rest = await backend.read_events("q", first[-1].id, 10, 0)
    assert [r.job_id for r in rest] == ["j2", "j3", "j4"]
    assert await backend.read_events("q", "5", 10, 0) == []
    assert await backend.read_events("q", "0", 0, 0) == []
    with pytest.raises(InvalidOptionError):
        await backend.read_events("q", "1700000000000-0", 10, 0)


async def test_the_stream_is_capped(backend: SqliteBackend) -> None:
    await add(backend, *[new_job(f"a{i}") for i in range(CAP - 10)])
    await add(backend, *[new_job(f"b{i}") for i in range(30)])  # trims 20
    kept = await backend.read_events("q", "0", CAP + 100, 0)
    assert len(kept) == CAP
    assert (kept[0].id, kept[0].job_id) == ("21", "a20")
    assert (kept[-1].id, kept[-1].job_id) == (str(CAP + 20), "b29")
    await backend.update_progress("q", "b29", "1")
    assert (await backend.read_events("q", "0", 1, 0))[0].id == "22"
    # One transition with more events than the cap keeps its newest.
    await backend.drain("q", delayed=False)
    kept = await backend.read_events("q", "0", CAP + 100, 0)
    assert len(kept) == CAP
    assert {e.type for e in kept} == {"removed"}
    assert kept[-1].id == await backend.last_event_id("q") == str(2 * CAP + 41)
    # Resuming from a trimmed id reads from the oldest kept.
    assert (await backend.read_events("q", "5", 1, 0))[0].id == kept[0].id


async def test_obliterate_drops_the_events_but_not_their_numbering(
    backend: SqliteBackend,
) -> None:
    await add(backend, new_job("a"), new_job("b"))
    await backend.obliterate("q", force=True)
    assert await backend.last_event_id("q") == "0"
    await add(backend, new_job("c"))
    assert [(r.id, r.job_id) for r in await backend.read_events("q", "2", 10, 0)] == [("3", "c")]


async def test_a_blocking_read_times_out(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"))
    started = clock.monotonic()
    assert await backend.read_events("q", "1", 10, 100) == []
    assert 0.1 <= clock.monotonic() - started < 5
    # Commits to another queue wake the reader, which reads again and waits on.
    reading = asyncio.ensure_future(backend.read_events("q", "1", 10, 300))
    for i in range(3):
        await asyncio.sleep(0.03)
        await add(backend, new_job(f"o{i}"), queue="other")
    assert await reading == []
    assert notify.waiting(backend.settings.path) == 0


async def test_a_blocking_read_returns_at_once_when_events_wait(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"))
    started = clock.monotonic()
    assert [r.job_id for r in await backend.read_events("q", "0", 10, 30_000)] == ["a"]
    assert clock.monotonic() - started < 5


async def test_a_blocking_read_is_woken_by_another_connection(
    backend: SqliteBackend, db_path: str
) -> None:
    other = SqliteBackend(db_path, {})
    try:
        await add(backend, new_job("a"))
        reading = asyncio.ensure_future(backend.read_events("q", "1", 10, 30_000))
        await asyncio.sleep(0.05)
        assert not reading.done()
        started = clock.monotonic()
        await other.update_progress("q", "a", "7")
        records = await asyncio.wait_for(reading, 30)
        assert clock.monotonic() - started < 1.0
        assert [(r.type, r.data) for r in records] == [("progress", '{"progress":7}')]
    finally:
        await other.close()


async def test_a_blocking_read_is_woken_by_this_process(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"))
    reading = asyncio.ensure_future(backend.read_events("q", "1", 10, 30_000))
    await asyncio.sleep(0.05)
    started = clock.monotonic()
    await add(backend, new_job("b"))
    assert [r.job_id for r in await asyncio.wait_for(reading, 30)] == ["b"]
    assert clock.monotonic() - started < 1.0


async def test_a_blocking_read_is_woken_by_another_process(
    backend: SqliteBackend, db_path: str
) -> None:
    await backend.ping()
    child = await start_adder(db_path, "x", 1, handshake="after-open")
    await ready(child)
    reading = asyncio.ensure_future(backend.read_events("q", "0", 10, 30_000))
    await asyncio.sleep(0.05)
    assert not reading.done()
    started = clock.monotonic()
    await go(child)
    records = await asyncio.wait_for(reading, 30)
    assert clock.monotonic() - started < 5
    assert [(r.type, r.job_id) for r in records] == [("added", "x0")]
    await finish_process(child)


async def test_a_cancelled_read_leaves_no_waiter(backend: SqliteBackend) -> None:
    reading = asyncio.ensure_future(backend.read_events("q", "0", 10, 30_000))
    await asyncio.sleep(0.05)
    assert notify.waiting(backend.settings.path) == 1
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    assert notify.waiting(backend.settings.path) == 0


# -- metrics -------------------------------------------------------------------------------


async def test_metrics_per_minute(backend: SqliteBackend) -> None:
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

    def rows(metrics: list[Any]) -> list[tuple[int, ...]]:
        return [
            (m.minute, m.completed, m.failed, m.processing_ms_total, m.processing_ms_max,
             m.wait_ms_total, m.wait_ms_max)
            for m in metrics
        ]

    assert rows(await backend.metrics("q", M0, M0 + MINUTE_MS)) == [first, second]
    assert rows(await backend.metrics("q", M0 + 1, M0 + 10 * MINUTE_MS)) == [second]
    assert rows(await backend.metrics("q", 0, M0)) == [first]
    assert await backend.metrics("q", M0 + 2 * MINUTE_MS, M0 + 9 * MINUTE_MS) == []
    assert await backend.metrics("other", 0, M0 + DAY_MS) == []


async def test_metrics_count_stall_failures_whatever_the_level(backend: SqliteBackend) -> None:
    await configure(backend, "off")
    await add(backend, new_job("s"))
    await claim(backend, 1, T0, lock_ms=1000)
    await backend.recover_stalled("q", 0, T0 + 1500)
    (minute,) = await backend.metrics("q", M0, M0)
    assert (minute.completed, minute.failed, minute.processing_ms_total, minute.wait_ms_max) == (
        0, 1, 1500, 0,
    )


async def test_old_minutes_are_dropped(backend: SqliteBackend) -> None:
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
    assert KEEP_MS == 8 * DAY_MS


async def test_obliterate_drops_the_metrics(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"))
    (job,) = await claim(backend, 1)
    await settle(backend, [Complete("a", job.token, "null")], T0)
    assert len(await backend.metrics("q", 0, T0)) == 1
    await backend.obliterate("q", force=False)
    assert await backend.metrics("q", 0, T0) == []


async def test_a_file_at_schema_4_gains_events_and_metrics(db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        for migration in MIGRATIONS[:4]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.execute("INSERT INTO queues (name) VALUES ('q')")
    conn.close()
    backend = SqliteBackend(db_path, {})
    try:
        await add(backend, new_job("a"))
        assert await events(backend) == [("added", "a", {"name": "task"})]
    finally:
        await backend.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
