"""The transitions on the path from an add to a job's start: a single add and a worker's
look for work run on the event loop's thread when they need not wait, and the look
claims in the transaction that found the work, taking the write lock only then."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from corral import clock
from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite import settle as settle_ops
from corral.backends.sqlite import store as store_module
from tests.backends.protocol.support import LOCK_MS, T0, add, ids, new_job


@pytest.fixture
def other(db_path: str) -> Iterator[sqlite3.Connection]:
    """A second connection to the file, outside corral."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


async def look(backend: SqliteBackend) -> list[str]:
    """An idle worker's look for work: the ids it claims."""
    return ids((await backend.settle("q", [], 5, LOCK_MS, "w1", T0)).claimed)


def threads_running(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the thread that runs each `Store.run` of a transition from now on."""
    seen: list[int] = []
    run = store_module.Store.run

    def recorded(self: store_module.Store, *args: object, **kwargs: object) -> object:
        seen.append(threading.get_ident())
        return run(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.Store, "run", recorded)
    return seen


async def test_an_add_and_a_look_run_on_the_loop_when_free(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(backend, new_job("first"))  # opens the connection, on the thread
    seen = threads_running(monkeypatch)
    await backend.add("q", [new_job("a")], 0, T0)
    assert await look(backend) == ["first", "a"]
    assert seen == [threading.get_ident()] * 2


async def test_bulk_adds_and_settles_with_outcomes_stay_on_the_thread(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(backend, new_job("first"))
    seen = threads_running(monkeypatch)
    await backend.add("q", [new_job("a"), new_job("b")], 0, T0)
    assert threading.get_ident() not in seen


async def test_a_locked_database_sends_them_to_the_thread_without_blocking_the_loop(
    backend: SqliteBackend, other: sqlite3.Connection
) -> None:
    await add(backend, new_job("first"))
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.ensure_future(ticker())
    try:
        adding = asyncio.ensure_future(backend.add("q", [new_job("a")], 0, T0))
        looking = asyncio.ensure_future(look(backend))
        await asyncio.sleep(0.2)
        assert not adding.done()
        assert not looking.done()
        assert ticks >= 5  # the loop went on while both waited for the lock
        other.execute("COMMIT")
        await asyncio.wait_for(adding, 30)
        assert await asyncio.wait_for(looking, 30) in (["first"], ["first", "a"])
    finally:
        ticking.cancel()
    # The connection waits for locks again as configured.
    busy = await backend._call(
        lambda store: store.run(
            lambda conn: conn.execute("PRAGMA busy_timeout").fetchone()[0], write=False
        )
    )
    assert busy == round(backend.settings.busy_timeout * 1000)


async def test_a_look_that_finds_nothing_does_not_wait_for_the_write_lock(
    backend: SqliteBackend, other: sqlite3.Connection
) -> None:
    await backend.add("q", [new_job("later", delay_ms=60_000)], 0, T0)
    await look(backend)
    other.execute("BEGIN IMMEDIATE")
    started = clock.monotonic()
    assert await asyncio.wait_for(look(backend), 30) == []
    assert clock.monotonic() - started < backend.settings.busy_timeout
    other.execute("ROLLBACK")


async def test_a_look_that_finds_work_claims_it_in_the_same_transaction(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(backend, new_job("a"))
    seen = threads_running(monkeypatch)
    assert await look(backend) == ["a"]
    assert len(seen) == 1


async def test_a_commit_between_the_look_and_the_claim_claims_again_under_the_lock(
    backend: SqliteBackend, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(backend, new_job("a"))
    looks = 0
    original = settle_ops._look

    def interrupted(conn: sqlite3.Connection, *args: object) -> object:
        nonlocal looks
        looks += 1
        result = original(conn, *args)  # type: ignore[arg-type]
        if looks == 1:
            # Another process adds a job after this transaction began reading: SQLite
            # refuses its upgrade to a write.
            with sqlite3.connect(db_path, isolation_level=None) as elsewhere:
                elsewhere.execute("UPDATE queues SET next_seq = next_seq + 1")
            elsewhere.close()
        return result

    monkeypatch.setattr(settle_ops, "_look", interrupted)
    assert await look(backend) == ["a"]
    assert looks == 2
