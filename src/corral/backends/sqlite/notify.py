"""Wake-ups for coroutines waiting for commits to a database file.

Two signals: a commit by this process wakes the waiters on its queue at once
(`notify`; readers of a queue's events wait on `events_channel(queue)`), and one
poller thread per file watches `PRAGMA data_version`, which moves on every other
connection's commit, this process's or another's, and wakes every waiter on the file.
The poller runs while anyone waits and lingers briefly after, so an idle event loop
sleeps instead of polling.

While commits keep coming, the poller reads the version every `POLL_SECONDS`. Once
the file has been quiet for `BUSY_SECONDS`, and where the kernel signals writes to a
file (`filewatch`), it sleeps until a commit writes the write-ahead log instead, so a
process waiting on a quiet file costs next to nothing (an idle worker took under 1% of
a core instead of 5-6%). It does not sleep on the signal all the time: each signal
costs the committing process a wake-up of another CPU (an add's commit took 0.17 ms
instead of 0.07), and a worker woken the instant the commit lands competes for the CPUs
with the rest of the add. On two cores, jobs added 5 ms apart started no sooner that
way than with polling (add→start p50 2.1 ms both), and less evenly (p99 10 ms, not 5).
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
from corral.backends.sqlite.filewatch import FileWatch

POLL_SECONDS: Final = 0.001
"""How often the poller reads `data_version` while the file is busy (always, where the
kernel does not signal writes)."""
BUSY_SECONDS: Final = 0.5
"""How long after the last change the file counts as busy."""
QUIET_SECONDS: Final = 0.1
"""How often a poller sleeping on the signal reads anyway (a signal lost by a broken
watch costs this)."""
SHOW_SECONDS: Final = (0.0001, 0.0002, 0.0005)
"""The first pauses between reads after a signal, before polling: a commit writes its
frames to the log, which signals, and only then moves the version."""
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
    watch: FileWatch | None = None
    watchable: bool = True
    """False once the kernel refused to watch the file's log: poll instead."""
    conn_lock: threading.Lock = field(default_factory=threading.Lock)
    start_lock: threading.Lock = field(default_factory=threading.Lock)


def _forget_after_fork() -> None:
    # A forked child inherits the registry but not the poller threads, and must not
    # touch the parent's connections: start afresh.
    global _lock, _files
    for watched in _files.values():
        if watched.watch is not None:
            watched.watch.close()
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
    idle_since = changed_at = clock.monotonic()
    pauses: list[float] = []
    """Reads planned after a signal (last first)."""
    while True:
        moved = _look(watched, pauses, clock.monotonic() - changed_at < BUSY_SECONDS)
        with _lock:
            # Taken after the check: a waiter registered before it must be woken by it.
            waiters = list(watched.waiters)
            now = clock.monotonic()
            if moved:
                changed_at = now
            if waiters:
                idle_since = now
            elif now - idle_since > LINGER_SECONDS:
                watched.poller = None
                break
        if moved:
            _wake_all(waiters)
    with watched.conn_lock:
        conn, watched.conn = watched.conn, None
    watch, watched.watch = watched.watch, None
    if watch is not None:
        watch.close()
    if conn is not None:
        conn.close()


def _look(watched: _File, pauses: list[float], busy: bool) -> bool:
    """Wait for the next moment to read the version, and read it: whether it moved."""
    if pauses:
        clock.sleep_blocking(pauses.pop())
        return _read(watched, pauses)
    watch = watched.watch
    if busy or not watched.watchable:
        clock.sleep_blocking(POLL_SECONDS)
        return _read(watched, pauses)
    if watch is None or not watch.alive:
        if watch is not None:
            watch.close()
        # The log exists: the poller's connection reads through it.
        watched.watch = FileWatch.open(watched.path + "-wal")
        watched.watchable = watched.watch is not None
        return _read(watched, pauses)  # armed, then read: a later commit signals
    if not watch.armed:
        watch.arm()
        if _read(watched, pauses):
            return True
        if pauses:
            return False  # busy: read again before sleeping
    if watch.wait(QUIET_SECONDS):
        pauses[:] = reversed(SHOW_SECONDS)
    return _read(watched, pauses)


def _read(watched: _File, pauses: list[float]) -> bool:
    """Whether the version moved since the last read; a busy file is read again soon."""
    try:
        moved = _check(watched)
    except sqlite3.Error:
        return True  # a broken file: wake everyone, so that their next call reports it
    if moved is None and not pauses:
        pauses.append(POLL_SECONDS)
    return bool(moved)


def _wake_all(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        # A closed loop raises RuntimeError: nobody is left there to wake.
        with contextlib.suppress(RuntimeError):
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
