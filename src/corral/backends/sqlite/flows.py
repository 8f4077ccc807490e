"""Flows: adding a parent with its children (in any queues) in one transaction, reading a
parent's child records, and what a child's end does to its parent.

A child's row names its parent (`parent_queue`, `parent_id`); a parent's row counts the
children it still waits for (`pending_children`), and `job_children` holds one record per
child in the flow's order. Every transition that ends a child ends its record there once
(`rows.end_child`) and, when the record was still pending, moves the parent: its count
drops (`rows.drop_pending`, which sets it going at none), or a failure not ignored fails
it and goes on up a nested flow (`Cascade`). Removals do the same from `rows.purge`.

Settling reads the parents of the jobs it finished only in queues where a flow ever put
a child (`queues.flow_children`), in one query, so queues without flows pay nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Final

import orjson

from corral.backends.base import (
    AddResult,
    ChildRecord,
    Complete,
    Fail,
    FlowJob,
    JobRecord,
    Outcome,
    ParentRef,
)
from corral.backends.sqlite.events import Recorder, encode, recorder
from corral.backends.sqlite.jobs import insert_jobs
from corral.backends.sqlite.metrics import Tally
from corral.backends.sqlite.rows import Finisher, drop_pending, end_child, fetch_job
from corral.backends.sqlite.store import Store, read, resolve_now, touch
from corral.errors import InvalidOptionError

_ADD_CHILD: Final = """
    INSERT INTO job_children (parent_queue, parent_id, position, child_queue, child_id)
    VALUES (?, ?, ?, ?, ?)
"""
_MARK_QUEUE: Final = "UPDATE queues SET flow_children = 1 WHERE name = ? AND flow_children = 0"
_CHILDREN: Final = """
    SELECT child_queue, child_id, state, return_value, failed_reason FROM job_children
    WHERE parent_queue = ? AND parent_id = ? ORDER BY position
"""
# The parents of jobs just finished (?2: their ids, as a JSON array).
_PARENTS: Final = """
    SELECT id, parent_queue, parent_id, parent_ignore_failure FROM jobs
    WHERE queue = ?1 AND id IN (SELECT value FROM json_each(?2)) AND parent_id IS NOT NULL
"""
_FAIL_PARENT: Final = """
    UPDATE jobs SET state = 'failed', finished_at = ?, failed_reason = ?
    WHERE queue = ? AND id = ? AND state = 'waiting-children'
    RETURNING attempts_made, parent_queue, parent_id, parent_ignore_failure
"""


def add_flow(
    store: Store, jobs: Sequence[FlowJob], config_versions: Mapping[str, int], now_ms: int | None
) -> AddResult:
    """Write a flow in one transaction (see `Backend.add_flow`), waking every queue it
    put jobs in."""
    _check_shape(jobs)
    return store.run(lambda conn: _add_flow(conn, jobs, config_versions, now_ms), write=True)


def _add_flow(
    conn: sqlite3.Connection,
    jobs: Sequence[FlowJob],
    config_versions: Mapping[str, int],
    now_ms: int | None,
) -> AddResult:
    now = resolve_now(now_ms)
    queues = list(dict.fromkeys(flow_job.queue for flow_job in jobs))
    for queue in queues:
        row = conn.execute("SELECT config_version FROM queues WHERE name = ?", (queue,))
        stored = row.fetchone()
        if (0 if stored is None else stored[0]) != config_versions.get(queue, 0):
            return AddResult([], now, stale_config=True)
    root = jobs[0]
    existing = fetch_job(conn, root.queue, root.job.id)
    if existing is not None:
        return AddResult([(existing, False)], now)
    records: dict[int, JobRecord] = {}
    for queue in queues:
        # Each queue's jobs as `add` adds them, in the flow's order.
        places = [i for i, flow_job in enumerate(jobs) if flow_job.queue == queue]
        added = insert_jobs(conn, queue, [jobs[i].job for i in places], now)
        for i, (record, created) in zip(places, added, strict=True):
            if not created:
                # Raised inside the transaction: nothing of the flow is written.
                raise InvalidOptionError(_taken(jobs[i], record))
            records[i] = record
        touch(conn, queue, work=True)
    children = [
        (job.parent.queue, job.parent.id, i, queue, job.id)
        for i, (queue, job) in enumerate((flow_job.queue, flow_job.job) for flow_job in jobs)
        if job.parent is not None
    ]
    conn.executemany(_ADD_CHILD, children)
    conn.executemany(_MARK_QUEUE, [(queue,) for queue in {row[3] for row in children}])
    return AddResult([(records[i], True) for i in range(len(jobs))], now)


def _taken(flow_job: FlowJob, stored: JobRecord) -> str:
    """Why a job of a flow could not be added: its id, or its dedupe key, is taken."""
    where = f"job {flow_job.job.id!r} of the flow (queue {flow_job.queue!r})"
    if stored.id != flow_job.job.id:
        return f"{where} is a duplicate of job {stored.id!r} by its dedupe key"
    return f"{where}: that id is already stored in queue {flow_job.queue!r}"


def _check_shape(jobs: Sequence[FlowJob]) -> None:
    """Refuse a flow whose parents do not come before their children, or whose parents
    wait for another number of children than it gives them."""
    if not jobs:
        raise InvalidOptionError("a flow needs at least its root job")
    seen: dict[tuple[str, str], int] = {}
    for flow_job in jobs:
        key = (flow_job.queue, flow_job.job.id)
        if key in seen:
            raise InvalidOptionError(f"job {key[1]!r} of queue {key[0]!r} is twice in the flow")
        parent = flow_job.job.parent
        if parent is not None:
            if (parent.queue, parent.id) not in seen:
                raise InvalidOptionError(
                    f"job {key[1]!r} of the flow names parent {parent.queue}:{parent.id}, "
                    "which does not come before it"
                )
            seen[parent.queue, parent.id] += 1
        seen[key] = 0
    for flow_job in jobs:
        given = seen[flow_job.queue, flow_job.job.id]
        if given != flow_job.job.children:
            raise InvalidOptionError(
                f"job {flow_job.job.id!r} of the flow waits for {flow_job.job.children} "
                f"children but has {given}"
            )


@read
def dependencies(conn: sqlite3.Connection, queue: str, job_id: str) -> list[ChildRecord] | None:
    """A parent's children in the order they were added (None: no such job)."""
    if conn.execute("SELECT 1 FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)).fetchone():
        return [
            ChildRecord(queue=row[0], id=row[1], state=row[2], return_value=row[3],
                        failed_reason=row[4])
            for row in conn.execute(_CHILDREN, (queue, job_id))
        ]
    return None


def end_children(
    conn: sqlite3.Connection,
    queue: str,
    now: int,
    outcomes: Sequence[Outcome],
    events: Recorder,
    finisher: Finisher,
) -> None:
    """After a settle applied `outcomes` (completed and failed jobs of `queue`), end the
    records of those that are children and move their parents, in one query for the
    jobs without a parent. Parents in `queue` use the settle's `events` and `finisher`."""
    ended = {o.job_id: o for o in outcomes if isinstance(o, Complete | Fail)}
    if not ended:
        return
    rows = conn.execute(_PARENTS, (queue, orjson.dumps(list(ended)).decode())).fetchall()
    if not rows:
        return
    order = {job_id: i for i, job_id in enumerate(ended)}
    rows.sort(key=lambda row: order[row[0]])
    cascade = Cascade(conn, queue, now, events, finisher)
    for job_id, parent_queue, parent_id, ignore_failure in rows:
        parent = ParentRef(parent_queue, parent_id, bool(ignore_failure))
        match ended[job_id]:
            case Complete(return_value=value):
                cascade.completed(queue, job_id, parent, value)
            case Fail(reason=reason):
                cascade.failed(queue, job_id, parent, reason)
    cascade.close()


class Cascade:
    """What children ending in one transaction do to their parents, in any queue.

    Events, retention and metrics are kept per queue and written by `close`; the
    transition's own queue uses its own recorder and finisher, which it writes and
    applies itself after `close`, so that parents' events follow their children's.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        queue: str,
        now: int,
        events: Recorder,
        finisher: Finisher,
    ) -> None:
        self.conn = conn
        self.now = now
        self._own = queue
        self._events: dict[str, Recorder] = {queue: events}
        self._finishers: dict[str, Finisher] = {queue: finisher}
        self._tallies: dict[str, Tally] = {}

    def events(self, queue: str) -> Recorder:
        """The recorder of `queue`'s events in this transaction."""
        if queue not in self._events:
            self._events[queue] = recorder(self.conn, queue)
        return self._events[queue]

    def completed(self, queue: str, job_id: str, parent: ParentRef, value: str) -> None:
        """A child completed with `value`: its parent waits for one fewer."""
        if end_child(self.conn, queue, job_id, parent, "completed", value):
            drop_pending(self.conn, parent, self.now, self.events)

    def failed(self, queue: str, job_id: str, parent: ParentRef, reason: str) -> None:
        """A child failed for good: its parent waits for one fewer when it ignores that,
        else fails at once if still waiting for its children, and so on up the flow."""
        while end_child(self.conn, queue, job_id, parent, "failed", reason):
            if parent.ignore_failure:
                drop_pending(self.conn, parent, self.now, self.events)
                return
            reason = f"child {queue}:{job_id} failed: {reason}"
            row = self.conn.execute(
                _FAIL_PARENT, (self.now, reason, parent.queue, parent.id)
            ).fetchone()
            if row is None:
                return  # gone, or no longer waiting for its children: left alone
            attempts, grand_queue, grand_id, ignore_failure = row
            self._failed(parent, reason, attempts)
            if grand_queue is None:
                return
            queue, job_id = parent.queue, parent.id
            parent = ParentRef(grand_queue, grand_id, bool(ignore_failure))

    def _failed(self, parent: ParentRef, reason: str, attempts: int) -> None:
        """Count a parent just failed as any final failure: retention, metrics, event."""
        if parent.queue not in self._finishers:
            self._finishers[parent.queue] = Finisher(self.conn, parent.queue, self.now)
        self._finishers[parent.queue].finished("failed")
        self._tallies.setdefault(parent.queue, Tally(self.now)).finished(False, None, None)
        events = self.events(parent.queue)
        if events.on:
            failed = {"reason": reason, "attempts_made": attempts}
            events.final("failed", parent.id, encode(failed))

    def close(self) -> None:
        """Write the other queues' events, then apply their retention; add up every
        queue's failed parents in its metrics."""
        for queue, events in self._events.items():
            if queue != self._own and events.rows:
                events.write(self.conn, queue, self.now)
                touch(self.conn, queue, work=False)
        for queue, finisher in self._finishers.items():
            if queue != self._own:
                finisher.apply()
        for queue, tally in self._tallies.items():
            tally.write(self.conn, queue)
