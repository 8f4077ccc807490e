"""A settle that Redis ran but whose reply the worker never received (found by scenario 7:
"refused results ... of which stored: 4").

The worker sends its finished job's outcome; Redis applies it (the job is completed, with
this worker's result); the connection drops before the reply arrives. The worker keeps
the outcome and sends it again, the store refuses it (the job is no longer active with
that token), and the worker reports `LockLostError` "lock lapsed ... result discarded"
and never fires `completed` — although its lock never lapsed and its result is the one
stored. Nothing is lost; the worker's report is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

import corral

from .conftest import redis_store
from .harness import Harness, needs_redis
from .proxy import FaultProxy

QUEUE = "lost-reply"

pytestmark = [needs_redis, pytest.mark.chaos]


async def state_of(queue: corral.Queue, job_id: str) -> str | None:
    job = await queue.get_job(job_id)
    return None if job is None else str(job.state)


async def wait_until_state(queue: corral.Queue, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 20
    while await state_of(queue, job_id) != state:
        assert time.monotonic() < deadline, f"{job_id} never became {state}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_an_accepted_result_whose_reply_was_lost_is_reported_completed(
    harness: Harness, tmp_path: Path
) -> None:
    store = redis_store(harness, tmp_path)
    assert store.redis_port is not None
    proxy = FaultProxy(store.redis_port)
    proxy.start()
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(job: corral.Job) -> str:
        started.set()
        await release.wait()
        return "mine"

    worker = corral.Worker(
        QUEUE, hold, url=f"redis://127.0.0.1:{proxy.port}/0?connect_timeout=2",
        concurrency=1, lock_duration=30, stalled_interval=30,
    )
    completed: list[str] = []
    lock_lost: list[str] = []
    worker.on("completed", lambda job, result: completed.append(job.id))
    worker.on("error", lambda exc: lock_lost.append(str(exc))
              if isinstance(exc, corral.LockLostError) else None)
    running = asyncio.create_task(worker.run())
    try:
        async with corral.Queue(QUEUE, url=store.url) as queue:
            await queue.add("j", {}, job_id="j1", remove_on_complete=False)
            await asyncio.wait_for(started.wait(), 30)
            proxy.hold_replies(True)
            release.set()
            # The settle reaches Redis and completes the job; its reply is held ...
            await wait_until_state(queue, "j1", "completed")
            # ... and never arrives: the connection is reset.
            proxy.reset_all()
            proxy.hold_replies(False)
            deadline = time.monotonic() + 20
            while not completed and not lock_lost and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            stored = await queue.get_job("j1")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.close(timeout=1), 20)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(running, 10)
        proxy.close()

    assert stored is not None
    assert (stored.state, stored.return_value) == ("completed", "mine")
    assert not lock_lost, lock_lost
    assert completed == ["j1"]
