"""A real 3-master Redis Cluster on loopback: the core job paths through `redis+cluster://`."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.crc import key_slot

import corral
from corral.backends.redis import RedisBackend
from corral.backends.redis.keys import queue_keys
from corral.testing import VirtualClock
from tests.conftest import START
from tests.redis_server import start_cluster, stop_redis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-cli") is None or shutil.which("redis-server") is None,
    reason="redis-server and redis-cli are needed for the cluster tests",
)


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three cluster-enabled masters joined by `redis-cli --cluster create`."""
    ports, processes = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            stop_redis(process)


@pytest.fixture
async def queue(cluster_url: str) -> AsyncIterator[corral.Queue]:
    clock = VirtualClock(START)
    q = corral.Queue("cluster-q", url=cluster_url, clock=clock)
    await q.obliterate(force=True)
    yield q
    await q.close()


def worker_for(queue: corral.Queue, processor: object) -> corral.Worker:
    return corral.Worker(queue.name, processor, url=queue.url, clock=queue.clock)  # type: ignore[arg-type]


async def test_add_process_complete(queue: corral.Queue) -> None:
    job = await queue.add("greet", {"who": "cluster"})
    ran = await worker_for(queue, lambda j: f"hello {j.data['who']}").run(burst=True)
    assert ran == 1
    done = await queue.get_job(job.id)
    assert done is not None
    assert (done.state, done.return_value) == ("completed", "hello cluster")


async def test_delayed_job_runs_when_due(queue: corral.Queue) -> None:
    clock = queue.clock
    assert isinstance(clock, VirtualClock)
    job = await queue.add("later", {}, delay=60)
    worker = worker_for(queue, lambda j: None)
    assert await worker.run(burst=True) == 0
    await clock.advance(60)
    assert await worker.run(burst=True) == 1
    assert (await queue.get_job(job.id)).state == "completed"  # type: ignore[union-attr]


async def test_retry_with_backoff_then_success(queue: corral.Queue) -> None:
    clock = queue.clock
    assert isinstance(clock, VirtualClock)
    calls: list[int] = []

    def flaky(job: corral.sync.Job) -> str:
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("first try fails")
        return "ok"

    job = await queue.add("flaky", {}, attempts=3, backoff=corral.Backoff.fixed(10))
    worker = worker_for(queue, flaky)
    assert await worker.run(burst=True) == 1
    assert (await queue.get_job(job.id)).state == "delayed"  # type: ignore[union-attr]
    await clock.advance(10)
    assert await worker.run(burst=True) == 1
    done = await queue.get_job(job.id)
    assert done is not None
    assert (done.state, done.attempts_made) == ("completed", 2)


async def test_remove_and_counts(queue: corral.Queue) -> None:
    job = await queue.add("gone", {}, tags=["t"])
    assert (await queue.counts())["waiting"] == 1
    assert await queue.remove(job.id) is True
    assert await queue.get_job(job.id) is None
    assert (await queue.counts())["waiting"] == 0


async def test_a_flow_across_queues_sharing_a_hash_tag(cluster_url: str) -> None:
    clock = VirtualClock(START)
    contracts = corral.Queue("contracts", url=cluster_url, clock=clock, hash_tag="deal")
    messages = corral.Queue("messages", url=cluster_url, clock=clock, hash_tag="deal")
    await contracts.obliterate(force=True)
    await messages.obliterate(force=True)

    async def send(job: corral.Job) -> int:
        return int(job.data["i"]) * 10

    async def close(job: corral.Job) -> dict[str, Any]:
        return await job.children_values()

    try:
        parent = await contracts.add("contract", job_id="c", children=[
            corral.JobSpec("message", {"i": i}, job_id=f"m{i}", queue="messages")
            for i in range(3)
        ])
        assert (parent.state, parent.pending_children) == ("waiting-children", 3)
        assert (await contracts.counts())["waiting-children"] == 1
        assert (await messages.counts())["waiting"] == 3

        sent = corral.Worker("messages", send, url=cluster_url, clock=clock, hash_tag="deal")
        assert await sent.run(burst=True) == 3
        assert (await parent.refresh()).state == "waiting"
        assert parent.pending_children == 0

        closer = corral.Worker("contracts", close, url=cluster_url, clock=clock, hash_tag="deal")
        assert await closer.run(burst=True) == 1
        await parent.refresh()
        assert parent.state == "completed"
        assert parent.return_value == {"messages:m0": 0, "messages:m1": 10, "messages:m2": 20}
    finally:
        await contracts.close()
        await messages.close()


async def test_a_flow_across_untagged_queues_in_other_slots_is_refused(
    cluster_url: str,
) -> None:
    slot = {name: key_slot(queue_keys(name)["meta"].encode()) for name in ("orders", "mail")}
    assert slot["orders"] != slot["mail"]
    store = RedisBackend(cluster_url, {})
    try:
        store.check_flow(["orders", "orders"])  # one queue: one slot
        with pytest.raises(corral.InvalidOptionError, match="same hash_tag="):
            store.check_flow(["orders", "mail"])
    finally:
        await store.close()
    async with corral.Queue("orders", url=cluster_url) as orders:
        with pytest.raises(corral.InvalidOptionError, match="hash_tag="):
            await orders.add("order", children=[corral.JobSpec("mail", queue="mail")])
        assert await orders.get_job("nothing") is None
        assert sum((await orders.counts()).values()) == 0
