"""The worker registry: register, heartbeat, expiry, unregister, obliterate and ordering."""

from __future__ import annotations

import json

import redis

from corral.backends.base import WorkerRecord
from corral.backends.redis import RedisBackend
from corral.backends.redis.keys import queue_keys
from tests.backends.protocol.support import T0, new_job

TTL = 30_000


def info(pid: int = 1) -> str:
    """A worker's info, as the worker sends it."""
    return json.dumps({"host": "h", "pid": pid, "queue": "q", "concurrency": 2})


async def test_register_and_list(backend: RedisBackend) -> None:
    assert await backend.list_workers("q", T0) == []
    await backend.register_worker("q", "w1", info(), TTL, T0)
    assert await backend.list_workers("q", T0 + 1) == [WorkerRecord("w1", info(), T0, T0)]
    assert await backend.list_workers("other", T0) == []


async def test_a_heartbeat_keeps_started_at(backend: RedisBackend) -> None:
    await backend.register_worker("q", "w1", info(1), TTL, T0)
    await backend.register_worker("q", "w1", info(2), TTL, T0 + 10_000)
    (worker,) = await backend.list_workers("q", T0 + 10_000)
    assert (worker.started_at, worker.heartbeat_at, worker.info) == (T0, T0 + 10_000, info(2))
    await backend.register_worker("q", "w1", info(2), TTL, T0 + 35_000)
    assert [w.id for w in await backend.list_workers("q", T0 + 50_000)] == ["w1"]


async def test_a_worker_expires_without_heartbeats(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("q", "w2", info(), TTL, T0 + 20_000)
    assert [w.id for w in await backend.list_workers("q", T0 + TTL - 1)] == ["w1", "w2"]
    assert [w.id for w in await backend.list_workers("q", T0 + TTL)] == ["w2"]
    keys = queue_keys("q")
    assert raw.hkeys(keys["workers"]) == [b"w2"]  # the expired one was deleted
    assert raw.zrange(keys["worker_expiry"], 0, -1) == [b"w2"]
    assert await backend.list_workers("q", T0 + 20_000 + TTL) == []
    assert not raw.exists(keys["workers"], keys["worker_expiry"])


async def test_an_expired_worker_registers_afresh(backend: RedisBackend, raw: redis.Redis) -> None:
    await backend.register_worker("q", "gone", info(), TTL, T0)
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("q", "w1", info(), TTL, T0 + TTL + 5)
    assert raw.hkeys(queue_keys("q")["workers"]) == [b"w1"]
    (worker,) = await backend.list_workers("q", T0 + TTL + 5)
    assert (worker.id, worker.started_at) == ("w1", T0 + TTL + 5)


async def test_unregister(backend: RedisBackend) -> None:
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("q", "w2", info(), TTL, T0)
    await backend.unregister_worker("q", "w1")
    await backend.unregister_worker("q", "never")
    assert [w.id for w in await backend.list_workers("q", T0)] == ["w2"]


async def test_obliterate_clears_the_workers(backend: RedisBackend, raw: redis.Redis) -> None:
    await backend.add("q", [new_job("a")], 0, T0)
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("keep", "w1", info(), TTL, T0)
    await backend.obliterate("q", False)
    assert await backend.list_workers("q", T0) == []
    assert not raw.keys("corral:{q}:*")
    assert [w.id for w in await backend.list_workers("keep", T0)] == ["w1"]


async def test_listed_by_id(backend: RedisBackend) -> None:
    for worker_id in ("w-b", "w-c", "w-a", "w-B"):
        await backend.register_worker("q", worker_id, info(), TTL, T0)
    assert [w.id for w in await backend.list_workers("q", T0)] == ["w-B", "w-a", "w-b", "w-c"]


async def test_the_server_clock_when_no_time_is_given(backend: RedisBackend) -> None:
    await backend.register_worker("q", "w1", info(), TTL, None)
    (worker,) = await backend.list_workers("q", None)
    assert worker.started_at == worker.heartbeat_at > T0
    assert abs(worker.heartbeat_at - await backend.time_ms()) < 5000
