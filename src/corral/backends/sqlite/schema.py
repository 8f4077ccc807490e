"""The SQLite schema, as numbered migrations tracked in `PRAGMA user_version`.

Each state has a partial index ordered the way that state is read, so taking the
next job, promoting due jobs, finding lapsed locks and trimming finished jobs
touch only the rows of that state. Waiting jobs are indexed by group first (for
fair claiming), so queries of waiting jobs in claim order name `grp IS NULL` or
`grp IS NOT NULL` (`rows.WAITING_PARTS`).
Schedules are indexed by their next tick, job starts (kept while a rate limit is
set) by time, events by queue and id, metrics by queue and minute. A flow's child
records are keyed by their parent (in the flow's order) and indexed by the child.

A file at an older version is upgraded in place by the migrations it lacks.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from corral.errors import BackendUnavailableError

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # 1: queues, jobs, their tags and logs
        """
        CREATE TABLE queues (
            name TEXT PRIMARY KEY,
            paused INTEGER NOT NULL DEFAULT 0,
            hold_until INTEGER NOT NULL DEFAULT 0,
            config TEXT,
            config_version INTEGER NOT NULL DEFAULT 0,
            next_seq INTEGER NOT NULL DEFAULT 1
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE jobs (
            queue TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            data TEXT NOT NULL,
            options TEXT NOT NULL,
            state TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            lifo INTEGER NOT NULL DEFAULT 0,
            seq INTEGER NOT NULL,
            run_at INTEGER,
            created_at INTEGER NOT NULL,
            processed_at INTEGER,
            finished_at INTEGER,
            attempts_made INTEGER NOT NULL DEFAULT 0,
            stalled_count INTEGER NOT NULL DEFAULT 0,
            progress TEXT,
            return_value TEXT,
            failed_reason TEXT,
            stacktrace TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            grp TEXT,
            lock_token TEXT,
            lock_until INTEGER,
            worker_id TEXT,
            keep_completed_count INTEGER,
            keep_completed_age_ms INTEGER,
            keep_failed_count INTEGER,
            keep_failed_age_ms INTEGER,
            PRIMARY KEY (queue, id)
        )
        """,
        "CREATE INDEX jobs_waiting ON jobs (queue, priority, seq) WHERE state = 'waiting'",
        "CREATE INDEX jobs_delayed ON jobs (queue, run_at) WHERE state = 'delayed'",
        "CREATE INDEX jobs_active ON jobs (queue, lock_until) WHERE state = 'active'",
        "CREATE INDEX jobs_completed ON jobs (queue, finished_at) WHERE state = 'completed'",
        "CREATE INDEX jobs_failed ON jobs (queue, finished_at) WHERE state = 'failed'",
        "CREATE INDEX jobs_waiting_children ON jobs (queue, created_at)"
        " WHERE state = 'waiting-children'",
        """
        CREATE TABLE job_tags (
            queue TEXT NOT NULL,
            tag TEXT NOT NULL,
            job_id TEXT NOT NULL,
            PRIMARY KEY (queue, tag, job_id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE job_logs (
            queue TEXT NOT NULL,
            job_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            line TEXT NOT NULL,
            PRIMARY KEY (queue, job_id, seq)
        ) WITHOUT ROWID
        """,
    ),
    (  # 2: schedules, each with its next tick
        """
        CREATE TABLE schedules (
            queue TEXT NOT NULL,
            id TEXT NOT NULL,
            spec TEXT NOT NULL,
            next_run INTEGER,
            last_run INTEGER,
            count INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (queue, id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX schedules_due ON schedules (queue, next_run) WHERE next_run IS NOT NULL",
    ),
    (  # 3: queue-wide limits, job starts for rate limits, fair groups, dedupe keys
        "ALTER TABLE queues ADD COLUMN rate_limit INTEGER",
        "ALTER TABLE queues ADD COLUMN rate_per_ms INTEGER",
        "ALTER TABLE queues ADD COLUMN concurrency INTEGER",
        "ALTER TABLE queues ADD COLUMN group_rate_limit INTEGER",
        "ALTER TABLE queues ADD COLUMN group_rate_per_ms INTEGER",
        "ALTER TABLE queues ADD COLUMN group_concurrency INTEGER",
        "ALTER TABLE queues ADD COLUMN group_turn INTEGER NOT NULL DEFAULT 0",
        # Waiting jobs by group (the ungrouped ones, NULL, first), each group in claim
        # order. It replaces the index by claim order, so a job costs no more to add,
        # claim or finish than before.
        "DROP INDEX jobs_waiting",
        "CREATE INDEX jobs_waiting ON jobs (queue, grp, priority, seq) WHERE state = 'waiting'",
        # One row per job start while a rate limit is set; grp is '' for ungrouped jobs.
        """
        CREATE TABLE job_starts (
            queue TEXT NOT NULL,
            grp TEXT NOT NULL,
            at INTEGER NOT NULL
        )
        """,
        "CREATE INDEX job_starts_at ON job_starts (queue, at)",
        "CREATE INDEX job_starts_group ON job_starts (queue, grp, at)",
        # When each group last had a job claimed, as a value of queues.group_turn.
        """
        CREATE TABLE job_groups (
            queue TEXT NOT NULL,
            grp TEXT NOT NULL,
            served INTEGER NOT NULL,
            PRIMARY KEY (queue, grp)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE dedupe (
            queue TEXT NOT NULL,
            key TEXT NOT NULL,
            job_id TEXT NOT NULL,
            expires_at INTEGER,
            PRIMARY KEY (queue, key)
        ) WITHOUT ROWID
        """,
    ),
    (  # 4: live workers, each until its registration expires
        """
        CREATE TABLE workers (
            queue TEXT NOT NULL,
            id TEXT NOT NULL,
            info TEXT NOT NULL,
            started_at INTEGER NOT NULL,
            heartbeat_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (queue, id)
        ) WITHOUT ROWID
        """,
    ),
    (  # 5: the capped event stream, its ids, and per-minute metrics
        # Which events the queue's transitions record: 'all', 'final' or 'off'.
        "ALTER TABLE queues ADD COLUMN events TEXT NOT NULL DEFAULT 'final'",
        # Ids count up from 1 per queue without gaps, so the newest `CAP` are one range.
        """
        CREATE TABLE events (
            queue TEXT NOT NULL,
            id INTEGER NOT NULL,
            type TEXT NOT NULL,
            job_id TEXT,
            data TEXT,
            at INTEGER NOT NULL,
            PRIMARY KEY (queue, id)
        ) WITHOUT ROWID
        """,
        # The last event id handed out per queue. Kept by obliterate, so that the ids of a
        # queue used again go on from there and a listener resuming from an id misses nothing.
        """
        CREATE TABLE event_ids (
            queue TEXT PRIMARY KEY,
            last_id INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        # What finished in each minute (its start, epoch ms), kept 8 days.
        """
        CREATE TABLE metrics (
            queue TEXT NOT NULL,
            minute INTEGER NOT NULL,
            completed INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            processing_ms_total INTEGER NOT NULL,
            processing_ms_max INTEGER NOT NULL,
            wait_ms_total INTEGER NOT NULL,
            wait_ms_max INTEGER NOT NULL,
            PRIMARY KEY (queue, minute)
        ) WITHOUT ROWID
        """,
    ),
    (  # 6: flows: each job's parent, each parent's pending count and child records
        "ALTER TABLE jobs ADD COLUMN parent_queue TEXT",
        "ALTER TABLE jobs ADD COLUMN parent_id TEXT",
        "ALTER TABLE jobs ADD COLUMN parent_ignore_failure INTEGER NOT NULL DEFAULT 0",
        # Children not yet completed, failed or removed; NULL for a job that is no parent,
        # so that deleting a job tells from its own row whether it has child records.
        "ALTER TABLE jobs ADD COLUMN pending_children INTEGER",
        # Set once a flow put a child in the queue: only then does settling read the
        # parents of the jobs it finished, so queues without flows pay nothing.
        "ALTER TABLE queues ADD COLUMN flow_children INTEGER NOT NULL DEFAULT 0",
        # One row per child as its parent sees it, in the order the flow listed them;
        # kept after the child itself is removed, deleted with the parent.
        """
        CREATE TABLE job_children (
            parent_queue TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            child_queue TEXT NOT NULL,
            child_id TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            return_value TEXT,
            failed_reason TEXT,
            PRIMARY KEY (parent_queue, parent_id, position)
        ) WITHOUT ROWID
        """,
        "CREATE UNIQUE INDEX job_children_child"
        " ON job_children (child_queue, child_id, parent_queue, parent_id)",
    ),
    (  # 7: how many jobs each queue holds in each finished state, kept by triggers
        # Retention by count then deletes just the excess, oldest first, instead of
        # walking past the N newest entries of the state's index on every settle.
        """
        CREATE TABLE finished_counts (
            queue TEXT NOT NULL,
            state TEXT NOT NULL,
            jobs INTEGER NOT NULL,
            PRIMARY KEY (queue, state)
        ) WITHOUT ROWID
        """,
        """
        INSERT INTO finished_counts (queue, state, jobs)
        SELECT queue, state, count(*) FROM jobs WHERE state IN ('completed', 'failed')
        GROUP BY queue, state
        """,
        """
        CREATE TRIGGER finished_counts_insert AFTER INSERT ON jobs
        WHEN new.state IN ('completed', 'failed') BEGIN
            INSERT INTO finished_counts (queue, state, jobs) VALUES (new.queue, new.state, 1)
            ON CONFLICT (queue, state) DO UPDATE SET jobs = jobs + 1;
        END
        """,
        """
        CREATE TRIGGER finished_counts_delete AFTER DELETE ON jobs
        WHEN old.state IN ('completed', 'failed') BEGIN
            UPDATE finished_counts SET jobs = jobs - 1
            WHERE queue = old.queue AND state = old.state;
        END
        """,
        """
        CREATE TRIGGER finished_counts_update AFTER UPDATE OF state ON jobs
        WHEN old.state IS NOT new.state
            AND (old.state IN ('completed', 'failed') OR new.state IN ('completed', 'failed'))
        BEGIN
            UPDATE finished_counts SET jobs = jobs - 1
            WHERE queue = old.queue AND state = old.state;
            INSERT INTO finished_counts (queue, state, jobs)
            SELECT new.queue, new.state, 1 WHERE new.state IN ('completed', 'failed')
            ON CONFLICT (queue, state) DO UPDATE SET jobs = jobs + 1;
        END
        """,
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database file."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date; safe when several processes open a new file at once."""
    if user_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = user_version(conn)
        if version > SCHEMA_VERSION:
            raise BackendUnavailableError(
                f"the database has schema version {version}, newer than this corral "
                f"understands ({SCHEMA_VERSION}): upgrade corral"
            )
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
