"""Transitions on the worker registry: register (or renew), unregister, list the live ones.

A worker counts as live until its registration expires (`expires_at`, exclusive). An
expired registration is gone as far as every transition can tell: listing skips it,
and the next registration on the queue deletes it, so a worker that comes back after
its registration lapsed registers afresh (a new `started_at`). None of these bring
work, so none wakes a waiting worker.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from corral.backends.base import WorkerRecord
from corral.backends.sqlite.store import read, resolve_now, write_quietly

_UPSERT: Final = """
    INSERT INTO workers (queue, id, info, started_at, heartbeat_at, expires_at)
    VALUES (?1, ?2, ?3, ?4, ?4, ?5)
    ON CONFLICT (queue, id) DO UPDATE SET
        info = excluded.info, heartbeat_at = excluded.heartbeat_at,
        expires_at = excluded.expires_at
"""


@write_quietly
def register_worker(
    conn: sqlite3.Connection,
    queue: str,
    worker_id: str,
    info: str,
    ttl_ms: int,
    now_ms: int | None,
) -> None:
    """Register a worker or renew its heartbeat (keeping `started_at`); it counts as live
    for `ttl_ms`. Also deletes the queue's expired registrations."""
    now = resolve_now(now_ms)
    conn.execute("DELETE FROM workers WHERE queue = ? AND expires_at <= ?", (queue, now))
    conn.execute(_UPSERT, (queue, worker_id, info, now, now + ttl_ms))


@write_quietly
def unregister_worker(conn: sqlite3.Connection, queue: str, worker_id: str) -> None:
    """Forget a worker that stopped."""
    conn.execute("DELETE FROM workers WHERE queue = ? AND id = ?", (queue, worker_id))


@read
def list_workers(conn: sqlite3.Connection, queue: str, now_ms: int | None) -> list[WorkerRecord]:
    """The live workers of a queue, by id (expired registrations are left out)."""
    rows = conn.execute(
        "SELECT id, info, started_at, heartbeat_at FROM workers"
        " WHERE queue = ? AND expires_at > ? ORDER BY id",
        (queue, resolve_now(now_ms)),
    ).fetchall()
    return [WorkerRecord(id=row[0], info=row[1], started_at=row[2], heartbeat_at=row[3])
            for row in rows]
