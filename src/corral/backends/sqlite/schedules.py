"""Transitions on schedules: store, remove, list, and fire one tick as a compare-and-set.

The store decides nothing about when ticks fall: the caller computes each next run and
hands it over. Every change of a schedule's spec bumps its version, and a tick fires
only while the schedule is still at the version and next run the caller computed it
from, so however many processes race for a tick, exactly one adds its job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from corral.backends.base import NewJob, ScheduleRecord
from corral.backends.sqlite.jobs import insert_jobs
from corral.backends.sqlite.store import read, resolve_now, write, write_quietly

DUE_LIMIT: Final = 10
"""How many due schedules one settle reports at most."""

_COLUMNS: Final = "id, spec, next_run, last_run, count, version"
_UPSERT: Final = """
    INSERT INTO schedules (queue, id, spec, next_run, last_run, count, version)
    VALUES (?, ?, ?, ?, NULL, 0, 1)
    ON CONFLICT (queue, id) DO UPDATE SET
        spec = excluded.spec, next_run = excluded.next_run, version = version + 1
    WHERE spec != excluded.spec
    RETURNING version
"""
_FIRE: Final = """
    UPDATE schedules SET next_run = ?, last_run = ?, count = count + 1
    WHERE queue = ? AND id = ? AND version = ? AND next_run = ?
"""
_NEXT_TICK: Final = (
    "SELECT min(next_run) FROM schedules WHERE queue = ? AND next_run IS NOT NULL"
)
_DUE: Final = f"""
    SELECT {_COLUMNS} FROM schedules WHERE queue = ? AND next_run <= ?
    ORDER BY next_run, id LIMIT {DUE_LIMIT}
"""


def to_schedule(row: Sequence[Any]) -> ScheduleRecord:
    """A record from a row selected as `_COLUMNS`."""
    return ScheduleRecord(
        id=row[0], spec=row[1], next_run=row[2], last_run=row[3], count=row[4], version=row[5]
    )


@write
def upsert_schedule(
    conn: sqlite3.Connection, queue: str, schedule_id: str, spec: str, next_run_ms: int | None
) -> bool:
    """Store a schedule; an identical spec changes nothing (False). A changed spec
    replaces the planned tick and bumps the version, keeping count and last run."""
    conn.execute("INSERT INTO queues (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (queue,))
    row = conn.execute(_UPSERT, (queue, schedule_id, spec, next_run_ms)).fetchone()
    return row is not None


@write_quietly
def remove_schedule(conn: sqlite3.Connection, queue: str, schedule_id: str) -> bool:
    """Remove a schedule and its planned tick; False when there was none."""
    cursor = conn.execute(
        "DELETE FROM schedules WHERE queue = ? AND id = ?", (queue, schedule_id)
    )
    return cursor.rowcount > 0


@read
def list_schedules(conn: sqlite3.Connection, queue: str) -> list[ScheduleRecord]:
    """Every schedule of the queue, by id."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE queue = ? ORDER BY id", (queue,)
    ).fetchall()
    return [to_schedule(row) for row in rows]


@write
def fire_schedule(
    conn: sqlite3.Connection,
    queue: str,
    schedule_id: str,
    version: int,
    due_ms: int,
    next_run_ms: int | None,
    job: NewJob,
    now_ms: int | None,
) -> bool:
    """If the schedule is still at `version` with its next run at `due_ms`, add `job` as
    `add` does (an id still stored is kept unchanged) and advance the schedule; else
    change nothing and return False."""
    fired = conn.execute(
        _FIRE, (next_run_ms, due_ms, queue, schedule_id, version, due_ms)
    ).rowcount
    if not fired:
        return False
    insert_jobs(conn, queue, [job], resolve_now(now_ms))
    return True


def ticks(
    conn: sqlite3.Connection, queue: str, now: int
) -> tuple[int | None, list[ScheduleRecord]]:
    """The queue's earliest next run of a schedule, and the first schedules due by `now`."""
    first = conn.execute(_NEXT_TICK, (queue,)).fetchone()[0]
    if first is None:
        return None, []
    if first > now:
        return int(first), []
    return int(first), [to_schedule(row) for row in conn.execute(_DUE, (queue, now))]
