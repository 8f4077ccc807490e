"""The worker registry: register, heartbeat, expiry, unregister, obliterate, ordering, and
the upgrade of a file made before the registry existed."""

from __future__ import annotations

import json
import sqlite3

from corral import clock
from corral.backends.base import WorkerRecord
from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from tests.backends.protocol.support import T0, add, new_job

TTL = 30_000


def info(pid: int = 1) -> str:
    """A worker's info, as the worker sends it."""
    return json.dumps({"host": "h", "pid": pid, "queue": "q", "concurrency": 2})


async def test_register_and_list(backend: SqliteBackend) -> None:
    assert await backend.list_workers("q", T0) == []
    await backend.register_worker("q", "w1", info(), TTL, T0)
    assert await backend.list_workers("q", T0 + 1) == [WorkerRecord("w1", info(), T0, T0)]
    assert await backend.list_workers("other", T0) == []


async def test_a_heartbeat_keeps_started_at(backend: SqliteBackend) -> None:
    await backend.register_worker("q", "w1", info(1), TTL, T0)
    await backend.register_worker("q", "w1", info(2), TTL, T0 + 10_000)
    (worker,) = await backend.list_workers("q", T0 + 10_000)
    assert (worker.started_at, worker.heartbeat_at, worker.info) == (T0, T0 + 10_000, info(2))
    # Each heartbeat pushes the expiry on: alive long after the first one's TTL.
    await backend.register_worker("q", "w1", info(2), TTL, T0 + 35_000)
    assert [w.id for w in await backend.list_workers("q", T0 + 50_000)] == ["w1"]


async def test_a_worker_expires_without_heartbeats(backend: SqliteBackend) -> None:
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("q", "w2", info(), TTL, T0 + 20_000)
    assert [w.id for w in await backend.list_workers("q", T0 + TTL - 1)] == ["w1", "w2"]
    assert [w.id for w in await backend.list_workers("q", T0 + TTL)] == ["w2"]
    assert await backend.list_workers("q", T0 + 20_000 + TTL) == []


async def test_an_expired_worker_registers_afresh(backend: SqliteBackend, db_path: str) -> None:
    await backend.register_worker("q", "gone", info(), TTL, T0)
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("q", "w1", info(), TTL, T0 + TTL + 5)
    (worker,) = await backend.list_workers("q", T0 + TTL + 5)
    assert (worker.id, worker.started_at) == ("w1", T0 + TTL + 5)  # its old one had lapsed
    with sqlite3.connect(db_path) as conn:  # and the queue's expired rows were deleted
        assert conn.execute("SELECT id FROM workers").fetchall() == [("w1",)]


async def test_unregister(backend: SqliteBackend) -> None:
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("q", "w2", info(), TTL, T0)
    await backend.unregister_worker("q", "w1")
    await backend.unregister_worker("q", "never")  # nothing to forget: no error
    assert [w.id for w in await backend.list_workers("q", T0)] == ["w2"]


async def test_obliterate_clears_the_workers(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"))
    await backend.register_worker("q", "w1", info(), TTL, T0)
    await backend.register_worker("keep", "w1", info(), TTL, T0)
    await backend.obliterate("q", False)
    assert await backend.list_workers("q", T0) == []
    assert [w.id for w in await backend.list_workers("keep", T0)] == ["w1"]


async def test_listed_by_id(backend: SqliteBackend) -> None:
    for worker_id in ("w-b", "w-c", "w-a", "w-B"):
        await backend.register_worker("q", worker_id, info(), TTL, T0)
    assert [w.id for w in await backend.list_workers("q", T0)] == ["w-B", "w-a", "w-b", "w-c"]


async def test_the_registry_wakes_no_waiter(backend: SqliteBackend) -> None:
    assert (await backend.settle("q", [], 5, 1000, "w1", None)).claimed == []  # a look
    await backend.register_worker("q", "w1", info(), TTL, None)
    await backend.unregister_worker("q", "w1")
    started = clock.monotonic()
    await backend.wait_for_change("q", 0.05)  # no work came: it waits out its timeout
    assert clock.monotonic() - started >= 0.05


async def test_the_store_clock_when_no_time_is_given(backend: SqliteBackend) -> None:
    await backend.register_worker("q", "w1", info(), TTL, None)
    (worker,) = await backend.list_workers("q", None)
    assert worker.started_at == worker.heartbeat_at > T0


async def test_a_file_at_schema_3_gains_the_registry(db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        for migration in MIGRATIONS[:3]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    backend = SqliteBackend(db_path, {})
    try:
        await backend.register_worker("q", "w1", info(), TTL, T0)
        assert [w.id for w in await backend.list_workers("q", T0)] == ["w1"]
    finally:
        await backend.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
