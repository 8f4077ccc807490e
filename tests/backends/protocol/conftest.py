"""The `backend` fixture of the protocol tests: one fresh store per test, on each store.

SQLite runs on a new file in the test's tmp dir; Redis on one redis-server for the
session, flushed before each test. Without redis-server the Redis cases are skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from corral.backends.base import Backend
from corral.backends.redis import RedisBackend
from corral.backends.sqlite import SqliteBackend
from tests.redis_server import redis_server_binary, start_redis, stop_redis


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a redis-server that lives as long as the test session."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    port, process = start_redis(tmp_path_factory.mktemp("redis"))
    yield port
    stop_redis(process)


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    """Opens a backend on this test's (empty) store; every call gives another backend on
    the same data, as another worker would have."""
    if request.param == "sqlite":
        path = str(tmp_path / "corral.db")
        return lambda: SqliteBackend(path, {})
    port: int = request.getfixturevalue("redis_port")
    with redis.Redis(port=port) as client:
        client.flushall()
    url = f"redis://127.0.0.1:{port}/0"
    return lambda: RedisBackend(url, {})


@pytest.fixture
async def backend(open_store: Callable[[], Backend]) -> AsyncIterator[Backend]:
    """An empty store of each kind, closed after the test."""
    store = open_store()
    yield store
    await store.close()


@pytest.fixture
async def second(open_store: Callable[[], Backend]) -> AsyncIterator[Backend]:
    """Another backend on the same store: a worker elsewhere."""
    store = open_store()
    yield store
    await store.close()
