"""Workers register themselves, renew a heartbeat, and vanish when they stop or die."""

from __future__ import annotations

import os
import socket

import corral
from corral.testing import VirtualClock

from .support import Blocker, WorkerFactory, WorkerStarter, wait_for


async def test_a_running_worker_is_listed_until_it_closes(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    assert await queue.workers() == []
    blocker = Blocker()
    worker = make_worker(blocker.process, concurrency=3)
    task = start_worker(worker)

    async def listed() -> bool:
        return len(await queue.workers()) == 1

    await wait_for(listed)
    [info] = await queue.workers()
    assert (info.id, info.host, info.pid, info.queue, info.concurrency) == (
        worker.id, socket.gethostname(), os.getpid(), "q", 3,
    )
    assert info.started_at == info.last_heartbeat == clock.now()
    await worker.close(timeout=1)
    await task
    assert await queue.workers() == []


async def test_a_worker_that_stops_beating_expires(
    queue: corral.Queue, clock: VirtualClock
) -> None:
    # A worker that died without closing: registered once, never renewed.
    await queue.backend.register_worker("q", "gone:1", '{"host": "h", "pid": 1, "queue": "q", '
                                        '"concurrency": 1}', 30_000, clock.now_ms())
    assert [w.id for w in await queue.workers()] == ["gone:1"]
    await clock.advance(29)
    assert len(await queue.workers()) == 1
    await clock.advance(2)
    assert await queue.workers() == []
