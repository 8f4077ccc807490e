"""The worker's transitions: settle finished attempts and claim more, recover stalled
jobs, renew locks. Every move out of `active` checks the job's lock token.

Settling and recovering record their events (`events.Recorder`) and add the jobs they
finish to the minute's metrics (`metrics`), in their own transaction; the jobs they end
that are children of a flow move their parents in it too (`flows`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Final

import orjson

from corral.backends.base import (
    Claimed,
    Complete,
    Fail,
    Outcome,
    ParentRef,
    RecoverResult,
    Release,
    RetryLater,
    SettleResult,
)
from corral.backends.sqlite.events import Recorder, embed, encode, recorder
from corral.backends.sqlite.flows import Cascade, end_children
from corral.backends.sqlite.limits import any_waiting, claim_jobs, claimable, queue_row
from corral.backends.sqlite.metrics import DUE_AT, Tally, add_finished
from corral.backends.sqlite.rows import Finisher, to_waiting
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
# The attempts made by jobs just failed or retried (?2: their ids, as a JSON array), for
# their events.
_ATTEMPTS: Final = """
    SELECT id, attempts_made FROM jobs
    WHERE queue = ?1 AND id IN (SELECT value FROM json_each(?2))
"""
# Released and stalled jobs keep their position: they were next, and are again.
_RELEASE: Final = f"""
    UPDATE jobs SET state = 'waiting', lock_token = NULL, lock_until = NULL
    WHERE {_HELD}
"""
_NEXT_DUE: Final = "SELECT min(run_at) FROM jobs WHERE queue = ? AND state = 'delayed'"
_DUE: Final = """
    SELECT rowid, lifo, id FROM jobs WHERE queue = ? AND state = 'delayed' AND run_at <= ?
    ORDER BY run_at, rowid
"""
_LAPSED: Final = f"""
    SELECT rowid, id, stalled_count, attempts_made, processed_at, {DUE_AT},
        parent_queue, parent_id, parent_ignore_failure
    FROM jobs
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
    if outcomes:
        looked = store.run(
            lambda conn: _settle(conn, queue, outcomes, claim, lock_ms, worker_id, now_ms),
            write=True,
            queue=queue,
        )
    else:
        # Idle workers wake on every commit to the file and most find nothing to do: a
        # lazy write answers that without queueing for the write lock, and claims what
        # it finds in the same transaction, the first step of a job's start.
        looked = store.run(
            lambda conn: _look(conn, queue, claim, now_ms)
            or _settle(conn, queue, outcomes, claim, lock_ms, worker_id, now_ms),
            write=True,
            queue=queue,
            lazy=True,
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
    row = queue_row(conn, queue)
    next_due = conn.execute(_NEXT_DUE, (queue,)).fetchone()[0]
    if next_due is not None and next_due <= now:
        return None
    held = row.hold_until if row.hold_until > now else None
    if claim > 0 and not row.paused and held is None:
        # Exactly the test `claim_jobs` applies, so a look never misses claimable work,
        # and never sends a worker to the write lock to claim nothing.
        if not row.limited:
            if any_waiting(conn, queue):
                return None
        else:
            can, held = claimable(conn, queue, row.limits, now)
            if can:
                return None
    next_tick, due = ticks(conn, queue, now)
    result = SettleResult([], [], now, _earliest(next_due, next_tick), held, due)
    return result, data_version(conn)


def _earliest(first: int | None, second: int | None) -> int | None:
    """The earlier of two times, either of which may be missing."""
    if first is None or second is None:
        return second if first is None else first
    return min(first, second)


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
    row = queue_row(conn, queue)
    hold_until = row.hold_until
    events = Recorder(row.events)
    batch = _Batch(conn, queue, now, row.flow_children)
    refused: list[str] = []
    hold = hold_until
    for outcome in outcomes:
        if not batch.apply(outcome):
            refused.append(outcome.job_id)
        elif isinstance(outcome, Release) and outcome.hold_ms > 0:
            hold = max(hold, now + outcome.hold_ms)
    batch.record(events)
    if hold > hold_until:
        conn.execute("UPDATE queues SET hold_until = ? WHERE name = ?", (hold, queue))
        hold_until = hold
    next_due = _promote_due(conn, queue, now, events)
    claimed: list[Claimed] = []
    held = hold_until if hold_until > now else None
    if claim > 0 and not row.paused and held is None:
        claimed, held = claim_jobs(conn, queue, row, claim, now, now + lock_ms, worker_id)
        if claimed and events.all:
            worker = encode({"worker": worker_id})
            for job in claimed:
                events.detail("active", job.record.id, worker)
    events.write(conn, queue, now)
    # Ticks are reported even while the queue is paused or held: their jobs wait there.
    next_tick, due = ticks(conn, queue, now)
    result = SettleResult(refused, claimed, now, _earliest(next_due, next_tick), held, due)
    # Read under the write lock: the exact version this look for work saw.
    return result, data_version(conn)


class _Batch:
    """Applies a settle's outcomes, then what follows from those applied: their metrics,
    their events and retention."""

    def __init__(self, conn: sqlite3.Connection, queue: str, now: int, flows: bool) -> None:
        self.conn = conn
        self.queue = queue
        self.now = now
        self.flows = flows
        """Whether the queue may hold children of flows, whose parents must hear of them."""
        self.finisher = Finisher(conn, queue, now)
        self.applied: list[Outcome] = []
        self.finished: list[str] = []
        """The jobs completed or failed."""
        self.counted: list[str] = []
        """The jobs failed or retried: their events tell the attempts made."""

    def apply(self, outcome: Outcome) -> bool:
        """Apply one outcome; False when the job is not held with its token."""
        # Plain UPDATEs checked by rowcount: RETURNING would double their cost.
        held = (self.queue, outcome.job_id, outcome.token)
        match outcome:
            case Complete():
                applied = self.conn.execute(
                    _COMPLETE, (self.now, outcome.return_value, *held)
                ).rowcount
                if applied:
                    self.finisher.finished("completed")
                    self.finished.append(outcome.job_id)
            case Fail():
                applied = self.conn.execute(
                    _FAIL, (self.now, outcome.reason, outcome.stacktrace, *held)
                ).rowcount
                if applied:
                    self.finisher.finished("failed")
                    self.finished.append(outcome.job_id)
                    self.counted.append(outcome.job_id)
            case RetryLater():
                due = self.now + max(0, outcome.delay_ms)
                applied = self.conn.execute(
                    _RETRY_LATER, (due, outcome.reason, outcome.stacktrace, *held)
                ).rowcount
                if applied:
                    self.counted.append(outcome.job_id)
            case Release():
                applied = self.conn.execute(_RELEASE, held).rowcount
        if applied:
            self.applied.append(outcome)
        return applied > 0

    def record(self, events: Recorder) -> None:
        """Add the finished jobs to the metrics, record the events of the outcomes applied,
        in order, move the parents of those that are children, then apply retention (which
        may remove the jobs just read)."""
        add_finished(self.conn, self.queue, self.now, self.finished)
        if events.on:
            self._events(events)
        if self.flows and self.finished:
            end_children(self.conn, self.queue, self.now, self.applied, events, self.finisher)
        self.finisher.apply()

    def _events(self, events: Recorder) -> None:
        attempts: dict[str, int] = {}
        if self.counted:
            ids = orjson.dumps(self.counted).decode()
            attempts = dict(self.conn.execute(_ATTEMPTS, (self.queue, ids)).fetchall())
        for outcome in self.applied:
            job_id = outcome.job_id
            match outcome:
                case Complete():
                    events.final("completed", job_id, embed("return_value", outcome.return_value))
                case Fail():
                    failed = {"reason": outcome.reason, "attempts_made": attempts[job_id]}
                    events.final("failed", job_id, encode(failed))
                case RetryLater():
                    delay = max(0, outcome.delay_ms)
                    retrying = {
                        "reason": outcome.reason,
                        "delay_ms": delay,
                        "attempts_made": attempts[job_id],
                    }
                    events.final("retrying", job_id, encode(retrying))
                    if delay > 0:  # else its promotion, in this settle, records it waiting
                        events.detail("delayed", job_id, encode({"run_at": self.now + delay}))
                case Release():
                    events.detail("waiting", job_id)


def _promote_due(conn: sqlite3.Connection, queue: str, now: int, events: Recorder) -> int | None:
    """Move due delayed jobs to waiting; return when the next delayed job falls due."""
    first = conn.execute(_NEXT_DUE, (queue,)).fetchone()[0]
    if first is None or first > now:
        return None if first is None else int(first)
    due = conn.execute(_DUE, (queue, now)).fetchall()
    to_waiting(conn, queue, [(rowid, lifo) for rowid, lifo, _ in due])
    for _, _, job_id in due:
        events.detail("waiting", job_id)
    following = conn.execute(_NEXT_DUE, (queue,)).fetchone()[0]
    return None if following is None else int(following)


@write
def recover_stalled(
    conn: sqlite3.Connection, queue: str, max_stalled_count: int, now_ms: int | None
) -> RecoverResult:
    """Hand back active jobs whose lock lapsed; fail those stalled too often (they count
    as failed in the metrics, and move their parents as settle's failures do). Each
    records `stalled`; those failed, `failed` too."""
    now = resolve_now(now_ms)
    result = RecoverResult()
    finisher = Finisher(conn, queue, now)
    events = recorder(conn, queue)
    tally = Tally(now)
    back: list[tuple[int]] = []
    out: list[tuple[int, str, int]] = []
    children: list[tuple[str, ParentRef]] = []
    lapsed = conn.execute(_LAPSED, (queue, now)).fetchall()
    for rowid, job_id, stalled, attempts, processed_at, due_at, *parent in lapsed:
        if events.on:
            events.final("stalled", job_id, encode({"stalled_count": stalled + 1}))
        if stalled + 1 > max_stalled_count:
            out.append((now, STALLED_REASON, rowid))
            result.failed.append(job_id)
            finisher.finished("failed")
            tally.finished(False, processed_at, due_at)
            if events.on:
                reason = {"reason": STALLED_REASON, "attempts_made": attempts}
                events.final("failed", job_id, encode(reason))
            if parent[0] is not None:
                children.append((job_id, ParentRef(parent[0], parent[1], bool(parent[2]))))
        else:
            back.append((rowid,))
            result.recovered.append(job_id)
            events.detail("waiting", job_id)
    conn.executemany(_STALLED_BACK, back)
    conn.executemany(_STALLED_OUT, out)
    if children:
        cascade = Cascade(conn, queue, now, events, finisher)
        for job_id, parent_ref in children:
            cascade.failed(queue, job_id, parent_ref, STALLED_REASON)
        cascade.close()
    finisher.apply()
    tally.write(conn, queue)
    events.write(conn, queue, now)
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
