"""Claiming under the queue's stored limits: concurrency, sliding-window rate limits and
fair groups.

The limits live in the queue's row and are read inside the claiming transaction, so
every worker of every process obeys the latest ones. Order of claims: lowest priority
first; within a priority, round-robin between groups (ungrouped jobs form the group
`''`); within a group, FIFO (LIFO jobs first).

Round-robin works with a per-queue counter, `queues.group_turn`: each job claimed by a
choice between groups takes the next value as its group's `served` (`job_groups`), and
the next choice goes to the group served longest ago; a group never served counts as
served at 0. A group keeps its place while it has no waiting jobs, so one that adds a
job whenever its last one starts cannot jump the queue; only rows older than every
waiting group's are dropped, which changes no order.

While one group alone has waiting jobs there is nothing to choose, and the plain bulk
claim (one `UPDATE ... RETURNING`) takes them, so ungrouped throughput is that of a
queue without groups.

Job starts are recorded (`job_starts`) only while a rate limit is set; the window of a
start taken at `at` covers `now` while `at > now - per`.
"""

from __future__ import annotations

import heapq
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from corral.backends.base import Claimed, Limits
from corral.backends.sqlite.rows import JOB_COLUMNS, WAITING_PARTS, to_record

UNGROUPED: Final = ""
"""The key of the group of jobs added without one."""

_QUEUE_ROW: Final = """
    SELECT paused, hold_until, rate_limit, rate_per_ms, concurrency,
        group_rate_limit, group_rate_per_ms, group_concurrency, group_turn, events,
        flow_children
    FROM queues WHERE name = ?
"""
_SET_LIMITS: Final = """
    UPDATE queues SET rate_limit = ?, rate_per_ms = ?, concurrency = ?,
        group_rate_limit = ?, group_rate_per_ms = ?, group_concurrency = ?, events = ?
    WHERE name = ?
"""
_CLAIM: Final = {
    # Taken at once when all waiting jobs are of one group: that group's part of the
    # waiting index has them in claim order. Ungrouped jobs are taken so only while no
    # grouped job waits (the guard runs once per statement).
    grouped: f"""
        UPDATE jobs SET state = 'active', lock_token = ?1 || printf('%x', rowid),
            lock_until = ?2, processed_at = ?3, worker_id = ?4
        WHERE rowid IN (
            SELECT rowid FROM jobs WHERE queue = ?5 AND {part} AND {guard}
            ORDER BY priority, seq LIMIT ?6
        )
        RETURNING seq, {JOB_COLUMNS}
    """
    for grouped, part, guard in (
        (
            False,
            WAITING_PARTS[0],
            f"NOT EXISTS (SELECT 1 FROM jobs WHERE queue = ?5 AND {WAITING_PARTS[1]})",
        ),
        (True, WAITING_PARTS[1], "grp = ?7"),
    )
}
_CLAIM_ONE: Final = f"""
    UPDATE jobs SET state = 'active', lock_token = ?1 || printf('%x', rowid), lock_until = ?2,
        processed_at = ?3, worker_id = ?4
    WHERE rowid = ?5
    RETURNING {JOB_COLUMNS}
"""
_ANY_WAITING: Final = "SELECT 1 FROM jobs WHERE queue = ? AND state = 'waiting' LIMIT 1"
# Whether ungrouped jobs wait, and the lowest and highest group with waiting jobs.
_WAITING_GROUPS: Final = f"""
    SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = ?1 AND {WAITING_PARTS[0]}),
        (SELECT grp FROM jobs WHERE queue = ?1 AND {WAITING_PARTS[1]} ORDER BY grp LIMIT 1),
        (SELECT grp FROM jobs WHERE queue = ?1 AND {WAITING_PARTS[1]} ORDER BY grp DESC LIMIT 1)
"""
# Every group with waiting jobs, by one index seek each, with its head's priority and
# when it was last served.
_GROUPS: Final = f"""
    WITH RECURSIVE g(name) AS (
        SELECT (SELECT grp FROM jobs WHERE queue = ?1 AND {WAITING_PARTS[1]}
                ORDER BY grp LIMIT 1)
        UNION ALL
        SELECT (SELECT grp FROM jobs WHERE queue = ?1 AND {WAITING_PARTS[1]}
                AND grp > g.name ORDER BY grp LIMIT 1)
        FROM g WHERE g.name IS NOT NULL
    )
    SELECT g.name,
        (SELECT min(priority) FROM jobs WHERE queue = ?1 AND {WAITING_PARTS[1]}
            AND grp = g.name),
        coalesce(s.served, 0)
    FROM g LEFT JOIN job_groups s ON s.queue = ?1 AND s.grp = g.name
    WHERE g.name IS NOT NULL
"""
_UNGROUPED_HEAD: Final = (
    f"SELECT min(priority) FROM jobs WHERE queue = ? AND {WAITING_PARTS[0]}"
)
_SERVED: Final = "SELECT served FROM job_groups WHERE queue = ? AND grp = ?"
_HEADS: Final = {
    grouped: f"""
        SELECT rowid, priority FROM jobs
        WHERE queue = ?1 AND {part}{" AND grp = ?2" if grouped else ""}
        ORDER BY priority, seq LIMIT 2
    """
    for grouped, part in zip((False, True), WAITING_PARTS, strict=True)
}
_ACTIVE: Final = "SELECT count(*) FROM jobs WHERE queue = ? AND state = 'active'"
_ACTIVE_BY_GROUP: Final = """
    SELECT coalesce(grp, ''), count(*) FROM jobs WHERE queue = ? AND state = 'active'
    GROUP BY 1
"""
_STARTS: Final = "SELECT count(*) FROM job_starts WHERE queue = ? AND at > ?"
_STARTS_BY_GROUP: Final = (
    "SELECT grp, count(*) FROM job_starts WHERE queue = ? AND at > ? GROUP BY grp"
)
_NTH_START: Final = """
    SELECT at FROM job_starts WHERE queue = ? AND at > ? ORDER BY at LIMIT 1 OFFSET ?
"""
_NTH_START_IN_GROUP: Final = """
    SELECT at FROM job_starts WHERE queue = ? AND grp = ? AND at > ?
    ORDER BY at LIMIT 1 OFFSET ?
"""
_RECORD_START: Final = "INSERT INTO job_starts (queue, grp, at) VALUES (?, ?, ?)"
_FORGET_STARTS: Final = "DELETE FROM job_starts WHERE queue = ? AND at <= ?"
_SET_TURN: Final = "UPDATE queues SET group_turn = ? WHERE name = ?"
_SET_SERVED: Final = """
    INSERT INTO job_groups (queue, grp, served) VALUES (?, ?, ?)
    ON CONFLICT (queue, grp) DO UPDATE SET served = excluded.served
"""
_FORGET_SERVED: Final = "DELETE FROM job_groups WHERE queue = ? AND served < ?"
_NO_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class QueueRow:
    """What claiming needs from the queue's row."""

    paused: bool = False
    hold_until: int = 0
    limits: Limits = _NO_LIMITS
    turn: int = 0
    """The last value of the round-robin counter handed to a group."""
    events: str = "final"
    """Which events the queue's transitions record (see `events`)."""
    flow_children: bool = False
    """Whether a flow ever put a child in the queue (see `flows`)."""

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.limits != _NO_LIMITS


def queue_row(conn: sqlite3.Connection, queue: str) -> QueueRow:
    """The queue's flags and limits (defaults when the queue has no row yet)."""
    row = conn.execute(_QUEUE_ROW, (queue,)).fetchone()
    if row is None:
        return QueueRow()
    limits = Limits(
        rate_limit=row[2], rate_per_ms=row[3], concurrency=row[4],
        group_rate_limit=row[5], group_rate_per_ms=row[6], group_concurrency=row[7],
    )
    return QueueRow(bool(row[0]), int(row[1]), limits, int(row[8]), str(row[9]), bool(row[10]))


def store_limits(conn: sqlite3.Connection, queue: str, limits: Limits) -> None:
    """Store the limits (and the event level) in the queue's existing row; forget job
    starts no rate limit needs."""
    conn.execute(
        _SET_LIMITS,
        (
            limits.rate_limit, limits.rate_per_ms, limits.concurrency,
            limits.group_rate_limit, limits.group_rate_per_ms, limits.group_concurrency,
            limits.events, queue,
        ),
    )
    if not _counts_starts(limits):
        conn.execute("DELETE FROM job_starts WHERE queue = ?", (queue,))


# -- the rules ----------------------------------------------------------------------------


def _rate(limit: int | None, per_ms: int | None) -> tuple[int, int] | None:
    """A rate limit (limit, per_ms) when both parts are set, else None."""
    if limit is None or per_ms is None or per_ms <= 0:
        return None
    return limit, per_ms


def _counts_starts(limits: Limits) -> bool:
    return (
        _rate(limits.rate_limit, limits.rate_per_ms) is not None
        or _rate(limits.group_rate_limit, limits.group_rate_per_ms) is not None
    )


def _has_group_limits(limits: Limits) -> bool:
    return limits.group_concurrency is not None or (
        _rate(limits.group_rate_limit, limits.group_rate_per_ms) is not None
    )


@dataclass(slots=True)
class _Group:
    """A group with waiting jobs, as the claim sees it."""

    key: str
    head: int | None
    """The priority of its next waiting job (None: none left)."""
    served: int
    active: int = 0
    started: int = 0
    """Its job starts in the group rate window."""

    @property
    def grp(self) -> str | None:
        """The value of the jobs' `grp` column."""
        return None if self.key == UNGROUPED else self.key

    def order(self) -> tuple[int, int, str]:
        """Claim order between groups: head priority, then served longest ago, then name."""
        assert self.head is not None
        return (self.head, self.served, self.key)


class _Rules:
    """The limits as they stand at `now`: what may start, and when it next may."""

    def __init__(self, conn: sqlite3.Connection, queue: str, limits: Limits, now: int) -> None:
        self.conn = conn
        self.queue = queue
        self.limits = limits
        self.now = now
        self.rate = _rate(limits.rate_limit, limits.rate_per_ms)
        self.group_rate = _rate(limits.group_rate_limit, limits.group_rate_per_ms)
        self.group_limited = _has_group_limits(limits)

    def queue_room(self) -> tuple[int | None, int | None]:
        """How many jobs the queue-wide limits let start now (None: any number) and, when
        the rate limit lets none, when it next lets one."""
        room: int | None = None
        if self.limits.concurrency is not None:
            active = self.conn.execute(_ACTIVE, (self.queue,)).fetchone()[0]
            room = self.limits.concurrency - int(active)
        if self.rate is not None:
            limit, per = self.rate
            started = int(self.conn.execute(_STARTS, (self.queue, self.now - per)).fetchone()[0])
            if started >= limit:
                return 0, self._frees(None, limit, per, started)
            room = limit - started if room is None else min(room, limit - started)
        return room, None

    def group_room(self, group: _Group) -> int | None:
        """How many more jobs of `group` may start now (None: any number)."""
        room: int | None = None
        if self.limits.group_concurrency is not None:
            room = self.limits.group_concurrency - group.active
        if self.group_rate is not None:
            left = self.group_rate[0] - group.started
            room = left if room is None else min(room, left)
        return room

    def eligible(self, group: _Group) -> bool:
        """Whether `group` has a waiting job that its limits let start now."""
        room = self.group_room(group)
        return group.head is not None and (room is None or room > 0)

    def group_frees(self, groups: Sequence[_Group]) -> int | None:
        """When the group rate limit next lets one of these (all held back) groups start a
        job; None when each is also at its concurrency, or no rate holds them."""
        if self.group_rate is None:
            return None
        limit, per = self.group_rate
        times = [
            self._frees(group.key, limit, per, group.started)
            for group in groups
            if group.started >= limit
            and (self.limits.group_concurrency is None
                 or group.active < self.limits.group_concurrency)
        ]
        return min((t for t in times if t is not None), default=None)

    def count_groups(self, groups: dict[str, _Group]) -> None:
        """Read the active jobs and window starts of every group, in one query each."""
        if self.limits.group_concurrency is not None:
            for key, count in self.conn.execute(_ACTIVE_BY_GROUP, (self.queue,)):
                if key in groups:
                    groups[key].active = int(count)
        if self.group_rate is not None:
            since = self.now - self.group_rate[1]
            for key, count in self.conn.execute(_STARTS_BY_GROUP, (self.queue, since)):
                if key in groups:
                    groups[key].started = int(count)

    def _frees(self, key: str | None, limit: int, per: int, started: int) -> int | None:
        """When the window of `per` ms next holds fewer than `limit` starts (of group `key`,
        or of the whole queue): when its (started - limit + 1)-th oldest start leaves it."""
        since = self.now - per
        offset = max(0, started - limit)
        if key is None:
            row = self.conn.execute(_NTH_START, (self.queue, since, offset)).fetchone()
        else:
            params = (self.queue, key, since, offset)
            row = self.conn.execute(_NTH_START_IN_GROUP, params).fetchone()
        return None if row is None else int(row[0]) + per


def any_waiting(conn: sqlite3.Connection, queue: str) -> bool:
    """Whether any job of the queue is waiting."""
    return conn.execute(_ANY_WAITING, (queue,)).fetchone() is not None


def _waiting(conn: sqlite3.Connection, queue: str) -> tuple[bool, _Group | None]:
    """Whether any job is waiting and, when all waiting jobs share a group, that group."""
    ungrouped, first, last = conn.execute(_WAITING_GROUPS, (queue,)).fetchone()
    if first is None:
        return bool(ungrouped), _Group(UNGROUPED, 0, 0) if ungrouped else None
    if ungrouped or first != last:
        return True, None
    return True, _Group(str(first), 0, 0)


def _waiting_groups(conn: sqlite3.Connection, queue: str) -> dict[str, _Group]:
    """Every group with waiting jobs, by key."""
    groups = {
        str(name): _Group(str(name), int(head), int(served))
        for name, head, served in conn.execute(_GROUPS, (queue,))
    }
    head = conn.execute(_UNGROUPED_HEAD, (queue,)).fetchone()[0]
    if head is not None:
        row = conn.execute(_SERVED, (queue, UNGROUPED)).fetchone()
        groups[UNGROUPED] = _Group(UNGROUPED, int(head), 0 if row is None else int(row[0]))
    return groups


# -- the transitions' parts ---------------------------------------------------------------


def claimable(
    conn: sqlite3.Connection, queue: str, limits: Limits, now: int
) -> tuple[bool, int | None]:
    """Whether `claim_jobs` would claim a job now and, when not, when a rate limit next
    lets one start (None: not by time alone). Reads only."""
    rules = _Rules(conn, queue, limits, now)
    waiting, alone = _waiting(conn, queue)
    if not waiting:
        return False, None
    room, hold = rules.queue_room()
    if room is not None and room <= 0:
        return False, hold
    if not rules.group_limited:
        return True, None
    groups = {alone.key: alone} if alone is not None else _waiting_groups(conn, queue)
    rules.count_groups(groups)
    if any(rules.eligible(group) for group in groups.values()):
        return True, None
    return False, rules.group_frees(list(groups.values()))


def claim_jobs(
    conn: sqlite3.Connection,
    queue: str,
    row: QueueRow,
    limit: int,
    now: int,
    lock_until: int,
    worker_id: str,
) -> tuple[list[Claimed], int | None]:
    """Claim up to `limit` waiting jobs in order, within the queue's limits. Also returns,
    when the rate limits held back every waiting job, when they next let one start."""
    # The nonce, fresh from the OS per call, keeps tokens unique across processes and
    # forks; the rowid keeps them unique within the call.
    nonce = secrets.token_hex(12) + "-"
    rules = _Rules(conn, queue, row.limits, now)
    room: int | None = None
    if row.limited:
        room, hold = rules.queue_room()
        if room is not None and room <= 0:
            return [], hold if hold is not None and any_waiting(conn, queue) else None
    count = limit if room is None else min(limit, room)
    lock = (nonce, lock_until, now, worker_id)
    if not rules.group_limited:
        # The common case first: only ungrouped jobs wait. One statement claims them.
        claimed = _claim_in_order(conn, queue, None, count, lock)
        if claimed:
            if _counts_starts(row.limits):
                _record_starts(conn, queue, row.limits, claimed, now)
            return claimed, None
    waiting, alone = _waiting(conn, queue)
    if not waiting:
        return [], None
    if alone is None:
        claimed, hold = _claim_round_robin(conn, queue, rules, row.turn, count, lock)
        if not claimed:
            return [], hold
    else:
        if rules.group_limited:
            rules.count_groups({alone.key: alone})
            group_room = rules.group_room(alone)
            if group_room is not None and group_room <= 0:
                return [], rules.group_frees([alone])
            count = count if group_room is None else min(count, group_room)
        claimed = _claim_in_order(conn, queue, alone.grp, count, lock)
    if _counts_starts(row.limits):
        _record_starts(conn, queue, row.limits, claimed, now)
    return claimed, None


def _claim_in_order(
    conn: sqlite3.Connection,
    queue: str,
    grp: str | None,
    count: int,
    lock: tuple[str, int, int, str],
) -> list[Claimed]:
    """Claim the first `count` waiting jobs of group `grp` at once, where it is the only
    group with waiting jobs (for ungrouped jobs the statement checks that itself)."""
    params: tuple[Any, ...] = (*lock, queue, count)
    if grp is not None:
        params += (grp,)
    rows = conn.execute(_CLAIM[grp is not None], params).fetchall()
    rows.sort(key=lambda r: (r[6], r[0]))  # RETURNING order is unspecified
    return [Claimed(to_record(r[1:]), r[-1]) for r in rows]


def _claim_round_robin(
    conn: sqlite3.Connection,
    queue: str,
    rules: _Rules,
    turn: int,
    count: int,
    lock: tuple[str, int, int, str],
) -> tuple[list[Claimed], int | None]:
    """Claim up to `count` jobs one at a time, each from the eligible group first in order."""
    groups = _waiting_groups(conn, queue)
    rules.count_groups(groups)
    ready = [(group.order(), group) for group in groups.values() if rules.eligible(group)]
    if not ready:
        return [], rules.group_frees(list(groups.values()))
    heapq.heapify(ready)
    # Groups served before every waiting group rank first whenever they come back, as
    # they would without a row: their rows can go.
    floor = min(group.served for group in groups.values())
    claimed: list[Claimed] = []
    served: dict[str, int] = {}
    while ready and len(claimed) < count:
        _, group = heapq.heappop(ready)
        params = (queue,) if group.grp is None else (queue, group.grp)
        heads = conn.execute(_HEADS[group.grp is not None], params).fetchall()
        row: Any = conn.execute(_CLAIM_ONE, (*lock, heads[0][0])).fetchone()
        claimed.append(Claimed(to_record(row), row[-1]))
        turn += 1
        group.served, group.active, group.started = turn, group.active + 1, group.started + 1
        group.head = int(heads[1][1]) if len(heads) > 1 else None
        served[group.key] = turn
        if rules.eligible(group):
            heapq.heappush(ready, (group.order(), group))
    conn.executemany(_SET_SERVED, [(queue, key, value) for key, value in served.items()])
    conn.execute(_FORGET_SERVED, (queue, floor))
    conn.execute(_SET_TURN, (turn, queue))
    return claimed, None


def _record_starts(
    conn: sqlite3.Connection, queue: str, limits: Limits, claimed: list[Claimed], now: int
) -> None:
    """Record one start per claimed job; forget starts older than every window."""
    conn.executemany(
        _RECORD_START,
        [(queue, c.record.group or UNGROUPED, now) for c in claimed],
    )
    windows = [
        rate[1]
        for rate in (
            _rate(limits.rate_limit, limits.rate_per_ms),
            _rate(limits.group_rate_limit, limits.group_rate_per_ms),
        )
        if rate is not None
    ]
    conn.execute(_FORGET_STARTS, (queue, now - max(windows)))
