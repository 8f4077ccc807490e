"""Transitions on a whole queue: settings, pause, clean, drain, obliterate, bulk retry."""

from __future__ import annotations

import sqlite3
from typing import Final

from corral.backends.base import Limits, ListableState, StoredConfig
from corral.backends.sqlite.events import record_jobs
from corral.backends.sqlite.jobs import RESET_FOR_RETRY
from corral.backends.sqlite.limits import store_limits
from corral.backends.sqlite.rows import DELETED, delete_returning, to_waiting
from corral.backends.sqlite.store import read, resolve_now, write
from corral.errors import InvalidOptionError, JobLockedError

# Finished jobs age from when they finished, the others from when they were added.
_CLEAN: Final[dict[str, str]] = {
    state: f"""
        DELETE FROM jobs WHERE rowid IN (
            SELECT rowid FROM jobs WHERE queue = ? AND state = '{state}' AND {column} <= ?
            ORDER BY {column} LIMIT ?
        ) RETURNING {DELETED}
    """
    for state, column in {
        "waiting": "created_at",
        "delayed": "created_at",
        "waiting-children": "created_at",
        "completed": "finished_at",
        "failed": "finished_at",
    }.items()
}


_FLOW_JOBS: Final = f"""
    DELETE FROM jobs WHERE queue = ? AND (parent_id IS NOT NULL OR pending_children IS NOT NULL)
    RETURNING {DELETED}
"""


@read
def get_config(conn: sqlite3.Connection, queue: str) -> StoredConfig:
    """The queue's stored settings (None, version 0: never configured)."""
    row = conn.execute(
        "SELECT config, config_version FROM queues WHERE name = ?", (queue,)
    ).fetchone()
    return StoredConfig(None, 0) if row is None else StoredConfig(row[0], int(row[1]))


@write
def set_config(conn: sqlite3.Connection, queue: str, config: str, limits: Limits) -> int:
    """Store the queue's settings and the limits they set; return the new version.

    Workers read the limits inside every claim, so the new ones hold from the next one.
    """
    row = conn.execute(
        "INSERT INTO queues (name, config, config_version) VALUES (?, ?, 1)"
        " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
        " config_version = config_version + 1 RETURNING config_version",
        (queue, config),
    ).fetchone()
    store_limits(conn, queue, limits)
    return int(row[0])


@write
def set_paused(conn: sqlite3.Connection, queue: str, paused: bool) -> None:
    """Pause or resume taking jobs."""
    conn.execute(
        "INSERT INTO queues (name, paused) VALUES (?1, ?2)"
        " ON CONFLICT (name) DO UPDATE SET paused = ?2 WHERE paused != ?2",
        (queue, int(paused)),
    )


@read
def is_paused(conn: sqlite3.Connection, queue: str) -> bool:
    """Whether the queue is paused."""
    row = conn.execute("SELECT paused FROM queues WHERE name = ?", (queue,)).fetchone()
    return row is not None and bool(row[0])


@read
def queue_names(conn: sqlite3.Connection) -> list[str]:
    """Every queue that has been used in this database."""
    return [row[0] for row in conn.execute("SELECT name FROM queues ORDER BY name")]


@write
def retry_failed(conn: sqlite3.Connection, queue: str, limit: int | None, now_ms: int | None) -> (
    int
):
    """Move up to `limit` failed jobs (oldest first) back to waiting with fresh attempts."""
    rows = conn.execute(
        "SELECT rowid, lifo, id FROM jobs WHERE queue = ? AND state = 'failed'"
        " ORDER BY finished_at, rowid LIMIT ?",
        (queue, -1 if limit is None else max(0, limit)),
    ).fetchall()
    conn.executemany(RESET_FOR_RETRY, [(rowid,) for rowid, _, _ in rows])
    to_waiting(conn, queue, [(rowid, lifo) for rowid, lifo, _ in rows])
    record_jobs(conn, queue, "waiting", [job_id for _, _, job_id in rows], now_ms)
    return len(rows)


@write
def clean(
    conn: sqlite3.Connection,
    queue: str,
    state: ListableState,
    grace_ms: int,
    limit: int,
    now_ms: int | None,
) -> list[str]:
    """Remove up to `limit` (all when <= 0) jobs in `state` older than `grace_ms`."""
    sql = _CLEAN.get(str(state))
    if sql is None:
        raise InvalidOptionError(f"cannot clean {state!r} jobs: workers hold them")
    now = resolve_now(now_ms)
    params = (queue, now - grace_ms, limit if limit > 0 else -1)
    removed = delete_returning(conn, queue, sql, params, now)
    record_jobs(conn, queue, "removed", removed, now)
    return removed


@write
def drain(conn: sqlite3.Connection, queue: str, delayed: bool) -> int:
    """Remove every waiting job, and the delayed ones when asked; return how many."""
    states = "('waiting', 'delayed')" if delayed else "('waiting')"
    sql = f"DELETE FROM jobs WHERE queue = ? AND state IN {states} RETURNING {DELETED}"
    removed = delete_returning(conn, queue, sql, (queue,))
    record_jobs(conn, queue, "removed", removed)
    return len(removed)


@write
def obliterate(conn: sqlite3.Connection, queue: str, force: bool) -> None:
    """Remove the queue and all its jobs, tags, logs, schedules, rate-limit starts, group
    turns, dedupe keys, events and metrics. The last event id is kept (`events`), so a
    queue used again goes on numbering its events from there.

    Its jobs of flows go first, as any removal of them does: parents with their child
    records, children from their parents' counts (parents in other queues go on)."""
    if not force:
        active = conn.execute(
            "SELECT count(*) FROM jobs WHERE queue = ? AND state = 'active'", (queue,)
        ).fetchone()[0]
        if active:
            raise JobLockedError(
                f"queue {queue!r} has {active} active job(s): use force=True to obliterate it"
            )
    delete_returning(conn, queue, _FLOW_JOBS, (queue,))
    for sql in (
        "DELETE FROM jobs WHERE queue = ?",
        "DELETE FROM job_tags WHERE queue = ?",
        "DELETE FROM job_logs WHERE queue = ?",
        "DELETE FROM schedules WHERE queue = ?",
        "DELETE FROM job_starts WHERE queue = ?",
        "DELETE FROM job_groups WHERE queue = ?",
        "DELETE FROM dedupe WHERE queue = ?",
        "DELETE FROM workers WHERE queue = ?",
        "DELETE FROM events WHERE queue = ?",
        "DELETE FROM metrics WHERE queue = ?",
        "DELETE FROM queues WHERE name = ?",
    ):
        conn.execute(sql, (queue,))
