"""The capped event stream: recorded inside the transitions that cause the events, read by
listeners from any process.

A transition collects its events in a `Recorder` made from the queue's level (stored by
`set_config`, "final" for a queue never configured) and writes them as it ends, in its
own transaction: one upsert that hands out their ids, one `executemany`, and one ranged
delete that keeps the newest `CAP`. At level "off" nothing is written at all.

Ids count up from 1 per queue without gaps (`event_ids` holds the last one handed out,
and survives `obliterate`), so the newest `CAP` events are exactly the ids above
`last - CAP`, and trimming is one seek whatever the stream's size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

import orjson

from corral.backends.base import EventRecord
from corral.backends.sqlite.store import read, resolve_now
from corral.errors import InvalidOptionError

CAP: Final = 10_000
"""Events kept per queue: the newest ones."""
LEVELS: Final = ("all", "final", "off")
DEFAULT_LEVEL: Final = "final"
FINAL: Final = frozenset(
    {"added", "completed", "failed", "retrying", "stalled", "removed", "deduplicated", "progress"}
)
"""The types recorded at level "final"; level "all" adds waiting, active and delayed."""
DETAIL: Final = frozenset({"waiting", "active", "delayed"})

_LEVEL: Final = "SELECT events FROM queues WHERE name = ?"
_ALLOCATE: Final = """
    INSERT INTO event_ids (queue, last_id) VALUES (?1, ?2)
    ON CONFLICT (queue) DO UPDATE SET last_id = last_id + ?2
    RETURNING last_id
"""
_INSERT: Final = "INSERT INTO events (queue, id, type, job_id, data, at) VALUES (?, ?, ?, ?, ?, ?)"
_TRIM: Final = "DELETE FROM events WHERE queue = ? AND id <= ?"
_READ: Final = """
    SELECT id, type, job_id, data, at FROM events WHERE queue = ? AND id > ?
    ORDER BY id LIMIT ?
"""
_LAST: Final = "SELECT max(id) FROM events WHERE queue = ?"

Row = tuple[str, str | None, str | None]
"""An event to write: type, job id, data (JSON text)."""


class Recorder:
    """The events of one transition on one queue, written together by `write`.

    `final` keeps events of the types level "final" records, `detail` those only level
    "all" adds; both ignore what the level leaves out. Callers that build a payload check
    `on` (or `all`) first, so that a queue recording nothing pays for nothing.
    """

    __slots__ = ("all", "on", "rows")

    def __init__(self, level: str) -> None:
        self.on = level != "off"
        self.all = level == "all"
        self.rows: list[Row] = []

    def final(self, type_: str, job_id: str | None, data: str | None = None) -> None:
        """Record an event that every level but "off" keeps."""
        if self.on:
            self.rows.append((type_, job_id, data))

    def detail(self, type_: str, job_id: str | None, data: str | None = None) -> None:
        """Record an event that only level "all" keeps (waiting, active, delayed)."""
        if self.all:
            self.rows.append((type_, job_id, data))

    def write(self, conn: sqlite3.Connection, queue: str, now: int) -> None:
        """Write the events recorded so far, in order, and trim the stream to `CAP`."""
        rows, self.rows = self.rows, []
        if not rows:
            return
        last = int(conn.execute(_ALLOCATE, (queue, len(rows))).fetchone()[0])
        first = last - len(rows) + 1
        # Events that the trim would delete at once (a drain of many jobs) are not written;
        # their ids are spent all the same.
        skip = max(0, len(rows) - CAP)
        conn.executemany(
            _INSERT,
            [
                (queue, first + i, type_, job_id, data, now)
                for i, (type_, job_id, data) in enumerate(rows[skip:], skip)
            ],
        )
        if last > CAP:
            conn.execute(_TRIM, (queue, last - CAP))


def level(conn: sqlite3.Connection, queue: str) -> str:
    """The queue's event level ("final" for a queue without a row)."""
    row = conn.execute(_LEVEL, (queue,)).fetchone()
    return DEFAULT_LEVEL if row is None else str(row[0])


def recorder(conn: sqlite3.Connection, queue: str) -> Recorder:
    """A recorder at the queue's stored level."""
    return Recorder(level(conn, queue))


def record_jobs(
    conn: sqlite3.Connection,
    queue: str,
    type_: str,
    job_ids: Sequence[str],
    now: int | None = None,
    data: str | None = None,
) -> None:
    """Record one event of `type_` per job, all with the same payload, at the queue's level
    (`now`: the transition's time, else this machine's clock)."""
    if not job_ids:
        return
    events = recorder(conn, queue)
    keep = events.final if type_ in FINAL else events.detail
    for job_id in job_ids:
        keep(type_, job_id, data)
    events.write(conn, queue, resolve_now(now))


def encode(data: dict[str, Any]) -> str:
    """A payload as JSON text."""
    return orjson.dumps(data).decode()


def embed(key: str, value: str) -> str:
    """A payload `{key: value}` around a value that is already JSON text, unparsed."""
    return f'{{"{key}":{value}}}'


def parse_id(event_id: str) -> int:
    """An event id from its text: a decimal number ("0": before the first)."""
    text = event_id.strip()
    if not text.isdecimal() or not text.isascii():
        raise InvalidOptionError(
            f"event id {event_id!r} is not an id of this SQLite store: use a decimal number "
            "(an id it returned, or 0 for the oldest kept)"
        )
    return int(text)


def to_event(row: Sequence[Any]) -> EventRecord:
    """A record from a row selected as `_READ` does."""
    return EventRecord(id=str(row[0]), type=row[1], job_id=row[2], data=row[3], timestamp=row[4])


@read
def read_events(conn: sqlite3.Connection, queue: str, after: int, count: int) -> list[EventRecord]:
    """Up to `count` events with ids above `after`, oldest first."""
    if count <= 0:
        return []
    return [to_event(row) for row in conn.execute(_READ, (queue, after, count))]


@read
def last_event_id(conn: sqlite3.Connection, queue: str) -> str:
    """The id of the newest event kept ("0" when there is none)."""
    newest = conn.execute(_LAST, (queue,)).fetchone()[0]
    return "0" if newest is None else str(newest)
