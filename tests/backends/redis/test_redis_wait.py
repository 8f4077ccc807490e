"""Waiting for work: idle workers block in Redis and wake within milliseconds."""

from __future__ import annotations

import asyncio
import time

import redis

from corral.backends.redis import RedisBackend
from tests.backends.protocol.support import add, new_job

LONG = 30.0
"""A timeout no passing test waits for."""
MARKER = "corral:{q}:marker"


async def timed_wait(backend: RedisBackend, timeout: float = LONG) -> float:
    """Seconds `wait_for_change` took."""
    started = time.monotonic()
    await asyncio.wait_for(backend.wait_for_change("q", timeout), LONG)
    return time.monotonic() - started


async def look_for_work(backend: RedisBackend) -> None:
    """What an idle worker does before it waits: look for work and find none."""
    result = await backend.settle("q", [], 5, 1000, "w1", None)
    assert result.claimed == []


async def test_times_out_when_nothing_changes(backend: RedisBackend) -> None:
    await look_for_work(backend)
    elapsed = await timed_wait(backend, 0.05)
    assert 0.05 <= elapsed < 5
    assert await timed_wait(backend, 0) < 5


async def test_an_add_by_another_client_wakes_the_waiter_within_milliseconds(
    backend: RedisBackend, redis_url: str
) -> None:
    other = RedisBackend(redis_url, {})
    try:
        await other.ping()
        await look_for_work(backend)
        await timed_wait(backend, 0.01)  # the blocking connection is open
        waiting = asyncio.ensure_future(timed_wait(backend))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        added = time.monotonic()
        await add(other, new_job("a"))
        await waiting
        assert time.monotonic() - added < 0.05
    finally:
        await other.close()


async def test_work_added_before_the_wait_is_not_missed(backend: RedisBackend) -> None:
    await look_for_work(backend)
    await add(backend, new_job("a"))
    assert await timed_wait(backend) < 5


async def test_idle_lookers_do_not_wake_each_other(backend: RedisBackend, redis_url: str) -> None:
    other = RedisBackend(redis_url, {})
    try:
        await backend.add("q", [new_job("later", delay_ms=60_000)], 0, None)
        await timed_wait(backend, 0.01)  # take the add's marker
        waiting = asyncio.ensure_future(timed_wait(backend, 0.3))
        for _ in range(5):
            await other.settle("q", [], 5, 1000, "w2", None)
            await other.counts("q")
        assert await waiting >= 0.3
    finally:
        await other.close()


async def test_one_add_wakes_one_of_several_idle_workers(redis_url: str) -> None:
    workers = [RedisBackend(redis_url, {}) for _ in range(3)]
    try:
        waits = [asyncio.ensure_future(w.wait_for_change("q", 0.5)) for w in workers]
        await asyncio.sleep(0.05)
        await add(workers[0], new_job("a"))
        done, pending = await asyncio.wait(waits, timeout=0.3)
        assert (len(done), len(pending)) == (1, 2)
        await asyncio.gather(*pending)
    finally:
        for worker in workers:
            await worker.close()


async def test_a_cancelled_wait_hands_its_wake_up_to_another_worker(
    backend: RedisBackend, redis_url: str, raw: redis.Redis
) -> None:
    other = RedisBackend(redis_url, {})
    try:
        cancelled = asyncio.ensure_future(backend.wait_for_change("q", LONG))
        await asyncio.sleep(0.05)
        cancelled.cancel()  # its pop goes on in the background, with nobody waiting
        await asyncio.gather(cancelled, return_exceptions=True)
        await add(other, new_job("a"))
        # The orphaned pop takes the marker and hands it back.
        await asyncio.wait_for(other.wait_for_change("q", LONG), 5)
        assert raw.zcard(MARKER) == 0
        # The next wait of the first backend does not start a second pop, nor miss later work.
        waiting = asyncio.ensure_future(timed_wait(backend))
        await asyncio.sleep(0.05)
        await add(other, new_job("b"))
        assert await waiting < 5
    finally:
        await other.close()


async def test_waits_on_different_queues_are_separate(backend: RedisBackend) -> None:
    waiting = asyncio.ensure_future(backend.wait_for_change("q", 0.3))
    await asyncio.sleep(0.02)
    await add(backend, new_job("a"), queue="other")
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await add(backend, new_job("a"))
    await asyncio.wait_for(waiting, 5)


async def test_a_short_socket_timeout_does_not_cut_a_long_wait(redis_url: str) -> None:
    store = RedisBackend(f"{redis_url}?socket_timeout=0.2", {})
    try:
        assert store.settings.url.endswith("socket_timeout=0.2")
        started = time.monotonic()
        await store.wait_for_change("q", 0.5)
        assert time.monotonic() - started >= 0.5
    finally:
        await store.close()
