"""Fixtures of the chaos tests: a harness that owns every process it starts, and a store
of each kind (a SQLite file, or a redis-server of the test's own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_server import free_port, redis_server_binary

from .harness import MODE, Harness, Proc, RedisOptions, start_redis_server
from .ledger import Report, write_results


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault-injection tests with real processes")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """Starts the test's processes; kills (by pid) whatever still runs at the end."""
    own = Harness(tmp_path)
    try:
        yield own
    finally:
        own.close()


@dataclass
class Store:
    """The store one chaos test runs on."""

    kind: str
    url: str
    db_path: Path | None = None
    redis_port: int | None = None
    redis: Proc | None = None
    data_dir: Path | None = None


def sqlite_store(tmp_path: Path) -> Store:
    path = tmp_path / "chaos.db"
    return Store("sqlite", f"sqlite:///{path}", db_path=path)


def redis_store(harness: Harness, tmp_path: Path, options: RedisOptions | None = None) -> Store:
    if redis_server_binary() is None:
        pytest.skip("needs redis-server")
    port = free_port()
    data_dir = tmp_path / "redis-data"
    proc = start_redis_server(harness, data_dir, port, options or RedisOptions())
    return Store("redis", f"redis://127.0.0.1:{port}/0", redis_port=port, redis=proc,
                 data_dir=data_dir)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, harness: Harness, tmp_path: Path) -> Store:
    """A fresh store of each kind; a redis-server of this test's own (it may be killed)."""
    if request.param == "sqlite":
        return sqlite_store(tmp_path)
    return redis_store(harness, tmp_path)


class Results:
    """Writes a report's row to the results table, then fails the test on its problems."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def finish(self, report: Report) -> None:
        report.wall = time.monotonic() - self.started
        path = write_results(report.row(MODE))
        print(f"\n{report.scenario} [{report.store}] -> {path}\n  {report.row(MODE)}")
        assert not report.problems, f"{report.scenario} [{report.store}]: {report.problems}"


@pytest.fixture
def results() -> Results:
    """`results.finish(report)`: record the figures, then assert that nothing went wrong."""
    return Results()
