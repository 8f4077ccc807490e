"""A 3-master Redis Cluster on loopback: each queue lives in one slot, so every script runs.

(Queue and Worker paths through a cluster are in tests/cluster/.)
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.crc import key_slot

from corral.backends.base import Complete
from corral.backends.redis import RedisBackend
from corral.backends.redis.keys import queue_keys
from tests.backends.redis.redis_support import LOCK_MS, T0, add, claim, new_job
from tests.redis_server import start_cluster, stop_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh 3-master cluster for this module's tests."""
    ports, processes = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield f"redis+cluster://127.0.0.1:{ports[0]}"
    for process in processes:
        stop_redis(process)


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[RedisBackend]:
    """A backend on the cluster."""
    store = RedisBackend(cluster_url, {})
    yield store
    await store.close()


def test_queues_spread_over_slots() -> None:
    slots = {key_slot(queue_keys(f"q{i}")["jobs"].encode()) for i in range(20)}
    assert len(slots) > 10
    for i in range(3):
        keys = queue_keys(f"q{i}")
        assert len({key_slot(key.encode()) for key in keys.values()}) == 1


async def test_the_transitions_run_on_a_cluster(cluster: RedisBackend) -> None:
    for queue in ("alpha", "beta", "gamma"):
        await add(cluster, new_job("a", tags=("t",)), new_job("d", delay_ms=10), queue=queue)
        (a,) = await claim(cluster, 1, queue=queue)
        keeper = cluster.lock_keeper()
        try:
            lost = await asyncio.to_thread(
                keeper.extend_locks, queue, {"a": a.token, "x": "y"}, LOCK_MS, T0
            )
        finally:
            keeper.close()
        assert lost == ["x"]
        settled = await cluster.settle(
            queue, [Complete("a", a.token, "1")], 0, LOCK_MS, "w", T0 + 10
        )
        assert (settled.refused, settled.next_due_ms) == ([], None)  # d was promoted
        assert (await cluster.counts(queue))["completed"] == 1
        assert await cluster.remove_tagged(queue, "t") == 0
        assert await cluster.remove(queue, "d")
    assert set(await cluster.queue_names()) >= {"alpha", "beta", "gamma"}
    await cluster.obliterate("beta", False)
    assert "beta" not in await cluster.queue_names()


async def test_events_and_metrics_on_a_cluster(cluster: RedisBackend) -> None:
    for queue in ("ev1", "ev2", "ev3"):
        await add(cluster, new_job("a"), queue=queue)
        last = await cluster.last_event_id(queue)
        reading = asyncio.ensure_future(cluster.read_events(queue, last, 10, 10_000))
        (a,) = await claim(cluster, 1, queue=queue)
        await cluster.settle(queue, [Complete("a", a.token, "1")], 0, LOCK_MS, "w", T0 + 10)
        assert [r.type for r in await asyncio.wait_for(reading, 5)] == ["completed"]
        assert [r.type for r in await cluster.read_events(queue, "0", 10, 0)] == [
            "added", "completed",
        ]
        (minute,) = await cluster.metrics(queue, 0, T0 + 10)
        assert (minute.completed, minute.processing_ms_total) == (1, 10)
