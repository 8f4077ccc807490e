"""Fixtures for the Redis store's own tests: one real redis-server for the session, a
fresh (flushed) database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from corral.backends.redis import RedisBackend
from tests.redis_server import redis_server_binary, start_redis, stop_redis

if redis_server_binary() is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a redis-server that lives as long as the test session."""
    port, process = start_redis(tmp_path_factory.mktemp("redis"))
    yield port
    stop_redis(process)


@pytest.fixture
def redis_url(redis_port: int) -> str:
    """The URL of an empty database on the session's server."""
    with redis.Redis(port=redis_port) as client:
        client.flushall()
    return f"redis://127.0.0.1:{redis_port}/0"


@pytest.fixture
def raw(redis_port: int) -> Iterator[redis.Redis]:
    """A plain blocking client on the same server, for looking under the hood."""
    with redis.Redis(port=redis_port) as client:
        yield client


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    """A backend on the empty database, closed after the test."""
    store = RedisBackend(redis_url, {})
    yield store
    await store.close()
