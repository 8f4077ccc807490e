"""Fixtures shared by every test: one store per parameter, a virtual clock, queues and workers.

`STORES` is the registry of stores the conformance suite runs against. Each entry is a
factory that yields a store URL for one test and cleans up after it; test ids carry the
store's name (`test_add[sqlite]`). A new store (Redis) is one more entry here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

import corral
from corral.testing import VirtualClock
from tests.redis_server import start_redis, stop_redis

StoreFactory = Callable[[Path], Iterator[str]]
"""Yields the URL of an empty store for one test, then cleans it up."""

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)
"""The virtual time every test starts at."""


def _sqlite_store(tmp_path: Path) -> Iterator[str]:
    # tmp_path is absolute, so the URL has four slashes: sqlite:////abs/path/corral.db
    yield f"sqlite:///{tmp_path}/corral.db"


class _RedisServer:
    """One real redis-server on a loopback port for the whole session, started on first use."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.data_dir: str | None = None

    def url(self) -> str:
        if self.port is None:
            self.data_dir = tempfile.mkdtemp(prefix="corral-redis-")
            self.port, self.process = start_redis(Path(self.data_dir))
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None:
            stop_redis(self.process)
            shutil.rmtree(self.data_dir or "", ignore_errors=True)


REDIS = _RedisServer()


def _redis_store(tmp_path: Path) -> Iterator[str]:
    url = REDIS.url()
    with redis.Redis.from_url(url) as client:
        client.flushall()
    yield url


ALL_STORES: dict[str, StoreFactory] = {
    "sqlite": _sqlite_store,
    "redis": _redis_store,
}
# CORRAL_TEST_STORES=sqlite runs the suite on a subset (e.g. where no redis-server exists).
STORES: dict[str, StoreFactory] = {
    name: ALL_STORES[name]
    for name in os.environ.get("CORRAL_TEST_STORES", ",".join(ALL_STORES)).split(",")
}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the session's redis-server."""
    REDIS.stop()


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
