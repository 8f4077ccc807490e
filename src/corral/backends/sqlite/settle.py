"""The worker's transitions: settle finished attempts and claim more, recover stalled
jobs, renew locks. Every move out of `active` checks the job's lock token."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Final

from corral.backends.base import (
    Claimed,
    Complete,
    Fail,
    Outcome,
    RecoverResult,
    Release,
    RetryLater,
    SettleResult,
)
from corral.backends.sqlite.rows import JOB_COLUMNS, Finisher, to_record, to_waiting
from corral.backends.sqlite.schedules import ticks
from corral.backends.sqlite.store import (
    Store,
    data_version,
    resolve_now,
    write,
    write_quietly,
)

STALLED_REASON: Final = "job stalled more than allowable limit"

_HELD: Final = "queue = ? AND id = ? AND state = 'active' AND lock_token = ?"
_COMPLETE: Final = f"""
    UPDATE jobs SET state = 'completed', attempts_made = attempts_made + 1, finished_at = ?,
        return_value = ?, lock_token = NULL, lock_until = NULL
    WHERE {_HELD}
"""
_FAIL: Final = f"""
    UPDATE jobs SET state = 'failed', attempts_made = attempts_made + 1, finished_at = ?,
        failed_reason = ?, stacktrace = ?, lock_token = NULL, lock_until = NULL
    WHERE {_HELD}
"""
# A retry due at once is written as due now: promotion, in the same transaction, then
# queues it behind the jobs already waiting.
_RETRY_LATER: Final = f"""
    UPDATE jobs SET state = 'delayed', attempts_made = attempts_made + 1, run_at = ?,
        failed_reason = ?, stacktrace = ?, lock_token = NULL, lock_until = NULL
    WHERE {_HELD}
"""
# Released and stalled jobs keep their position: they were next, and are again.
_RELEASE: Final = f"""
    UPDATE jobs SET state = 'waiting', lock_token = NULL, lock_until = NULL
    WHERE {_HELD}
"""
_CLAIM: Final = f"""
    UPDATE jobs SET state = 'active', lock_token = ?1 || printf('%x', rowid), lock_until = ?2,
        processed_at = ?3, worker_id = ?4
    WHERE rowid IN (
        SELECT rowid FROM jobs WHERE queue = ?5 AND state = 'waiting'
        ORDER BY priority, seq LIMIT ?6
    )
    RETURNING seq, {JOB_COLUMNS}
"""
_NEXT_DUE: Final = "SELECT min(run_at) FROM jobs WHERE queue = ? AND state = 'delayed'"
_ANY_WAITING: Final = "SELECT 1 FROM jobs WHERE queue = ? AND state = 'waiting' LIMIT 1"
_DUE: Final = """
    SELECT rowid, lifo FROM jobs WHERE queue = ? AND state = 'delayed' AND run_at <= ?
    ORDER BY run_at, rowid
"""
_LAPSED: Final = """
    SELECT rowid, id, stalled_count FROM jobs
    WHERE queue = ? AND state = 'active' AND lock_until < ? ORDER BY lock_until
"""
_STALLED_BACK: Final = """
    UPDATE jobs SET state = 'waiting', stalled_count = stalled_count + 1,
        lock_token = NULL, lock_until = NULL
    WHERE rowid = ?
"""
_STALLED_OUT: Final = """
    UPDATE jobs SET state = 'failed', stalled_count = stalled_count + 1, finished_at = ?,
        failed_reason = ?, lock_token = NULL, lock_until = NULL
    WHERE rowid = ?
"""
_EXTEND: Final = f"UPDATE jobs SET lock_until = ? WHERE {_HELD}"


def settle(
    store: Store,
    queue: str,
    outcomes: Sequence[Outcome],
    claim: int,
    lock_ms: int,
    worker_id: str,
    now_ms: int | None,
) -> SettleResult:
    """Apply outcomes (checking tokens), promote due jobs, claim up to `claim`: one transaction.

    Also reports the schedules due (a few, earliest first) without firing them, and
    counts the schedules' next runs in `next_due_ms` (a due one makes it <= now).
    """
    looked = None
    if not outcomes:
        # Idle workers wake on every commit to the file; most find nothing to do, and a
        # read answers that without queueing for the write lock.
        looked = store.run(lambda conn: _look(conn, queue, claim, now_ms), write=False)
    if looked is None:
        looked = store.run(
            lambda conn: _settle(conn, queue, outcomes, claim, lock_ms, worker_id, now_ms),
            write=True,
            queue=queue,
        )
    result, version = looked
    if claim > 0:
        store.note_look(queue, version)
    return result


def _look(
    conn: sqlite3.Connection, queue: str, claim: int, now_ms: int | None
) -> tuple[SettleResult, int] | None:
    """The result of a settle with no outcomes, or None when it would change something.

    Due schedules need no write: firing them is a transition of its own.
    """
    now = resolve_now(now_ms)
    paused, hold_until = _flags(conn, queue)
    next_due = conn.execute(_NEXT_DUE, (queue,)).fetchone()[0]
    if next_due is not None and next_due <= now:
        return None
    can_claim = claim > 0 and not paused and now >= hold_until
    if can_claim and conn.execute(_ANY_WAITING, (queue,)).fetchone():
        return None
    next_tick, due = ticks(conn, queue, now)
    held = hold_until if hold_until > now else None
    result = SettleResult([], [], now, _earliest(next_due, next_tick), held, due)
    return result, data_version(conn)


def _earliest(first: int | None, second: int | None) -> int | None:
    """The earlier of two times, either of which may be missing."""
    if first is None or second is None:
        return second if first is None else first
    return min(first, second)


def _flags(conn: sqlite3.Connection, queue: str) -> tuple[bool, int]:
    """Whether the queue is paused, and until when it is held."""
    row = conn.execute("SELECT paused, hold_until FROM queues WHERE name = ?", (queue,)).fetchone()
    return (False, 0) if row is None else (bool(row[0]), int(row[1]))


def _settle(
    conn: sqlite3.Connection,
    queue: str,
    outcomes: Sequence[Outcome],
    claim: int,
    lock_ms: int,
    worker_id: str,
    now_ms: int | None,
) -> tuple[SettleResult, int]:
    now = resolve_now(now_ms)
    paused, hold_until = _flags(conn, queue)
    finisher = Finisher(conn, queue, now)
    refused: list[str] = []
    hold = hold_until
    for outcome in outcomes:
        if not _apply(conn, queue, outcome, now, finisher):
            refused.append(outcome.job_id)
        elif isinstance(outcome, Release) and outcome.hold_ms > 0:
            hold = max(hold, now + outcome.hold_ms)
    finisher.apply()
    if hold > hold_until:
        conn.execute("UPDATE queues SET hold_until = ? WHERE name = ?", (hold, queue))
        hold_until = hold
    next_due = _promote_due(conn, queue, now)
    claimed: list[Claimed] = []
    if claim > 0 and not paused and now >= hold_until:
        claimed = _claim(conn, queue, claim, now, now + lock_ms, worker_id)
    # Ticks are reported even while the queue is paused or held: their jobs wait there.
    next_tick, due = ticks(conn, queue, now)
    held = hold_until if hold_until > now else None
    result = SettleResult(refused, claimed, now, _earliest(next_due, next_tick), held, due)
    # Read under the write lock: the exact version this look for work saw.
    return result, data_version(conn)


def _apply(
    conn: sqlite3.Connection, queue: str, outcome: Outcome, now: int, finisher: Finisher
) -> bool:
    # Plain UPDATEs checked by rowcount: RETURNING would double their cost.
    held = (queue, outcome.job_id, outcome.token)
    match outcome:
        case Complete():
            applied = conn.execute(_COMPLETE, (now, outcome.return_value, *held)).rowcount
            if applied:
                finisher.finished("completed")
        case Fail():
            applied = conn.execute(_FAIL, (now, outcome.reason, outcome.stacktrace, *held)).rowcount
            if applied:
                finisher.finished("failed")
        case RetryLater():
            due = now + max(0, outcome.delay_ms)
            applied = conn.execute(
                _RETRY_LATER, (due, outcome.reason, outcome.stacktrace, *held)
            ).rowcount
        case Release():
            applied = conn.execute(_RELEASE, held).rowcount
    return applied > 0


def _promote_due(conn: sqlite3.Connection, queue: str, now: int) -> int | None:
    """Move due delayed jobs to waiting; return when the next delayed job falls due."""
    first = conn.execute(_NEXT_DUE, (queue,)).fetchone()[0]
    if first is None or first > now:
        return None if first is None else int(first)
    to_waiting(conn, queue, conn.execute(_DUE, (queue, now)).fetchall())
    following = conn.execute(_NEXT_DUE, (queue,)).fetchone()[0]
    return None if following is None else int(following)


def _claim(
    conn: sqlite3.Connection, queue: str, limit: int, now: int, lock_until: int, worker_id: str
) -> list[Claimed]:
    # The nonce, fresh from the OS per call, keeps tokens unique across processes and
    # forks; the rowid keeps them unique within the call.
    nonce = secrets.token_hex(12) + "-"
    rows = conn.execute(_CLAIM, (nonce, lock_until, now, worker_id, queue, limit)).fetchall()
    rows.sort(key=lambda row: (row[6], row[0]))  # RETURNING order is unspecified
    return [Claimed(to_record(row[1:]), row[-1]) for row in rows]


@write
def recover_stalled(
    conn: sqlite3.Connection, queue: str, max_stalled_count: int, now_ms: int | None
) -> RecoverResult:
    """Hand back active jobs whose lock lapsed; fail those stalled too often."""
    now = resolve_now(now_ms)
    result = RecoverResult()
    finisher = Finisher(conn, queue, now)
    back: list[tuple[int]] = []
    out: list[tuple[int, str, int]] = []
    for rowid, job_id, stalled in conn.execute(_LAPSED, (queue, now)):
        if stalled + 1 > max_stalled_count:
            out.append((now, STALLED_REASON, rowid))
            result.failed.append(job_id)
            finisher.finished("failed")
        else:
            back.append((rowid,))
            result.recovered.append(job_id)
    conn.executemany(_STALLED_BACK, back)
    conn.executemany(_STALLED_OUT, out)
    finisher.apply()
    return result


@write_quietly
def extend_locks(
    conn: sqlite3.Connection,
    queue: str,
    tokens: Mapping[str, str],
    lock_ms: int,
    now_ms: int | None,
) -> list[str]:
    """Extend the locks of jobs still held with these tokens; return the ids lost."""
    until = resolve_now(now_ms) + lock_ms
    return [
        job_id
        for job_id, token in tokens.items()
        if not conn.execute(_EXTEND, (until, queue, job_id, token)).rowcount
    ]
