"""Dedupe on the Redis store: simple, throttle (ttl), debounce (replace), in `add` and in a
schedule's tick."""

from __future__ import annotations

import json

import redis

from corral.backends.redis import RedisBackend
from corral.job_state import JobState
from tests.backends.protocol.support import (
    SECOND,
    T0,
    add_jobs,
    add_one,
    claim,
    complete,
    deduped,
    ids,
    new_job,
)


async def test_dedupe_ignores_adds_while_the_job_is_pending(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    assert (await add_one(backend, deduped("a")))[:2] == ("a", True)
    assert json.loads(raw.hget("corral:{q}:dedupe", "k") or "") == {"id": "a"}
    assert (await add_one(backend, deduped("b")))[:2] == ("a", False)
    assert (await add_one(backend, deduped("other", key="k2")))[:2] == ("other", True)
    (claimed,) = await claim(backend, 1)
    assert (await add_one(backend, deduped("c")))[:2] == ("a", False)  # active
    await complete(backend, "a", claimed.token)
    assert (await add_one(backend, deduped("d")))[:2] == ("d", True)  # free once completed
    assert (await add_one(backend, deduped("e")))[:2] == ("d", False)
    assert await backend.get_job("q", "b") is None
    # Delayed counts as pending too; a removed job frees the key.
    await backend.obliterate("q", force=True)
    assert (await add_one(backend, deduped("f", delay_ms=SECOND)))[:2] == ("f", True)
    assert (await add_one(backend, deduped("g")))[:2] == ("f", False)
    assert await backend.remove("q", "f")
    assert (await add_one(backend, deduped("h")))[:2] == ("h", True)


async def test_dedupe_within_one_bulk_add(backend: RedisBackend) -> None:
    result = await add_jobs(backend, [deduped("a"), deduped("b"), new_job("c")])
    assert [(r.id, created) for r, created in result.records] == [
        ("a", True), ("a", False), ("c", True),
    ]


async def test_dedupe_with_ttl_throttles(backend: RedisBackend, raw: redis.Redis) -> None:
    assert (await add_one(backend, deduped("a", ttl_ms=SECOND)))[:2] == ("a", True)
    assert json.loads(raw.hget("corral:{q}:dedupe", "k") or "") == {
        "id": "a", "exp": T0 + SECOND,
    }
    (claimed,) = await claim(backend, 1)
    await complete(backend, "a", claimed.token)
    # Finished, but the ttl still runs: a duplicate.
    assert (await add_one(backend, deduped("b", ttl_ms=SECOND), T0 + 999))[:2] == ("a", False)
    assert (await add_one(backend, deduped("c", ttl_ms=SECOND), T0 + SECOND))[:2] == ("c", True)
    # Once the ttl ran out the add goes ahead even while the last job still waits.
    assert (await add_one(backend, deduped("d", ttl_ms=SECOND), T0 + 2 * SECOND))[:2] == (
        "d", True,
    )
    # A survivor that retention removed frees the key.
    assert await backend.remove("q", "d")
    assert (await add_one(backend, deduped("e", ttl_ms=SECOND), T0 + 2 * SECOND))[:2] == (
        "e", True,
    )


async def test_replace_restarts_the_delay(backend: RedisBackend) -> None:
    await add_one(backend, deduped("a", delay_ms=SECOND, data='{"v": 1}'))
    replacement = deduped("b", replace=True, delay_ms=SECOND, data='{"v": 2}')
    assert await add_one(backend, replacement, T0 + 600) == ("a", False, '{"v": 2}')
    job = await backend.get_job("q", "a")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.DELAYED, T0 + 1600)
    assert await claim(backend, 5, now=T0 + SECOND) == []
    (claimed,) = await claim(backend, 5, now=T0 + 1600)
    assert (claimed.record.id, claimed.record.data) == ("a", '{"v": 2}')
    # Without a delay the replaced job waits at once; a waiting one given a delay waits on.
    await backend.obliterate("q", force=True)
    await add_one(backend, deduped("c", delay_ms=SECOND))
    assert (await add_one(backend, deduped("d", replace=True), T0 + 10))[:2] == ("c", False)
    assert (await backend.counts("q"))["waiting"] == 1
    assert ids(await claim(backend, 5, now=T0 + 10)) == ["c"]
    await add_one(backend, deduped("e", key="k2", group="G"))
    assert (await add_one(backend, deduped("f", key="k2", replace=True, delay_ms=500)))[:2] == (
        "e", False,
    )
    job = await backend.get_job("q", "e")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.DELAYED, T0 + 500)
    # It left the waiting jobs of its group: nothing to claim until it is due.
    assert await claim(backend, 5, now=T0 + 10) == []
    assert ids(await claim(backend, 5, now=T0 + 500)) == ["e"]


async def test_a_schedule_tick_obeys_its_jobs_dedupe_rule(backend: RedisBackend) -> None:
    assert await backend.upsert_schedule("q", "s", "{}", T0)
    (schedule,) = await backend.list_schedules("q")
    await add_one(backend, deduped("pending"))
    tick = deduped("schedule:s:1", replace=True, data='"tick"')
    assert await backend.fire_schedule("q", "s", schedule.version, T0, T0 + 60_000, tick, T0)
    assert await backend.get_job("q", "schedule:s:1") is None
    job = await backend.get_job("q", "pending")
    assert job is not None
    assert job.data == '"tick"'
    (schedule,) = await backend.list_schedules("q")
    assert (schedule.next_run, schedule.count) == (T0 + 60_000, 1)
