"""Several processes on one file: schema creation races, lock contention, I/O failures."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite.schema import SCHEMA_VERSION
from corral.backends.sqlite.store import Settings, Store
from corral.errors import BackendUnavailableError
from tests.backends.sqlite.sqlite_support import (
    file_names,
    finish_process,
    go,
    ready,
    start_adder,
    write_garbage,
)


def schema_version(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_processes_creating_the_schema_at_once(db_path: str) -> None:
    children = [
        await start_adder(db_path, f"p{n}-", 20, params="busy_timeout=0", handshake="before-open")
        for n in range(4)
    ]
    for child in children:
        await ready(child)
    assert file_names(Path(db_path).parent) == set()
    await go(*children)
    outputs = await asyncio.gather(*(finish_process(child) for child in children))
    assert not any("locked" in output for output in outputs)
    assert schema_version(db_path) == SCHEMA_VERSION
    store = SqliteBackend(db_path, {})
    try:
        assert (await store.counts("q"))["waiting"] == 80
    finally:
        await store.close()


async def test_no_database_is_locked_reaches_a_caller(db_path: str) -> None:
    # busy_timeout=0: SQLite gives up at once, so only corral's retry loop saves the adds.
    backend = SqliteBackend(db_path, {"busy_timeout": "0"})
    try:
        assert await backend.ping()
        children = [
            await start_adder(db_path, f"p{n}-", 150, params="busy_timeout=0") for n in range(3)
        ]
        claimed = 0
        while any(child.returncode is None for child in children):
            result = await backend.settle("q", [], 10, 60_000, "w", None)
            claimed += len(result.claimed)
            await asyncio.sleep(0.001)
        outputs = await asyncio.gather(*(finish_process(child) for child in children))
        assert not any("locked" in output for output in outputs)
        counts = await backend.counts("q")
        assert counts["waiting"] + counts["active"] == 450
        assert counts["active"] == claimed
    finally:
        await backend.close()


def test_a_lock_held_too_long_becomes_backend_unavailable(db_path: str) -> None:
    store = Store(Settings(db_path, busy_timeout=0.01, retry_budget=0.2))
    store.open()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(BackendUnavailableError, match="locked"):
            store.run(lambda conn: conn.execute("DELETE FROM jobs"), write=True, queue="q")
        blocker.execute("ROLLBACK")
        store.run(lambda conn: conn.execute("DELETE FROM jobs"), write=True, queue="q")
    finally:
        blocker.close()
        store.close()


async def test_a_file_that_is_not_a_database_is_backend_unavailable(db_path: str) -> None:
    write_garbage(db_path)
    store = SqliteBackend(db_path, {})
    try:
        with pytest.raises(BackendUnavailableError, match="not a database"):
            await store.ping()
    finally:
        await store.close()
