"""Schedules: stored specs, their next ticks in settle, and firing as a compare-and-set."""

from __future__ import annotations

import asyncio

from corral.backends.redis import RedisBackend
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, ids, new_job

SPEC = '{"every": 60}'


async def test_upsert_list_and_remove(backend: RedisBackend) -> None:
    assert await backend.upsert_schedule("q", "b", SPEC, T0 + 60_000)
    assert await backend.upsert_schedule("q", "a", SPEC, None)
    assert not await backend.upsert_schedule("q", "b", SPEC, T0 + 999)  # identical: kept
    assert await backend.queue_names() == ["q"]
    a, b = await backend.list_schedules("q")
    assert (a.id, a.next_run, a.version, a.count, a.last_run) == ("a", None, 1, 0, None)
    assert (b.id, b.spec, b.next_run, b.version) == ("b", SPEC, T0 + 60_000, 1)
    assert await backend.upsert_schedule("q", "b", '{"every": 30}', T0 + 30_000)
    (_, changed) = await backend.list_schedules("q")
    assert (changed.spec, changed.next_run, changed.version) == ('{"every": 30}', T0 + 30_000, 2)
    assert await backend.remove_schedule("q", "b")
    assert not await backend.remove_schedule("q", "b")
    assert [s.id for s in await backend.list_schedules("q")] == ["a"]
    assert (await backend.settle("q", [], 1, LOCK_MS, "w", T0)).next_due_ms is None


async def test_settle_reports_due_schedules_and_the_next_tick(backend: RedisBackend) -> None:
    await backend.upsert_schedule("q", "later", SPEC, T0 + 5000)
    await backend.upsert_schedule("q", "soon", SPEC, T0 + 1000)
    await add(backend, new_job("d", delay_ms=3000))
    early = await backend.settle("q", [], 1, LOCK_MS, "w", T0)
    assert (early.next_due_ms, early.due_schedules) == (T0 + 1000, [])
    await backend.set_paused("q", True)
    due = await backend.settle("q", [], 1, LOCK_MS, "w", T0 + 1000)
    assert due.next_due_ms == T0 + 1000
    assert [s.id for s in due.due_schedules] == ["soon"]  # reported even while paused
    both = await backend.settle("q", [], 1, LOCK_MS, "w", T0 + 9000)
    assert [s.id for s in both.due_schedules] == ["soon", "later"]


async def test_a_tick_fires_once(backend: RedisBackend, redis_url: str) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0 + 1000)
    (schedule,) = (await backend.settle("q", [], 0, LOCK_MS, "w", T0 + 1000)).due_schedules
    job = new_job("schedule:s:1", tags=("cron",))
    others = [RedisBackend(redis_url, {}) for _ in range(4)]
    try:
        fired = await asyncio.gather(*(
            store.fire_schedule("q", "s", schedule.version, T0 + 1000, T0 + 61_000, job, T0 + 1000)
            for store in [backend, *others]
        ))
    finally:
        for store in others:
            await store.close()
    assert sorted(fired) == [False] * 4 + [True]
    (after,) = await backend.list_schedules("q")
    assert (after.next_run, after.last_run, after.count) == (T0 + 61_000, T0 + 1000, 1)
    assert ids(await claim(backend, 5, T0 + 1000)) == ["schedule:s:1"]
    stale = await backend.fire_schedule("q", "s", schedule.version + 1, T0 + 61_000, None, job, T0)
    assert not stale


async def test_a_fired_tick_keeps_a_stored_job_and_can_end(backend: RedisBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await add(backend, new_job("tick", data='"old"'))
    assert await backend.fire_schedule("q", "s", 1, T0, None, new_job("tick", data='"new"'), T0)
    job = await backend.get_job("q", "tick")
    assert job is not None
    assert job.data == '"old"'
    (ended,) = await backend.list_schedules("q")
    assert (ended.next_run, ended.count) == (None, 1)
    assert (await backend.settle("q", [], 0, LOCK_MS, "w", T0 + 10**9)).due_schedules == []


async def test_obliterate_removes_schedules(backend: RedisBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await backend.obliterate("q", False)
    assert await backend.list_schedules("q") == []


async def test_the_store_clock(backend: RedisBackend) -> None:
    first = await backend.time_ms()
    assert first > T0
    assert 0 <= await backend.time_ms() - first < 5000
