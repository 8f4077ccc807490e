"""Transitions on single jobs: adding, reading, listing, removing, moving by hand."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from corral.backends.base import AddResult, JobRecord, ListableState, NewJob
from corral.backends.sqlite.rows import (
    JOB_COLUMNS,
    allocate_seq,
    delete_ids,
    delete_returning,
    encode_tags,
    fetch_job,
    seq_at,
    to_record,
    to_waiting,
)
from corral.backends.sqlite.store import read, resolve_now, write, write_quietly
from corral.errors import InvalidOptionError, JobLockedError
from corral.job_state import JobState

_INSERT_JOB: Final = """
    INSERT INTO jobs (
        queue, id, name, data, options, state, priority, lifo, seq, run_at, created_at,
        tags, grp, keep_completed_count, keep_completed_age_ms,
        keep_failed_count, keep_failed_age_ms
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (queue, id) DO NOTHING
"""
_LIST: Final[dict[str, str]] = {
    state: f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND state = '{state}'"
    f" ORDER BY {order} LIMIT ? OFFSET ?"
    for state, order in {
        "waiting": "priority, seq",
        "delayed": "run_at, rowid",
        "active": "processed_at, seq",
        "completed": "finished_at DESC, rowid DESC",
        "failed": "finished_at DESC, rowid DESC",
        "waiting-children": "created_at, rowid",
    }.items()
}
_COUNTS: Final = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM jobs WHERE queue = ?1 AND state = '{state}')" for state in JobState
)
RESET_FOR_RETRY: Final = """
    UPDATE jobs SET attempts_made = 0, stalled_count = 0, failed_reason = NULL,
        stacktrace = NULL, return_value = NULL, progress = NULL, finished_at = NULL,
        processed_at = NULL, lock_token = NULL, lock_until = NULL, worker_id = NULL
    WHERE rowid = ?
"""


@read
def ping(conn: sqlite3.Connection) -> bool:
    """True when the database answers."""
    conn.execute("SELECT 1").fetchone()
    return True


@write
def add(
    conn: sqlite3.Connection,
    queue: str,
    jobs: Sequence[NewJob],
    config_version: int,
    now_ms: int | None,
) -> AddResult:
    """Insert new jobs in order; an id still stored returns that job unchanged."""
    now = resolve_now(now_ms)
    row = conn.execute("SELECT config_version FROM queues WHERE name = ?", (queue,)).fetchone()
    if (0 if row is None else row[0]) != config_version:
        return AddResult([], now, stale_config=True)
    return AddResult(insert_jobs(conn, queue, jobs, now), now)


def insert_jobs(
    conn: sqlite3.Connection, queue: str, jobs: Sequence[NewJob], now: int
) -> list[tuple[JobRecord, bool]]:
    """The body of `add` inside a caller's transaction: insert jobs in order (creating
    the queue's row); an id still stored returns that job unchanged (False)."""
    base = allocate_seq(conn, queue, len(jobs))
    records: list[tuple[JobRecord, bool]] = []
    for offset, job in enumerate(jobs):
        record = _insert(conn, queue, job, seq_at(base, offset, job.lifo), now)
        if record is None:
            existing = fetch_job(conn, queue, job.id)
            assert existing is not None
            records.append((existing, False))
        else:
            records.append((record, True))
    return records


def _insert(
    conn: sqlite3.Connection, queue: str, job: NewJob, seq: int, now: int
) -> JobRecord | None:
    run_at = job.run_at_ms
    if job.delay_ms is not None and job.delay_ms > 0:
        run_at = now + job.delay_ms
    state = JobState.DELAYED if run_at is not None and run_at > now else JobState.WAITING
    tags = encode_tags(job.tags)
    cursor = conn.execute(
        _INSERT_JOB,
        (
            queue, job.id, job.name, job.data, job.options, state.value, job.priority,
            job.lifo, seq, run_at, now, tags, job.group,
            job.keep_completed.count, job.keep_completed.age_ms,
            job.keep_failed.count, job.keep_failed.age_ms,
        ),
    )
    if cursor.rowcount == 0:
        return None
    if job.tags:
        conn.executemany(
            "INSERT OR IGNORE INTO job_tags (queue, tag, job_id) VALUES (?, ?, ?)",
            [(queue, tag, job.id) for tag in job.tags],
        )
    return JobRecord(
        id=job.id, name=job.name, data=job.data, options=job.options, state=state,
        priority=job.priority, attempts_made=0, stalled_count=0, progress=None,
        return_value=None, failed_reason=None, stacktrace=None, created_at=now,
        processed_at=None, finished_at=None, run_at=run_at, tags=tuple(job.tags),
        group=job.group,
    )


@read
def get_job(conn: sqlite3.Connection, queue: str, job_id: str) -> JobRecord | None:
    """One job, or None."""
    return fetch_job(conn, queue, job_id)


@read
def list_jobs(
    conn: sqlite3.Connection, queue: str, state: ListableState, offset: int, limit: int
) -> list[JobRecord]:
    """Jobs in one state: next to run first, or newest finished first."""
    sql = _LIST.get(str(state))
    if sql is None:
        raise InvalidOptionError(f"unknown job state {state!r}: use one of {', '.join(_LIST)}")
    rows = conn.execute(sql, (queue, limit, offset)).fetchall()
    return [to_record(row) for row in rows]


@read
def counts(conn: sqlite3.Connection, queue: str) -> dict[str, int]:
    """Number of jobs in each state, zeros included."""
    row = conn.execute(_COUNTS, (queue,)).fetchone()
    return {str(state): int(count) for state, count in zip(JobState, row, strict=True)}


@write
def remove(conn: sqlite3.Connection, queue: str, job_id: str) -> bool:
    """Remove a job that is not active; False when it is missing."""
    row = conn.execute(
        "SELECT state FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)
    ).fetchone()
    if row is None:
        return False
    if row[0] == JobState.ACTIVE:
        raise JobLockedError(f"job {job_id!r} is active: a worker holds it")
    return bool(delete_ids(conn, queue, [job_id]))


@write
def remove_tagged(conn: sqlite3.Connection, queue: str, tag: str) -> int:
    """Remove the waiting and delayed jobs carrying `tag`; return how many."""
    sql = """
        DELETE FROM jobs WHERE queue = ?1 AND state IN ('waiting', 'delayed') AND id IN (
            SELECT job_id FROM job_tags WHERE queue = ?1 AND tag = ?2
        ) RETURNING id, tags
    """
    return len(delete_returning(conn, queue, sql, (queue, tag)))


@write
def promote(conn: sqlite3.Connection, queue: str, job_id: str, now_ms: int | None) -> bool:
    """Move a delayed job to waiting now."""
    row = conn.execute(
        "UPDATE jobs SET run_at = ? WHERE queue = ? AND id = ? AND state = 'delayed'"
        " RETURNING rowid, lifo",
        (resolve_now(now_ms), queue, job_id),
    ).fetchone()
    if row is None:
        return False
    to_waiting(conn, queue, [row])
    return True


@write
def retry_job(conn: sqlite3.Connection, queue: str, job_id: str, now_ms: int | None) -> bool:
    """Move a failed or completed job back to waiting with its attempts afresh."""
    row = conn.execute(
        "SELECT rowid, lifo FROM jobs WHERE queue = ? AND id = ?"
        " AND state IN ('failed', 'completed')",
        (queue, job_id),
    ).fetchone()
    if row is None:
        return False
    conn.execute(RESET_FOR_RETRY, (row[0],))
    to_waiting(conn, queue, [row])
    return True


@write_quietly
def update_progress(conn: sqlite3.Connection, queue: str, job_id: str, progress: str) -> bool:
    """Store a job's progress; False when the job is gone."""
    cursor = conn.execute(
        "UPDATE jobs SET progress = ? WHERE queue = ? AND id = ?", (progress, queue, job_id)
    )
    return cursor.rowcount > 0


@write_quietly
def update_data(conn: sqlite3.Connection, queue: str, job_id: str, data: str) -> bool:
    """Replace a job's data; False when the job is gone."""
    cursor = conn.execute(
        "UPDATE jobs SET data = ? WHERE queue = ? AND id = ?", (data, queue, job_id)
    )
    return cursor.rowcount > 0


@write_quietly
def add_log(conn: sqlite3.Connection, queue: str, job_id: str, line: str, keep: int) -> int:
    """Append a log line, keeping the newest `keep` (all when `keep` <= 0); return the count."""
    if conn.execute("SELECT 1 FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)).fetchone():
        seq = conn.execute(
            "INSERT INTO job_logs (queue, job_id, seq, line) SELECT ?1, ?2, coalesce(max(seq), 0)"
            " + 1, ?3 FROM job_logs WHERE queue = ?1 AND job_id = ?2 RETURNING seq",
            (queue, job_id, line),
        ).fetchone()[0]
        if keep > 0:
            conn.execute(
                "DELETE FROM job_logs WHERE queue = ? AND job_id = ? AND seq <= ?",
                (queue, job_id, seq - keep),
            )
        row = conn.execute(
            "SELECT count(*) FROM job_logs WHERE queue = ? AND job_id = ?", (queue, job_id)
        ).fetchone()
        return int(row[0])
    return 0


@read
def get_logs(conn: sqlite3.Connection, queue: str, job_id: str) -> list[str]:
    """A job's log lines, oldest first."""
    rows = conn.execute(
        "SELECT line FROM job_logs WHERE queue = ? AND job_id = ? ORDER BY seq", (queue, job_id)
    )
    return [row[0] for row in rows]
