"""Fixtures shared by every test: one store per parameter, a virtual clock, queues and workers.

`STORES` is the registry of stores the conformance suite runs against. Each entry is a
factory that yields a store URL for one test and cleans up after it; test ids carry the
store's name (`test_add[sqlite]`). A new store (Redis) is one more entry here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.testing import VirtualClock

StoreFactory = Callable[[Path], Iterator[str]]
"""Yields the URL of an empty store for one test, then cleans it up."""

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)
"""The virtual time every test starts at."""


def _sqlite_store(tmp_path: Path) -> Iterator[str]:
    # tmp_path is absolute, so the URL has four slashes: sqlite:////abs/path/corral.db
    yield f"sqlite:///{tmp_path}/corral.db"


STORES: dict[str, StoreFactory] = {
    "sqlite": _sqlite_store,
}


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store, one test per registered store."""
    factory = STORES[request.param]
    yield from factory(tmp_path)


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock at 2026-02-24 12:00 UTC that only moves when the test advances it."""
    return VirtualClock(START)


@pytest.fixture
async def queue(store_url: str, clock: VirtualClock) -> AsyncIterator[corral.Queue]:
    """The queue `q` on the test's store, driven by the virtual clock."""
    q = corral.Queue("q", url=store_url, clock=clock)
    yield q
    await q.close()


class _WorkerPool:
    """The workers a test built; all of them are closed when the test ends."""

    def __init__(self, store_url: str, clock: VirtualClock) -> None:
        self.store_url = store_url
        self.clock = clock
        self.workers: list[corral.Worker] = []
        self.tasks: list[tuple[corral.Worker, asyncio.Task[int]]] = []

    def make(self, processors: Any, queue_name: str = "q", **options: Any) -> corral.Worker:
        options.setdefault("url", self.store_url)
        options.setdefault("clock", self.clock)
        worker = corral.Worker(queue_name, processors, **options)
        self.workers.append(worker)
        return worker

    def start(self, worker: corral.Worker) -> asyncio.Task[int]:
        task = asyncio.create_task(worker.run())
        self.tasks.append((worker, task))
        return task

    async def close_all(self) -> None:
        # Bounded in real time so a worker that cannot stop fails the test instead of hanging it.
        for worker in self.workers:
            await asyncio.wait_for(worker.close(timeout=0.1), timeout=10)
        for _, task in self.tasks:
            await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def _worker_pool(store_url: str, clock: VirtualClock) -> AsyncIterator[_WorkerPool]:
    pool = _WorkerPool(store_url, clock)
    yield pool
    await pool.close_all()


@pytest.fixture
def make_worker(_worker_pool: _WorkerPool) -> Callable[..., corral.Worker]:
    """Build a worker on the test's store and clock: `make_worker(processors, **options)`.

    `queue_name` defaults to "q"; other keywords go to `corral.Worker`. Closed after the test.
    """
    return _worker_pool.make


@pytest.fixture
def start_worker(_worker_pool: _WorkerPool) -> Callable[[corral.Worker], asyncio.Task[int]]:
    """Run a worker in the background (`worker.run()`); it is closed after the test."""
    return _worker_pool.start
