"""Waiting for changes: woken by this process's commits at once, by others' within a poll."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import pytest

from corral import clock
from corral.backends.sqlite import SqliteBackend, notify
from corral.backends.sqlite.filewatch import FileWatch
from tests.backends.protocol.support import add, new_job
from tests.backends.sqlite.sqlite_support import finish_process, go, ready, start_adder

LONG = 30.0
"""A timeout no passing test waits for."""


async def timed_wait(backend: SqliteBackend, timeout: float = LONG) -> float:
    """Seconds `wait_for_change` took."""
    started = clock.monotonic()
    await asyncio.wait_for(backend.wait_for_change("q", timeout), LONG)
    return clock.monotonic() - started


async def look_for_work(backend: SqliteBackend) -> None:
    """What an idle worker does before it waits: look for work and find none."""
    result = await backend.settle("q", [], 5, 1000, "w1", None)
    assert result.claimed == []


async def test_times_out_when_nothing_changes(backend: SqliteBackend) -> None:
    await look_for_work(backend)
    elapsed = await timed_wait(backend, 0.05)
    assert 0.05 <= elapsed < 5
    assert await timed_wait(backend, 0) < 5


async def test_a_commit_in_this_process_wakes_the_waiter(backend: SqliteBackend) -> None:
    await look_for_work(backend)
    waiting = asyncio.ensure_future(timed_wait(backend))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await add(backend, new_job("a"))
    assert await waiting < 5


async def test_the_notifier_wakes_without_polling(db_path: str) -> None:
    waiter = notify.register(db_path, "q")
    try:
        await asyncio.to_thread(notify.notify, db_path, "other")
        await asyncio.to_thread(notify.notify, db_path, "q")
        await asyncio.wait_for(waiter.future, 5)
    finally:
        notify.unregister(waiter)
    assert notify.waiting(db_path) == 0


async def test_a_commit_by_another_backend_wakes_the_waiter(
    backend: SqliteBackend, db_path: str
) -> None:
    other = SqliteBackend(db_path, {})
    try:
        await look_for_work(backend)
        waiting = asyncio.ensure_future(timed_wait(backend))
        await asyncio.sleep(0.02)
        await add(other, new_job("a"))
        assert await waiting < 5
    finally:
        await other.close()


async def test_a_commit_by_another_process_wakes_the_waiter(
    backend: SqliteBackend, db_path: str
) -> None:
    await look_for_work(backend)
    child = await start_adder(db_path, "x", 1, handshake="after-open")
    await ready(child)
    waiting = asyncio.ensure_future(timed_wait(backend))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await go(child)
    assert await waiting < 5
    await finish_process(child)
    assert (await backend.counts("q"))["waiting"] == 1


async def test_work_committed_before_the_wait_is_not_missed(
    backend: SqliteBackend, db_path: str
) -> None:
    await look_for_work(backend)
    await finish_process(await start_adder(db_path, "x", 1))
    assert await timed_wait(backend) < 5
    await look_for_work_and_find(backend, 1)
    await add(backend, new_job("mine"))
    assert await timed_wait(backend) < 5


async def look_for_work_and_find(backend: SqliteBackend, count: int) -> None:
    result = await backend.settle("q", [], 5, 1000, "w1", None)
    assert len(result.claimed) == count


async def test_idle_lookers_do_not_wake_each_other(backend: SqliteBackend, db_path: str) -> None:
    other = SqliteBackend(db_path, {})
    try:
        await backend.add("q", [new_job("later", delay_ms=60_000)], 0, None)
        await look_for_work(backend)
        waiting = asyncio.ensure_future(timed_wait(backend, 0.3))
        for _ in range(5):
            await other.settle("q", [], 5, 1000, "w2", None)
            await other.counts("q")
        assert await waiting >= 0.3
    finally:
        await other.close()


async def test_a_cancelled_wait_leaves_no_waiter(backend: SqliteBackend) -> None:
    await look_for_work(backend)
    waiting = asyncio.ensure_future(backend.wait_for_change("q", LONG))
    await asyncio.sleep(0.02)
    assert notify.waiting(backend.settings.path) == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert notify.waiting(backend.settings.path) == 0


def commit_elsewhere(path: str) -> None:
    """A commit that bypasses corral (so no in-process wake-up): only the poller sees it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
        conn.execute("INSERT INTO scratch VALUES (1)")
    finally:
        conn.close()


@pytest.mark.parametrize("mode", [
    # asleep on the kernel's signal, which must wake it before any read
    pytest.param("signal", marks=pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="inotify is Linux's")),
    "no signals",  # where the kernel gives none: polling
    "busy",  # a file that changed lately is polled, never slept on
])
async def test_a_foreign_commit_wakes_the_waiter(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode == "signal":
        monkeypatch.setattr(notify, "QUIET_SECONDS", LONG)
        monkeypatch.setattr(notify, "BUSY_SECONDS", 0.0)
    elif mode == "no signals":
        monkeypatch.setattr(FileWatch, "open", staticmethod(lambda path: None))
    else:
        monkeypatch.setattr(notify, "QUIET_SECONDS", LONG)
        monkeypatch.setattr(notify, "BUSY_SECONDS", LONG)
        monkeypatch.setattr(FileWatch, "wait", lambda self, timeout: pytest.fail("slept"))
    await look_for_work(backend)
    waiting = asyncio.ensure_future(timed_wait(backend))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await asyncio.to_thread(commit_elsewhere, backend.settings.path)
    assert await waiting < 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
async def test_a_waiting_poller_sleeps_between_commits(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    check = notify._check

    def counted(watched: notify._File) -> bool | None:
        nonlocal reads
        # Pollers of earlier tests' files may linger: count this file's reads only.
        reads += watched.path == backend.settings.path
        return check(watched)

    monkeypatch.setattr(notify, "_check", counted)
    monkeypatch.setattr(notify, "BUSY_SECONDS", 0.0)
    await look_for_work(backend)
    await timed_wait(backend, 0.5)
    # Polling would read about 500 times; the quiet reads come every QUIET_SECONDS.
    assert reads < 0.5 / notify.QUIET_SECONDS * 3
