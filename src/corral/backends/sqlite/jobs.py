"""Transitions on single jobs: adding, reading, listing, removing, moving by hand."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from corral.backends.base import AddResult, DedupeRule, JobRecord, ListableState, NewJob
from corral.backends.sqlite.events import Recorder, embed, encode, record_jobs, recorder
from corral.backends.sqlite.rows import (
    DELETED,
    JOB_COLUMNS,
    WAITING_PARTS,
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
        keep_failed_count, keep_failed_age_ms,
        parent_queue, parent_id, parent_ignore_failure, pending_children
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (queue, id) DO NOTHING
"""
_LIST: Final[dict[str, str]] = {
    state: f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND state = '{state}'"
    f" ORDER BY {order} LIMIT ?2 OFFSET ?3"
    for state, order in {
        "delayed": "run_at, rowid",
        "active": "processed_at, seq",
        "completed": "finished_at DESC, rowid DESC",
        "failed": "finished_at DESC, rowid DESC",
        "waiting-children": "created_at, rowid",
    }.items()
}
# Waiting jobs by priority and position: the first offset + limit of each part, merged.
_LIST["waiting"] = f"""
    SELECT {JOB_COLUMNS} FROM jobs WHERE rowid IN (
        {" UNION ALL ".join(
            f"SELECT rowid FROM (SELECT rowid FROM jobs WHERE queue = ?1 AND {part}"
            " ORDER BY priority, seq LIMIT ?2 + ?3)"
            for part in WAITING_PARTS
        )}
    ) ORDER BY priority, seq LIMIT ?2 OFFSET ?3
"""
_COUNTS: Final = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM jobs WHERE queue = ?1 AND state = '{state}')" for state in JobState
)
_GET_DEDUPE: Final = "SELECT job_id, expires_at FROM dedupe WHERE queue = ? AND key = ?"
_SET_DEDUPE: Final = """
    INSERT INTO dedupe (queue, key, job_id, expires_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (queue, key) DO UPDATE SET
        job_id = excluded.job_id, expires_at = excluded.expires_at
"""
_PENDING: Final = frozenset({JobState.WAITING, JobState.DELAYED, JobState.ACTIVE})
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
    """Insert new jobs in order; an id still stored, or a dedupe key whose job survives,
    returns that job instead (see `insert_jobs`)."""
    now = resolve_now(now_ms)
    row = conn.execute("SELECT config_version FROM queues WHERE name = ?", (queue,)).fetchone()
    if (0 if row is None else row[0]) != config_version:
        return AddResult([], now, stale_config=True)
    return AddResult(insert_jobs(conn, queue, jobs, now), now)


def insert_jobs(
    conn: sqlite3.Connection, queue: str, jobs: Sequence[NewJob], now: int
) -> list[tuple[JobRecord, bool]]:
    """The body of `add` inside a caller's transaction: insert jobs in order (creating
    the queue's row). An id still stored returns that job unchanged (False); so does,
    after that, a dedupe key whose job survives (`_survivor`), which `replace` updates.

    Records `added` for each job created (and, at level "all", `waiting` or `delayed`),
    and `deduplicated` for each add a dedupe key turned away; an id still stored records
    nothing."""
    base = allocate_seq(conn, queue, len(jobs))
    events = recorder(conn, queue)
    records: list[tuple[JobRecord, bool]] = []
    for offset, job in enumerate(jobs):
        if job.dedupe is not None:
            existing = fetch_job(conn, queue, job.id)
            if existing is None:
                existing = _survivor(conn, queue, job.dedupe, now)
                if existing is not None:
                    if events.on:
                        hit = {"key": job.dedupe.key, "job_id": existing.id}
                        events.final("deduplicated", job.id, encode(hit))
                    if job.dedupe.replace:
                        existing = _replace(conn, queue, existing, job, now, events)
            if existing is not None:
                records.append((existing, False))
                continue
        record = _insert(conn, queue, job, seq_at(base, offset, job.lifo), now)
        if record is None:
            existing = fetch_job(conn, queue, job.id)
            assert existing is not None
            records.append((existing, False))
            continue
        if job.dedupe is not None:
            ttl = job.dedupe.ttl_ms
            conn.execute(_SET_DEDUPE, (queue, job.dedupe.key, job.id, _expiry(ttl, now)))
        records.append((record, True))
        if events.on:
            _record_added(events, record, now)
    events.write(conn, queue, now)
    return records


def _record_added(events: Recorder, record: JobRecord, now: int) -> None:
    """The events of a job just created: `added`, then where it went (level "all"; a
    parent waiting for its children records no more)."""
    if record.state == JobState.WAITING_CHILDREN:
        events.final("added", record.id, encode({"name": record.name}))
    elif record.state == JobState.DELAYED:
        assert record.run_at is not None
        added = {"name": record.name, "delay_ms": record.run_at - now}
        events.final("added", record.id, encode(added))
        events.detail("delayed", record.id, encode({"run_at": record.run_at}))
    else:
        events.final("added", record.id, encode({"name": record.name}))
        events.detail("waiting", record.id)


def _expiry(ttl_ms: int | None, now: int) -> int | None:
    return None if ttl_ms is None else now + ttl_ms


def _survivor(
    conn: sqlite3.Connection, queue: str, rule: DedupeRule, now: int
) -> JobRecord | None:
    """The job that makes an add with this dedupe key a duplicate, if any: the job last
    added with the key, while its ttl runs (with one) or while it is pending (without);
    never a job no longer stored."""
    row = conn.execute(_GET_DEDUPE, (queue, rule.key)).fetchone()
    if row is None:
        return None
    job_id, expires_at = row
    if expires_at is not None and now >= expires_at:
        return None
    survivor = fetch_job(conn, queue, job_id)
    if survivor is None or (expires_at is None and survivor.state not in _PENDING):
        return None
    return survivor


def _replace(
    conn: sqlite3.Connection,
    queue: str,
    survivor: JobRecord,
    job: NewJob,
    now: int,
    events: Recorder,
) -> JobRecord:
    """Debounce: a waiting or delayed survivor takes the new job's data and its delay
    starts again (the key's ttl too); an active one stays as it is. At level "all", a
    survivor now delayed records `delayed`, one moved to waiting `waiting`."""
    if survivor.state not in (JobState.WAITING, JobState.DELAYED):
        return survivor
    run_at = _run_at(job, now)
    delayed = run_at is not None and run_at > now
    row = conn.execute(
        "UPDATE jobs SET data = ?, state = ?, run_at = ? WHERE queue = ? AND id = ?"
        " RETURNING rowid, lifo",
        (job.data, "delayed" if delayed else survivor.state.value, run_at, queue, survivor.id),
    ).fetchone()
    if not delayed and survivor.state == JobState.DELAYED:
        to_waiting(conn, queue, [row])
        events.detail("waiting", survivor.id)
    elif delayed and events.all:
        events.detail("delayed", survivor.id, encode({"run_at": run_at}))
    assert job.dedupe is not None
    if job.dedupe.ttl_ms is not None:
        conn.execute(
            "UPDATE dedupe SET expires_at = ? WHERE queue = ? AND key = ?",
            (now + job.dedupe.ttl_ms, queue, job.dedupe.key),
        )
    replaced = fetch_job(conn, queue, survivor.id)
    assert replaced is not None
    return replaced


def _run_at(job: NewJob, now: int) -> int | None:
    """When a job added now falls due: its delay from now, else its `run_at`."""
    if job.delay_ms is not None and job.delay_ms > 0:
        return now + job.delay_ms
    return job.run_at_ms


def _insert(
    conn: sqlite3.Connection, queue: str, job: NewJob, seq: int, now: int
) -> JobRecord | None:
    run_at = _run_at(job, now)
    state = JobState.DELAYED if run_at is not None and run_at > now else JobState.WAITING
    if job.children > 0:
        state = JobState.WAITING_CHILDREN  # its run_at counts once its children are done
    pending = job.children if job.children > 0 else None
    parent = job.parent
    tags = encode_tags(job.tags)
    cursor = conn.execute(
        _INSERT_JOB,
        (
            queue, job.id, job.name, job.data, job.options, state.value, job.priority,
            job.lifo, seq, run_at, now, tags, job.group,
            job.keep_completed.count, job.keep_completed.age_ms,
            job.keep_failed.count, job.keep_failed.age_ms,
            None if parent is None else parent.queue, None if parent is None else parent.id,
            parent is not None and parent.ignore_failure, pending,
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
        group=job.group, parent=parent, pending_children=pending or 0,
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
    removed = delete_ids(conn, queue, [job_id])
    record_jobs(conn, queue, "removed", removed)
    return bool(removed)


@write
def remove_tagged(conn: sqlite3.Connection, queue: str, tag: str) -> int:
    """Remove the waiting and delayed jobs carrying `tag`; return how many."""
    sql = f"""
        DELETE FROM jobs WHERE queue = ?1 AND state IN ('waiting', 'delayed') AND id IN (
            SELECT job_id FROM job_tags WHERE queue = ?1 AND tag = ?2
        ) RETURNING {DELETED}
    """
    removed = delete_returning(conn, queue, sql, (queue, tag))
    record_jobs(conn, queue, "removed", removed)
    return len(removed)


@write
def promote(conn: sqlite3.Connection, queue: str, job_id: str, now_ms: int | None) -> bool:
    """Move a delayed job to waiting now."""
    now = resolve_now(now_ms)
    row = conn.execute(
        "UPDATE jobs SET run_at = ? WHERE queue = ? AND id = ? AND state = 'delayed'"
        " RETURNING rowid, lifo",
        (now, queue, job_id),
    ).fetchone()
    if row is None:
        return False
    to_waiting(conn, queue, [row])
    record_jobs(conn, queue, "waiting", [job_id], now)
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
    record_jobs(conn, queue, "waiting", [job_id], now_ms)
    return True


@write_quietly
def update_progress(conn: sqlite3.Connection, queue: str, job_id: str, progress: str) -> bool:
    """Store a job's progress (recording `progress`); False when the job is gone."""
    cursor = conn.execute(
        "UPDATE jobs SET progress = ? WHERE queue = ? AND id = ?", (progress, queue, job_id)
    )
    if cursor.rowcount == 0:
        return False
    record_jobs(conn, queue, "progress", [job_id], data=embed("progress", progress))
    return True


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
