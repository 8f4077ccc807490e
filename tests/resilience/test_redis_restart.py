"""A worker outlives a Redis restart: it backs off, resumes by itself, and loses no job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import corral
from tests.redis_server import redis_server_binary, start_redis, stop_redis

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


async def wait_until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_worker_resumes_after_redis_restarts_and_loses_nothing(tmp_path: Path) -> None:
    port, server = start_redis(tmp_path / "data", *DURABLE)
    url = f"redis://127.0.0.1:{port}/0?connect_timeout=1"
    ran: list[int] = []

    async def record(job: corral.Job) -> None:
        ran.append(job.data["i"])

    worker = corral.Worker("restart", record, url=url, concurrency=4)
    errors: list[BaseException] = []
    worker.on("error", errors.append)
    task = asyncio.create_task(worker.run())
    queue = corral.Queue("restart", url=url)
    try:
        await queue.add_bulk([corral.JobSpec("m", {"i": i}) for i in range(50)])
        await wait_until(lambda: len(ran) == 50)
        stop_redis(server)
        await asyncio.sleep(1.5)  # the worker meets the outage meanwhile
        with pytest.raises(corral.BackendUnavailableError):
            await queue.add("m", {"i": -1})
        port, server = start_redis(tmp_path / "data", *DURABLE, port=port)
        await asyncio.sleep(2.1)  # the queue's fail-fast window ends
        await queue.add_bulk([corral.JobSpec("m", {"i": i}) for i in range(50, 100)])
        await wait_until(lambda: len(ran) >= 100)
        assert sorted(set(ran)) == list(range(100))
        assert not task.done()
        assert any(isinstance(error, corral.BackendUnavailableError) for error in errors)
        assert (await queue.counts())["completed"] == 100
    finally:
        await worker.close(timeout=2)
        await asyncio.wait_for(task, 10)
        await queue.close()
        stop_redis(server)
