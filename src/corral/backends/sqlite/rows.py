"""Building blocks shared by the transitions: records from rows, sequence numbers,
moves to `waiting`, deletion with tags, logs and flow records, retention, and what a
child's end does to its parent's count."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import orjson

from corral.backends.base import JobRecord, ParentRef, Retention
from corral.backends.sqlite.events import Recorder, encode, recorder
from corral.backends.sqlite.store import resolve_now, touch
from corral.job_state import JobState

FinishedState = Literal["completed", "failed"]

JOB_COLUMNS: Final = (
    "id, name, data, options, state, priority, attempts_made, stalled_count, progress, "
    "return_value, failed_reason, stacktrace, created_at, processed_at, finished_at, run_at, "
    "tags, grp, parent_queue, parent_id, parent_ignore_failure, pending_children, lock_token"
)
"""The columns of a `JobRecord` (`to_record`); the lock token comes last."""

DELETED: Final = "id, tags, parent_queue, parent_id, pending_children"
"""What every `DELETE` of jobs returns for `purge`: the job, its tags, its parent (a
flow's child) and its count of children (NULL: no parent). Plain columns only: SQLite
3.40 evaluates `IS NULL` in `DELETE ... RETURNING` wrongly."""

WAITING_PARTS: Final = (
    "state = 'waiting' AND grp IS NULL",
    "state = 'waiting' AND grp IS NOT NULL",
)
"""Conditions selecting the ungrouped and the grouped waiting jobs. The waiting index
leads with the group, so the ungrouped jobs are one range of it in claim order, and
a query of all waiting jobs in claim order merges the two parts (other queries of
waiting jobs need no part)."""

_ALLOCATE_SEQ: Final = """
    INSERT INTO queues (name, next_seq) VALUES (?1, 1 + ?2)
    ON CONFLICT (name) DO UPDATE SET next_seq = next_seq + ?2
    RETURNING next_seq - ?2
"""
_TO_WAITING: Final = "UPDATE jobs SET state = 'waiting', seq = ? WHERE rowid = ?"
_DELETE_TAG: Final = "DELETE FROM job_tags WHERE queue = ? AND tag = ? AND job_id = ?"
_DELETE_LOGS: Final = "DELETE FROM job_logs WHERE queue = ? AND job_id = ?"
_DELETE_CHILDREN: Final = "DELETE FROM job_children WHERE parent_queue = ? AND parent_id = ?"
# A child's record as its parent sees it, ended once: later ends (after a retry by hand)
# change nothing.
_END_CHILD: Final = """
    UPDATE job_children SET state = ?, return_value = ?, failed_reason = ?
    WHERE child_queue = ? AND child_id = ? AND parent_queue = ? AND parent_id = ?
        AND state = 'pending'
"""
_DROP_PENDING: Final = """
    UPDATE jobs SET pending_children = pending_children - 1
    WHERE queue = ? AND id = ? AND state = 'waiting-children'
    RETURNING rowid, lifo, run_at, pending_children
"""
_FINISHED_COUNT: Final = "SELECT jobs FROM finished_counts WHERE queue = ? AND state = ?"
# The oldest `?2` jobs of the state: those past the newest N, when it holds N + ?2.
_TRIM_OLDEST: Final = {
    state: f"""
        DELETE FROM jobs WHERE rowid IN (
            SELECT rowid FROM jobs WHERE queue = ? AND state = '{state}'
            ORDER BY finished_at, rowid LIMIT ?
        ) RETURNING {DELETED}
    """
    for state in ("completed", "failed")
}
_TRIM_BY_AGE: Final = {
    state: f"""
        DELETE FROM jobs WHERE queue = ? AND state = '{state}' AND finished_at < ?
        RETURNING {DELETED}
    """
    for state in ("completed", "failed")
}
_RULES: Final = {
    state: f"""
        SELECT DISTINCT keep_{state}_count, keep_{state}_age_ms FROM jobs
        WHERE queue = ? AND state = '{state}' AND finished_at = ?
    """
    for state in ("completed", "failed")
}
_REMOVE_AT_ONCE: Final = {
    state: f"""
        DELETE FROM jobs WHERE queue = ? AND state = '{state}' AND finished_at = ?
        AND keep_{state}_count = 0 RETURNING {DELETED}
    """
    for state in ("completed", "failed")
}


_STATES: Final = {state.value: state for state in JobState}


def to_record(row: Sequence[Any]) -> JobRecord:
    """A record from a row selected as `JOB_COLUMNS`."""
    # Positional, in JobRecord's field order: this runs for every job claimed.
    return JobRecord(
        row[0], row[1], row[2], row[3], _STATES[row[4]], row[5], row[6], row[7], row[8],
        row[9], row[10], row[11], row[12], row[13], row[14], row[15],
        () if row[16] == "[]" else tuple(orjson.loads(row[16])), row[17], row[22],
        None if row[18] is None else ParentRef(row[18], row[19], bool(row[20])),
        row[21] or 0,
    )


def encode_tags(tags: Sequence[str]) -> str:
    """Tags as the JSON list stored with the job."""
    return orjson.dumps(list(tags)).decode() if tags else "[]"


def decode_tags(text: str) -> tuple[str, ...]:
    """Tags from their stored JSON list."""
    return () if text == "[]" else tuple(orjson.loads(text))


def fetch_job(conn: sqlite3.Connection, queue: str, job_id: str) -> JobRecord | None:
    """One job's record, or None."""
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)
    ).fetchone()
    return None if row is None else to_record(row)


def allocate_seq(conn: sqlite3.Connection, queue: str, count: int) -> int:
    """The first of `count` fresh queue positions (creating the queue's row if needed)."""
    return int(conn.execute(_ALLOCATE_SEQ, (queue, count)).fetchone()[0])


def seq_at(base: int, offset: int, lifo: bool) -> int:
    """A position: FIFO jobs count up from 1, LIFO jobs down from -1, so LIFO goes first."""
    return -(base + offset) if lifo else base + offset


def to_waiting(conn: sqlite3.Connection, queue: str, rows: Sequence[tuple[int, int]]) -> None:
    """Move jobs (rowid, lifo) to the back of `waiting` (front for LIFO), in the given order."""
    if not rows:
        return
    base = allocate_seq(conn, queue, len(rows))
    conn.executemany(
        _TO_WAITING,
        [(seq_at(base, i, bool(lifo)), rowid) for i, (rowid, lifo) in enumerate(rows)],
    )


def purge(
    conn: sqlite3.Connection,
    queue: str,
    deleted: Iterable[Sequence[Any]],
    now: int | None = None,
) -> list[str]:
    """Clear up after jobs just deleted (rows selected as `DELETED`): their tags and logs,
    the child records of parents, and a pending child's place in its parent, which records
    it "removed" (see `end_child`). Returns their ids."""
    ids: list[str] = []
    tag_rows: list[tuple[str, str, str]] = []
    parents: list[tuple[str, str]] = []
    children: list[tuple[str, ParentRef]] = []
    for job_id, tags, parent_queue, parent_id, pending in deleted:
        ids.append(job_id)
        tag_rows.extend((queue, tag, job_id) for tag in decode_tags(tags))
        if pending is not None:
            parents.append((queue, job_id))
        if parent_queue is not None:
            children.append((job_id, ParentRef(parent_queue, parent_id)))
    if tag_rows:
        conn.executemany(_DELETE_TAG, tag_rows)
    if ids:
        conn.executemany(_DELETE_LOGS, [(queue, job_id) for job_id in ids])
    if parents:
        conn.executemany(_DELETE_CHILDREN, parents)
    if children:
        _release(conn, queue, children, resolve_now(now))
    return ids


def _release(
    conn: sqlite3.Connection, queue: str, children: list[tuple[str, ParentRef]], now: int
) -> None:
    """Record children removed while pending; their parents wait for them no more."""
    events: dict[str, Recorder] = {}

    def events_of(name: str) -> Recorder:
        if name not in events:
            events[name] = recorder(conn, name)
        return events[name]

    for job_id, parent in children:
        if end_child(conn, queue, job_id, parent, "removed"):
            drop_pending(conn, parent, now, events_of)
    for name, kept in events.items():
        kept.write(conn, name, now)


def end_child(
    conn: sqlite3.Connection,
    queue: str,
    job_id: str,
    parent: ParentRef,
    state: Literal["completed", "failed", "removed"],
    value: str | None = None,
) -> bool:
    """Record the end of a child (`value`: its return value, or its failure's reason) in
    its parent's records; False when it was no longer pending there (or the parent and
    its records are gone)."""
    params = (
        state, value if state == "completed" else None, value if state == "failed" else None,
        queue, job_id, parent.queue, parent.id,
    )
    return conn.execute(_END_CHILD, params).rowcount > 0


def drop_pending(
    conn: sqlite3.Connection, parent: ParentRef, now: int, events: Callable[[str], Recorder]
) -> None:
    """One child of `parent` is done: a parent still in `waiting-children` waits for one
    fewer, and at none becomes waiting (delayed while its run_at is ahead), waking the
    workers of its queue. `events` gives the recorder of a queue."""
    row = conn.execute(_DROP_PENDING, (parent.queue, parent.id)).fetchone()
    if row is None or row[3] > 0:
        return
    rowid, lifo, run_at, _ = row
    if run_at is not None and run_at > now:
        conn.execute("UPDATE jobs SET state = 'delayed' WHERE rowid = ?", (rowid,))
        kept = events(parent.queue)
        if kept.all:
            kept.detail("delayed", parent.id, encode({"run_at": run_at}))
    else:
        to_waiting(conn, parent.queue, [(rowid, lifo)])
        events(parent.queue).detail("waiting", parent.id)
    touch(conn, parent.queue, work=True)


def delete_ids(conn: sqlite3.Connection, queue: str, ids: Iterable[str]) -> list[str]:
    """Delete jobs by id, clearing up after them (`purge`); return the ids that existed."""
    deleted = [
        row
        for job_id in ids
        for row in conn.execute(
            f"DELETE FROM jobs WHERE queue = ? AND id = ? RETURNING {DELETED}", (queue, job_id)
        )
    ]
    return purge(conn, queue, deleted)


def delete_returning(
    conn: sqlite3.Connection,
    queue: str,
    sql: str,
    params: Sequence[Any],
    now: int | None = None,
) -> list[str]:
    """Run a `DELETE ... RETURNING` of the `DELETED` columns and purge what it deleted
    (`now`: the transition's time, for parents it sets going); return the ids."""
    return purge(conn, queue, conn.execute(sql, params).fetchall(), now)


def trim(
    conn: sqlite3.Connection, queue: str, state: FinishedState, keep: Retention, now: int
) -> list[str]:
    """Apply one retention rule to every job of the queue in `state`; return ids removed."""
    removed: list[str] = []
    if keep.count is not None and keep.count > 0:
        held = conn.execute(_FINISHED_COUNT, (queue, state)).fetchone()
        excess = (0 if held is None else held[0]) - keep.count
        if excess > 0:
            params = (queue, excess)
            removed += delete_returning(conn, queue, _TRIM_OLDEST[state], params, now)
    if keep.age_ms is not None:
        params = (queue, now - keep.age_ms)
        removed += delete_returning(conn, queue, _TRIM_BY_AGE[state], params, now)
    return removed


class Finisher:
    """Applies retention to the jobs that reached a finished state in this transaction.

    Rather than one query per job, it reads the distinct rules of the jobs finished at
    `now` once: a count of 0 removes those jobs themselves, any other rule trims the
    whole state once.
    """

    def __init__(self, conn: sqlite3.Connection, queue: str, now: int) -> None:
        self.conn = conn
        self.queue = queue
        self.now = now
        self._states: set[FinishedState] = set()

    def finished(self, state: FinishedState) -> None:
        """Note that a job just reached `state` (its `finished_at` is `now`)."""
        self._states.add(state)

    def apply(self) -> None:
        """Delete the jobs that the retention rules of the newly finished ones drop."""
        for state in sorted(self._states):
            params = (self.queue, self.now)
            rules = [Retention(*row) for row in self.conn.execute(_RULES[state], params)]
            if any(rule.count == 0 for rule in rules):
                sql = _REMOVE_AT_ONCE[state]
                delete_returning(self.conn, self.queue, sql, params, self.now)
            for rule in rules:
                if rule.count != 0 and not rule.keeps_all:
                    trim(self.conn, self.queue, state, rule, self.now)
