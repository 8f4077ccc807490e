"""Helpers for the conformance suite: polling, driving the virtual clock, blocking processors."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import corral
from corral.testing import VirtualClock

T = TypeVar("T")

WorkerFactory = Callable[..., corral.Worker]
WorkerStarter = Callable[[corral.Worker], "asyncio.Task[int]"]


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5, interval: float = 0.01
) -> None:
    """Poll `predicate` (sync or async) until it is true; fail after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await asyncio.sleep(interval)


async def drive(
    awaitable: Awaitable[T], clock: VirtualClock, step: float = 0.05, timeout: float = 5
) -> T:
    """Await `awaitable` while nudging the virtual clock forward in small steps.

    For waits whose length the contract gives in seconds without saying which clock
    measures them (a job's `timeout`, `close(timeout)`): the result is the same whether
    the implementation counts real or virtual seconds.
    """
    task = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + timeout
    while not task.done():
        await asyncio.wait({task}, timeout=0.01)
        if task.done():
            break
        if time.monotonic() > deadline:
            task.cancel()
            raise AssertionError(f"did not finish within {timeout} s of real time")
        await clock.advance(step)
    return task.result()


async def state_of(queue: corral.Queue, job_id: str) -> str | None:
    """The stored state of a job, or None when it is gone."""
    job = await queue.get_job(job_id)
    return None if job is None else str(job.state)


async def stored(queue: corral.Queue, job_id: str) -> corral.Job:
    """The stored job; fails the test when it is gone."""
    job = await queue.get_job(job_id)
    assert job is not None, f"job {job_id!r} is not stored"
    return job


def is_state(queue: corral.Queue, job_id: str, state: str) -> Callable[[], Awaitable[bool]]:
    """A `wait_for` predicate: the job is stored in `state`."""

    async def check() -> bool:
        return await state_of(queue, job_id) == state

    return check


class Blocker:
    """A processor (`blocker.process`) that holds every job until `release()`."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.started: list[str] = []
        self.finished: list[str] = []
        self._release = asyncio.Event()

    async def process(self, job: corral.Job) -> Any:
        self.started.append(job.id)
        await self._release.wait()
        self.finished.append(job.id)
        return self.result

    def release(self) -> None:
        self._release.set()


async def hold_active(
    queue: corral.Queue,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
    job_id: str,
    **worker_options: Any,
) -> tuple[corral.Worker, Blocker]:
    """Start a background worker whose processor holds jobs; wait until `job_id` is active."""
    blocker = Blocker()
    worker = make_worker(blocker.process, **worker_options)
    start_worker(worker)
    await wait_for(is_state(queue, job_id, "active"))
    return worker, blocker
