"""What finishing jobs costs on SQLite: retention by count from per-state counts kept by
triggers, and WAL checkpoints in a thread of their own."""

from __future__ import annotations

import asyncio
import os
import sqlite3

from corral.backends.base import Complete, Fail, Retention
from corral.backends.sqlite import SqliteBackend, checkpoint
from corral.backends.sqlite.schema import SCHEMA_VERSION
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, new_job

KEEP_2 = Retention(count=2, age_ms=None)


def counts_in(db_path: str) -> dict[tuple[str, str], int]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT queue, state, jobs FROM finished_counts").fetchall()
    conn.close()
    return {(queue, state): jobs for queue, state, jobs in rows if jobs}


def finished_in(db_path: str) -> dict[tuple[str, str], int]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT queue, state, count(*) FROM jobs WHERE state IN ('completed', 'failed')"
            " GROUP BY queue, state"
        ).fetchall()
    conn.close()
    return {(queue, state): jobs for queue, state, jobs in rows}


async def finish(backend: SqliteBackend, *job_ids: str, now: int, fail: bool = False) -> None:
    claimed = {c.record.id: c for c in await claim(backend, len(job_ids), now=now)}
    outcomes = [
        Fail(i, claimed[i].token, "no", None) if fail else Complete(i, claimed[i].token, "1")
        for i in job_ids
    ]
    result = await backend.settle("q", outcomes, 0, LOCK_MS, "w1", now)
    assert result.refused == []


async def test_retention_by_count_keeps_the_newest_whatever_moved_in_between(
    backend: SqliteBackend, db_path: str
) -> None:
    jobs = [new_job(f"j{i}", keep_completed=KEEP_2, keep_failed=KEEP_2) for i in range(8)]
    await add(backend, *jobs)
    for i, now in ((0, T0 + 1), (1, T0 + 2), (2, T0 + 3)):
        await finish(backend, f"j{i}", now=now)
    assert [j.id for j in await backend.list_jobs("q", "completed", 0, 10)] == ["j2", "j1"]
    # Leaving the state by hand (retry, removal) frees places, as before.
    assert await backend.retry_job("q", "j2", T0 + 4)
    assert await backend.remove("q", "j1")
    await finish(backend, "j3", now=T0 + 5)
    assert [j.id for j in await backend.list_jobs("q", "completed", 0, 10)] == ["j3"]
    await finish(backend, "j4", "j5", now=T0 + 6, fail=True)
    await finish(backend, "j6", now=T0 + 7, fail=True)
    assert [j.id for j in await backend.list_jobs("q", "failed", 0, 10)] == ["j6", "j5"]
    assert counts_in(db_path) == finished_in(db_path) == {
        ("q", "completed"): 1, ("q", "failed"): 2,
    }
    await backend.obliterate("q", True)
    assert counts_in(db_path) == {}


async def test_a_file_at_schema_6_counts_its_finished_jobs(db_path: str) -> None:
    backend = SqliteBackend(db_path, {})
    try:
        await add(backend, *[new_job(f"j{i}", keep_completed=KEEP_2) for i in range(4)])
        await backend.close()
        with sqlite3.connect(db_path) as conn:  # back to schema 6, three jobs finished there
            for trigger in ("insert", "delete", "update"):
                conn.execute(f"DROP TRIGGER finished_counts_{trigger}")
            conn.execute("DROP TABLE finished_counts")
            conn.execute("UPDATE jobs SET state = 'completed', finished_at = 1 WHERE id != 'j3'")
            conn.execute("PRAGMA user_version = 6")
        conn.close()
        backend = SqliteBackend(db_path, {})
        await finish(backend, "j3", now=T0)
        assert [j.id for j in await backend.list_jobs("q", "completed", 0, 10)] == ["j3", "j2"]
        assert counts_in(db_path) == {("q", "completed"): 2}
    finally:
        await backend.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_commits_are_checkpointed_off_the_transitions_path(
    backend: SqliteBackend, db_path: str
) -> None:
    def pages() -> tuple[int, int]:
        """The database's size in its latest version (WAL included), and in the file."""
        with sqlite3.connect(db_path) as conn:
            size = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute(
                "PRAGMA page_size").fetchone()[0]
        conn.close()
        return size, os.path.getsize(db_path)

    await add(backend, *[new_job(f"j{i}", data="x" * 2000) for i in range(100)])
    await finish(backend, *[f"j{i}" for i in range(100)], now=T0)
    latest, in_file = pages()
    assert latest > in_file  # far below the automatic checkpoint: all of it in the WAL
    # The checkpointer thread copies it into the file within a few of its periods.
    for _ in range(100):
        await asyncio.sleep(checkpoint.EVERY)
        latest, in_file = pages()
        if latest == in_file:
            break
    assert latest == in_file
