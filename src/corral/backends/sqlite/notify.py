"""Wake-ups for coroutines waiting for commits to a database file.

Two signals: a commit by this process wakes the waiters on its queue at once
(`notify`; readers of a queue's events wait on `events_channel(queue)`), and one
poller thread per file watches `PRAGMA data_version`, which moves on every other
connection's commit, this process's or another's, and wakes every waiter on the file.
The poller runs while anyone waits and lingers briefly after, so an idle event loop
sleeps instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Final

from corral import clock

POLL_SECONDS: Final = 0.001
"""How often the poller reads `data_version` while someone waits."""
LINGER_SECONDS: Final = 2.0
"""How long a poller without waiters keeps its connection before it stops."""
BUSY_TIMEOUT: Final = 0.05

_lock = threading.Lock()
_files: dict[str, _File] = {}


@dataclass(eq=False, slots=True)
class Waiter:
    """One coroutine waiting for a commit to a queue of a database file."""

    path: str
    queue: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass(eq=False)
class _File:
    """The waiters on one database file, and its poller."""

    path: str
    waiters: set[Waiter] = field(default_factory=set)
    poller: threading.Thread | None = None
    conn: sqlite3.Connection | None = None
    version: int = -1
    conn_lock: threading.Lock = field(default_factory=threading.Lock)
    start_lock: threading.Lock = field(default_factory=threading.Lock)


def _forget_after_fork() -> None:
    # A forked child inherits the registry but not the poller threads, and must not
    # touch the parent's connections: start afresh.
    global _lock, _files
    _lock = threading.Lock()
    _files = {}


os.register_at_fork(after_in_child=_forget_after_fork)


def events_channel(queue: str) -> str:
    """The name that waiters for new events of `queue` register under: no queue's name,
    so waiting workers are not woken by changes that bring no work (progress)."""
    return f"{queue}\0events"


def register(path: str, queue: str) -> Waiter:
    """Start listening for commits to `queue` in the database at `path` (on this loop)."""
    loop = asyncio.get_running_loop()
    waiter = Waiter(path, queue, loop, loop.create_future())
    with _lock:
        _files.setdefault(path, _File(path)).waiters.add(waiter)
    return waiter


def unregister(waiter: Waiter) -> None:
    """Stop listening."""
    with _lock:
        watched = _files.get(waiter.path)
        if watched is not None:
            watched.waiters.discard(waiter)


def waiting(path: str) -> int:
    """How many coroutines wait on the database at `path`."""
    with _lock:
        watched = _files.get(path)
        return 0 if watched is None else len(watched.waiters)


def notify(path: str, queue: str) -> None:
    """Wake every waiter on `queue` of the database at `path`; callable from any thread."""
    with _lock:
        watched = _files.get(path)
        waiters = [w for w in watched.waiters if w.queue == queue] if watched else []
    _wake_all(waiters)


def start_polling(path: str) -> bool:
    """Make sure the file's poller runs from a version read now; False if the file is busy.

    Blocking (it may open a connection): call it off the event loop, after `register`
    and before looking for work, so that no commit between the two goes unseen.
    """
    with _lock:
        watched = _files.setdefault(path, _File(path))
    with watched.start_lock:
        with _lock:
            if watched.poller is not None:
                return True
        if _check(watched) is None:
            return False
        poller = threading.Thread(
            target=_poll, args=(watched,), name="corral-sqlite-watch", daemon=True
        )
        with _lock:
            watched.poller = poller
        poller.start()
    return True


def _check(watched: _File) -> bool | None:
    """Whether the file changed since the last check (None: busy, try again)."""
    with watched.conn_lock:
        # data_version numbers belong to one connection: a new one cannot tell.
        fresh = watched.conn is None
        if watched.conn is None:
            watched.conn = sqlite3.connect(
                watched.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        try:
            version = int(watched.conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise
        moved = fresh or version != watched.version
        watched.version = version
        return moved


def _poll(watched: _File) -> None:
    idle_since = clock.monotonic()
    while True:
        clock.sleep_blocking(POLL_SECONDS)
        try:
            moved = _check(watched)
        except sqlite3.Error:
            moved = True  # a broken file: wake everyone, so that their next call reports it
        with _lock:
            # Taken after the check: a waiter registered before it must be woken by it.
            waiters = list(watched.waiters)
            if waiters:
                idle_since = clock.monotonic()
            elif clock.monotonic() - idle_since > LINGER_SECONDS:
                watched.poller = None
                break
        if moved:
            _wake_all(waiters)
    with watched.conn_lock:
        conn, watched.conn = watched.conn, None
    if conn is not None:
        conn.close()


def _wake_all(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        # A closed loop raises RuntimeError: nobody is left there to wake.
        with contextlib.suppress(RuntimeError):
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
