"""One SQLite connection and the transaction loop around it.

Every transition runs as one `BEGIN IMMEDIATE` transaction inside `Store.run`,
which retries a busy or locked database until a generous budget is spent, so
`database is locked` never reaches a caller: it becomes `BackendUnavailableError`.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from corral import clock
from corral.backends.sqlite import checkpoint, notify
from corral.backends.sqlite.schema import migrate
from corral.errors import BackendUnavailableError, InvalidOptionError

P = ParamSpec("P")
T = TypeVar("T")

SYNCHRONOUS: Final = ("normal", "full", "off")
DEFAULT_BUSY_TIMEOUT: Final = 10.0
MIN_RETRY_BUDGET: Final = 5.0
WAL_SIZE_LIMIT: Final = 4 * 1024 * 1024
"""Bytes of write-ahead log kept after a checkpoint."""
_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the database lives and how connections to it behave."""

    path: str
    synchronous: str = "normal"
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    retry_budget: float = 3 * DEFAULT_BUSY_TIMEOUT
    """Seconds a transition keeps retrying a busy database before giving up."""

    @classmethod
    def parse(cls, path: str, params: Mapping[str, str]) -> Settings:
        """Settings from a file path and the store URL's query parameters."""
        unknown = sorted(set(params) - {"synchronous", "busy_timeout"})
        if unknown:
            raise InvalidOptionError(
                f"unknown SQLite URL parameter(s) {', '.join(unknown)}: "
                "use synchronous=normal|full|off and busy_timeout=<seconds>"
            )
        synchronous = params.get("synchronous", "normal").lower()
        if synchronous not in SYNCHRONOUS:
            raise InvalidOptionError(
                f"synchronous={synchronous!r}: use one of {', '.join(SYNCHRONOUS)}"
            )
        busy_timeout = _seconds(params.get("busy_timeout"), "busy_timeout")
        return cls(
            path=os.path.abspath(path),
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            retry_budget=max(MIN_RETRY_BUDGET, 3 * busy_timeout),
        )


def _seconds(text: str | None, name: str) -> float:
    if text is None:
        return DEFAULT_BUSY_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise InvalidOptionError(f"{name}={text!r} is not a number of seconds") from None
    if not 0 <= value < 86400:
        raise InvalidOptionError(f"{name}={text!r} must be between 0 and 86400 seconds")
    return value


def is_busy(exc: sqlite3.Error) -> bool:
    """True when SQLite refused because another connection holds a lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class WouldWait(Exception):
    """A transition run `at_once` found the database locked by another connection; it
    changed nothing."""


def unavailable(settings: Settings, exc: BaseException) -> BackendUnavailableError:
    """The error a caller sees when the database file fails us."""
    return BackendUnavailableError(f"SQLite store {settings.path}: {exc}")


class Connection(sqlite3.Connection):
    """A connection that remembers which other queues its transaction changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.touched: dict[str, bool] = {}
        """Queue -> whether the change may bring its workers work (else only events)."""


def touch(conn: sqlite3.Connection, queue: str, *, work: bool) -> None:
    """Note that this transaction changed `queue` (a flow's parent, in any queue): after
    the commit its waiters are woken like those of the transition's own queue."""
    if isinstance(conn, Connection):
        conn.touched[queue] = conn.touched.get(queue, False) or work


def connect(settings: Settings, *, shared: bool = False) -> Connection:
    """A configured connection in autocommit mode (transactions are explicit)."""
    conn = sqlite3.connect(
        settings.path,
        timeout=settings.busy_timeout,
        isolation_level=None,
        check_same_thread=not shared,
        cached_statements=256,
        factory=Connection,
    )
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {settings.synchronous.upper()}")
        # A checkpoint that finds no reader truncates the WAL to this size; without the
        # limit the file keeps its largest size for ever (seen at 20+ MiB for a 3 MiB store).
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        # Checkpoints run in a thread of their own (`checkpoint`) as well.
        conn.execute(f"PRAGMA wal_autocheckpoint = {checkpoint.SAFETY_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


class Store:
    """A connection that runs transitions; used by one thread at a time.

    Also tracks what the async side needs to wait for changes without missing one:
    `writes` counts this connection's commits that woke waiters, and `seen` holds,
    per queue, the database version and write count at the last look for work.
    """

    def __init__(self, settings: Settings, *, shared: bool = False) -> None:
        self.settings = settings
        self.writes: dict[str, int] = {}
        self.seen: dict[str, tuple[int, int]] = {}
        self._shared = shared
        self._conn: Connection | None = None
        self._at_once = False

    def run(
        self,
        body: Callable[[sqlite3.Connection], T],
        *,
        write: bool,
        queue: str | None = None,
        notify_waiters: bool = True,
        lazy: bool = False,
    ) -> T:
        """Run `body` in one transaction, retrying while the database is busy.

        A write that changed rows of `queue` wakes this process's waiters on it, unless
        `notify_waiters` is False (changes that bring no work, such as progress), and
        always this process's readers of its events; so do the queues it `touch`ed.

        A `lazy` write mostly only reads: it takes the write lock at its first change
        rather than at its start, so that it costs a reader's transaction when it changes
        nothing. SQLite refuses that upgrade at once when another connection wrote since
        the transaction began reading, or writes now: the body then runs again at once
        as a plain write, which waits for the lock.
        """
        started: float | None = None
        attempt = 0
        while True:
            try:
                return self._attempt(body, write, queue, notify_waiters, lazy)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    self._drop()
                    raise unavailable(self.settings, exc) from exc
                if lazy:
                    lazy = False
                    continue
                if self._at_once:
                    raise WouldWait from exc
                now = clock.monotonic()
                started = now if started is None else started
                if now - started > self.settings.retry_budget:
                    raise unavailable(self.settings, exc) from exc
                clock.sleep_blocking(random.uniform(0.0005, 0.002) * min(2**attempt, 32))
                attempt += 1
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
                raise
            except sqlite3.DatabaseError as exc:
                self._drop()
                raise unavailable(self.settings, exc) from exc

    def _attempt(
        self,
        body: Callable[[sqlite3.Connection], T],
        write: bool,
        queue: str | None,
        notify_waiters: bool,
        lazy: bool = False,
    ) -> T:
        conn = self.connection()
        before = conn.total_changes
        conn.touched.clear()
        conn.execute("BEGIN IMMEDIATE" if write and not lazy else "BEGIN")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.touched.clear()
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self._drop()
            raise
        woken, conn.touched = conn.touched, {}
        if write and conn.total_changes != before:
            checkpoint.committed(self.settings.path, self.settings.synchronous)
        if queue is not None and conn.total_changes != before:
            woken[queue] = woken.get(queue, False) or notify_waiters
        for name, work in woken.items():
            if work:
                self.writes[name] = self.writes.get(name, 0) + 1
                notify.notify(self.settings.path, name)
            # Any change may have recorded events: wake this process's readers of them.
            notify.notify(self.settings.path, notify.events_channel(name))
        return result

    def connection(self) -> Connection:
        """The open connection, created (with the schema) on first use."""
        if self._conn is None:
            conn = connect(self.settings, shared=self._shared)
            try:
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @property
    def is_open(self) -> bool:
        """Whether the connection is open (opening it may take a while: schema checks)."""
        return self._conn is not None

    def at_once(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a transition on the open connection without ever waiting for a lock: should
        the database be locked, raise WouldWait, having changed nothing."""
        conn = self._conn
        assert conn is not None
        conn.execute("PRAGMA busy_timeout = 0")
        self._at_once = True
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._at_once = False
            if self._conn is conn:  # else a failure closed it
                conn.execute(f"PRAGMA busy_timeout = {round(self.settings.busy_timeout * 1000)}")

    def open(self) -> None:
        """Open the connection (creating the file and schema) unless it is open."""
        if self._conn is None:
            self.run(lambda conn: None, write=False)

    def note_look(self, queue: str, data_version: int) -> None:
        """Remember that the queue was just searched for work at this database version."""
        self.seen[queue] = (data_version, self.writes.get(queue, 0))

    def changed_since_look(self, queue: str) -> bool:
        """Whether anything was committed that the last look for work at `queue` missed."""
        if queue not in self.seen:
            return False
        version = self.run(data_version, write=False)
        return self.seen[queue] != (version, self.writes.get(queue, 0))

    def close(self) -> None:
        """Close the connection; a later call opens it again."""
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def data_version(conn: sqlite3.Connection) -> int:
    """A number that changes whenever another connection commits to the database."""
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])


def resolve_now(now_ms: int | None) -> int:
    """The transition's time: the caller's virtual time, else this machine's clock."""
    return clock.system_ms() if now_ms is None else now_ms


def read(
    fn: Callable[Concatenate[sqlite3.Connection, P], T],
) -> Callable[Concatenate[Store, P], T]:
    """Make a read transition out of a function of a connection."""

    def run(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return store.run(lambda conn: fn(conn, *args, **kwargs), write=False)

    run.__doc__ = fn.__doc__
    run.__name__ = fn.__name__
    return run


def _writer(
    fn: Callable[Concatenate[sqlite3.Connection, str, P], T], notify_waiters: bool
) -> Callable[Concatenate[Store, str, P], T]:
    def run(store: Store, queue: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return store.run(
            lambda conn: fn(conn, queue, *args, **kwargs),
            write=True,
            queue=queue,
            notify_waiters=notify_waiters,
        )

    run.__doc__ = fn.__doc__
    run.__name__ = fn.__name__
    return run


def write(
    fn: Callable[Concatenate[sqlite3.Connection, str, P], T],
) -> Callable[Concatenate[Store, str, P], T]:
    """Make a write transition on one queue; its commits wake this process's waiters."""
    return _writer(fn, notify_waiters=True)


def write_quietly(
    fn: Callable[Concatenate[sqlite3.Connection, str, P], T],
) -> Callable[Concatenate[Store, str, P], T]:
    """Make a write transition that brings no new work (locks, progress): no wake-ups."""
    return _writer(fn, notify_waiters=False)
