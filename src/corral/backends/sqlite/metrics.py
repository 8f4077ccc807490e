"""Per-minute metrics of finished jobs: counts, processing and wait times.

The transitions that finish jobs add them to the minute of their time with one upsert:
`settle` (completions and failures) has SQLite add up the rows of the jobs it finished
(`add_finished`), `recover_stalled` (jobs failed by stalls) adds up the rows it read
anyway in a `Tally`. Rows older than `KEEP_MS` go when a minute's row
is first written, by one seek on the primary key.

Processing time is from the attempt's start (`processed_at`) to its end; wait time from
when the job fell due (its `run_at`, else when it was added; never before it was added) to
the attempt's start.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import orjson

from corral.backends.base import MinuteMetrics
from corral.backends.sqlite.store import read

MINUTE_MS: Final = 60_000
KEEP_MS: Final = 8 * 86_400_000
"""Minutes older than this (from the time of the latest write) are dropped."""

DUE_AT: Final = "max(created_at, coalesce(run_at, created_at))"
"""SQL: when a job fell due, for its wait time."""

_COLUMNS: Final = """
    queue, minute, completed, failed, processing_ms_total, processing_ms_max,
    wait_ms_total, wait_ms_max
"""
_ADD: Final = """
    ON CONFLICT (queue, minute) DO UPDATE SET
        completed = completed + excluded.completed,
        failed = failed + excluded.failed,
        processing_ms_total = processing_ms_total + excluded.processing_ms_total,
        processing_ms_max = max(processing_ms_max, excluded.processing_ms_max),
        wait_ms_total = wait_ms_total + excluded.wait_ms_total,
        wait_ms_max = max(wait_ms_max, excluded.wait_ms_max)
    RETURNING completed + failed
"""
_UPSERT: Final = f"INSERT INTO metrics ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) {_ADD}"
# The same, added up by SQLite from the rows of jobs just finished (?3: their ids, as a
# JSON array; ?4: now), so that a settle passes no row to Python for its metrics.
# `WHERE true` tells the parser that ON CONFLICT starts the upsert.
_UPSERT_FINISHED: Final = f"""
    INSERT INTO metrics ({_COLUMNS})
    SELECT ?1, ?2, sum(state = 'completed'), sum(state = 'failed'),
        coalesce(sum(max(0, ?4 - processed_at)), 0),
        coalesce(max(max(0, ?4 - processed_at)), 0),
        coalesce(sum(max(0, processed_at - {DUE_AT})), 0),
        coalesce(max(max(0, processed_at - {DUE_AT})), 0)
    FROM jobs WHERE queue = ?1 AND id IN (SELECT value FROM json_each(?3)) AND true
    {_ADD}
"""
_TRIM: Final = "DELETE FROM metrics WHERE queue = ? AND minute < ?"
_READ: Final = """
    SELECT minute, completed, failed, processing_ms_total, processing_ms_max,
        wait_ms_total, wait_ms_max
    FROM metrics WHERE queue = ? AND minute >= ? AND minute <= ? ORDER BY minute
"""


def minute_of(ms: int) -> int:
    """The start of the minute holding `ms`."""
    return ms - ms % MINUTE_MS


class Tally:
    """The jobs one transition finished at `now`, added up for the minute of `now`."""

    __slots__ = (
        "completed",
        "failed",
        "now",
        "processing_max",
        "processing_total",
        "wait_max",
        "wait_total",
    )

    def __init__(self, now: int) -> None:
        self.now = now
        self.completed = 0
        self.failed = 0
        self.processing_total = 0
        self.processing_max = 0
        self.wait_total = 0
        self.wait_max = 0

    def finished(self, completed: bool, processed_at: int | None, due_at: int | None) -> None:
        """Count a job that finished now, started at `processed_at`, due at `due_at`."""
        if completed:
            self.completed += 1
        else:
            self.failed += 1
        if processed_at is None:
            return
        processing = max(0, self.now - processed_at)
        self.processing_total += processing
        self.processing_max = max(self.processing_max, processing)
        if due_at is not None:
            wait = max(0, processed_at - due_at)
            self.wait_total += wait
            self.wait_max = max(self.wait_max, wait)

    def write(self, conn: sqlite3.Connection, queue: str) -> None:
        """Add the tally to its minute's row; on a minute's first write, drop old minutes."""
        finished = self.completed + self.failed
        if not finished:
            return
        params = (
            queue, minute_of(self.now), self.completed, self.failed,
            self.processing_total, self.processing_max, self.wait_total, self.wait_max,
        )
        _trim(conn, queue, self.now, conn.execute(_UPSERT, params).fetchone()[0], finished)


def add_finished(conn: sqlite3.Connection, queue: str, now: int, job_ids: list[str]) -> None:
    """Add the jobs just moved to completed or failed at `now` (distinct ids, before
    retention removes any) to the minute of `now`, added up by SQLite in one upsert."""
    if not job_ids:
        return
    params = (queue, minute_of(now), orjson.dumps(job_ids).decode(), now)
    _trim(conn, queue, now, conn.execute(_UPSERT_FINISHED, params).fetchone()[0], len(job_ids))


def _trim(conn: sqlite3.Connection, queue: str, now: int, total: int, added: int) -> None:
    """After an upsert that left `total` jobs in the minute, `added` of them just now: when
    the row is new (a minute began), drop the minutes older than `KEEP_MS`."""
    if int(total) == added:
        conn.execute(_TRIM, (queue, minute_of(now) - KEEP_MS))


@read
def minute_metrics(
    conn: sqlite3.Connection, queue: str, since_ms: int, until_ms: int
) -> list[MinuteMetrics]:
    """The minutes starting within [since_ms, until_ms] in which jobs finished, oldest first."""
    return [
        MinuteMetrics(
            minute=row[0], completed=row[1], failed=row[2], processing_ms_total=row[3],
            processing_ms_max=row[4], wait_ms_total=row[5], wait_ms_max=row[6],
        )
        for row in conn.execute(_READ, (queue, since_ms, until_ms))
    ]
