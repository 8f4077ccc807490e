"""Schedules: upsert and versions, removal, listing, firing a tick as a compare-and-set,
due ticks reported by settle, the upgrade of an older file, and processes racing for ticks."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys

import pytest

from corral import clock
from corral.backends.base import Complete, Release, Retention, ScheduleRecord
from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite.schedules import DUE_LIMIT
from corral.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from corral.job_state import JobState
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, new_job
from tests.backends.sqlite.sqlite_support import finish_process, go, ready

SPEC = '{"every":60000}'
MINUTE = 60_000


async def schedule(backend: SqliteBackend, schedule_id: str = "s") -> ScheduleRecord:
    """The stored record of one schedule of queue `q`."""
    found = [s for s in await backend.list_schedules("q") if s.id == schedule_id]
    assert len(found) == 1
    return found[0]


async def tick(
    backend: SqliteBackend, version: int, due: int, next_run: int | None, job_id: str = ""
) -> bool:
    """Fire schedule `s` of queue `q` for the tick due at `due`."""
    job = new_job(job_id or f"s:{due}", run_at_ms=due)
    return await backend.fire_schedule("q", "s", version, due, next_run, job, T0)


async def settle_look(backend: SqliteBackend, now: int, claim_count: int = 5) -> tuple[
    list[str], int | None
]:
    """The ids of the due schedules and `next_due_ms` reported by an idle settle."""
    result = await backend.settle("q", [], claim_count, LOCK_MS, "w1", now)
    return [s.id for s in result.due_schedules], result.next_due_ms


# -- upsert, remove, list ----------------------------------------------------------------


async def test_upsert_creates_a_schedule_and_its_queue(backend: SqliteBackend) -> None:
    assert await backend.upsert_schedule("q", "s", SPEC, T0)
    assert await schedule(backend) == ScheduleRecord("s", SPEC, T0, None, 0, 1)
    assert await backend.queue_names() == ["q"]


async def test_an_identical_spec_changes_nothing(backend: SqliteBackend) -> None:
    assert await backend.upsert_schedule("q", "s", SPEC, T0)
    assert not await backend.upsert_schedule("q", "s", SPEC, T0 + MINUTE)
    assert await schedule(backend) == ScheduleRecord("s", SPEC, T0, None, 0, 1)


async def test_a_changed_spec_bumps_the_version_and_keeps_count(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    assert await tick(backend, 1, T0, T0 + MINUTE)
    assert await backend.upsert_schedule("q", "s", '{"every":5000}', T0 + 5000)
    assert await schedule(backend) == ScheduleRecord("s", '{"every":5000}', T0 + 5000, T0, 1, 2)
    assert await backend.upsert_schedule("q", "s", SPEC, None)
    assert await schedule(backend) == ScheduleRecord("s", SPEC, None, T0, 1, 3)


async def test_remove_a_schedule(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await backend.upsert_schedule("q", "t", SPEC, T0)
    assert await backend.remove_schedule("q", "s")
    assert not await backend.remove_schedule("q", "s")
    assert not await backend.remove_schedule("other", "t")
    assert [s.id for s in await backend.list_schedules("q")] == ["t"]
    assert await settle_look(backend, T0) == (["t"], T0)
    assert await backend.remove_schedule("q", "t")
    assert await settle_look(backend, T0) == ([], None)
    assert await backend.list_schedules("q") == []


async def test_list_is_by_id_and_per_queue(backend: SqliteBackend) -> None:
    for schedule_id, next_run in (("b", T0), ("c", None), ("a", T0 + 5)):
        await backend.upsert_schedule("q", schedule_id, SPEC, next_run)
    await backend.upsert_schedule("other", "z", SPEC, T0)
    assert [s.id for s in await backend.list_schedules("q")] == ["a", "b", "c"]
    assert [s.id for s in await backend.list_schedules("other")] == ["z"]
    assert await backend.list_schedules("none") == []


async def test_obliterate_removes_the_schedules(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await backend.upsert_schedule("other", "s", SPEC, T0)
    await backend.obliterate("q", force=False)
    assert await backend.list_schedules("q") == []
    assert [s.id for s in await backend.list_schedules("other")] == ["s"]
    assert await settle_look(backend, T0) == ([], None)


async def test_time_ms_is_this_machines_clock(backend: SqliteBackend) -> None:
    before = clock.system_ms()
    now = await backend.time_ms()
    assert before <= now <= clock.system_ms()


async def test_upsert_wakes_a_waiting_worker(backend: SqliteBackend) -> None:
    await settle_look(backend, T0)
    waiting = asyncio.ensure_future(backend.wait_for_change("q", 30))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await asyncio.wait_for(waiting, 5)


# -- firing a tick ----------------------------------------------------------------------


async def test_fire_adds_the_job_and_advances(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    assert await tick(backend, 1, T0, T0 + MINUTE)
    assert await schedule(backend) == ScheduleRecord("s", SPEC, T0 + MINUTE, T0, 1, 1)
    job = await backend.get_job("q", f"s:{T0}")
    assert job is not None
    assert (job.state, job.run_at, job.created_at) == (JobState.WAITING, T0, T0)
    # A tick fired ahead of its time waits as a delayed job.
    ahead = new_job("ahead", run_at_ms=T0 + 2 * MINUTE)
    assert await backend.fire_schedule("q", "s", 1, T0 + MINUTE, T0 + 3 * MINUTE, ahead, T0)
    job = await backend.get_job("q", "ahead")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.DELAYED, T0 + 2 * MINUTE)


async def test_fire_refuses_a_stale_version_or_due_time(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    assert not await tick(backend, 2, T0, T0 + MINUTE)
    assert not await tick(backend, 1, T0 - 1, T0 + MINUTE)
    assert not await tick(backend, 1, T0 + 1, T0 + MINUTE)
    assert not await backend.fire_schedule(
        "q", "missing", 1, T0, T0 + MINUTE, new_job("m"), T0
    )
    assert await schedule(backend) == ScheduleRecord("s", SPEC, T0, None, 0, 1)
    assert (await backend.counts("q"))["waiting"] == 0
    # A tick computed from the old spec is refused after the spec changed.
    await backend.upsert_schedule("q", "s", '{"every":1000}', T0)
    assert not await tick(backend, 1, T0, T0 + MINUTE)
    assert await tick(backend, 2, T0, T0 + 1000)
    assert (await backend.counts("q"))["waiting"] == 1


async def test_a_tick_fires_once(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    assert await tick(backend, 1, T0, T0 + MINUTE)
    assert not await tick(backend, 1, T0, T0 + MINUTE, job_id="again")
    assert await backend.get_job("q", "again") is None
    assert (await schedule(backend)).count == 1


async def test_a_tick_stays_fired_after_its_job_is_gone(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    gone = Retention(0, None)
    job = new_job("t", run_at_ms=T0, keep_completed=gone)
    assert await backend.fire_schedule("q", "s", 1, T0, T0 + MINUTE, job, T0)
    (claimed,) = await claim(backend, 1)
    await backend.settle("q", [Complete("t", claimed.token, "null")], 0, LOCK_MS, "w1", T0)
    assert await backend.get_job("q", "t") is None
    assert not await backend.fire_schedule("q", "s", 1, T0, T0 + MINUTE, job, T0)
    assert await backend.get_job("q", "t") is None
    assert await schedule(backend) == ScheduleRecord("s", SPEC, T0 + MINUTE, T0, 1, 1)


async def test_fire_with_a_stored_job_id_keeps_the_job(backend: SqliteBackend) -> None:
    await add(backend, new_job("t", data='{"old": 1}'))
    await backend.upsert_schedule("q", "s", SPEC, T0)
    fired = new_job("t", data='{"new": 1}', run_at_ms=T0)
    assert await backend.fire_schedule("q", "s", 1, T0, T0 + MINUTE, fired, T0 + 5)
    job = await backend.get_job("q", "t")
    assert job is not None
    assert job.data == '{"old": 1}'
    assert await schedule(backend) == ScheduleRecord("s", SPEC, T0 + MINUTE, T0, 1, 1)


async def test_the_last_tick_ends_the_schedule(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    assert await tick(backend, 1, T0, None)
    assert await schedule(backend) == ScheduleRecord("s", SPEC, None, T0, 1, 1)
    assert await settle_look(backend, T0 + 10 * MINUTE) == ([], None)


# -- settle reports due ticks -------------------------------------------------------------


async def test_settle_reports_due_schedules_and_the_next_tick(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "later", SPEC, T0 + MINUTE)
    assert await settle_look(backend, T0) == ([], T0 + MINUTE)
    await add(backend, new_job("d", delay_ms=30_000))
    assert await settle_look(backend, T0) == ([], T0 + 30_000)
    await backend.upsert_schedule("q", "now", SPEC, T0 - 5)
    assert await settle_look(backend, T0) == (["now"], T0 - 5)
    result = await backend.settle("q", [], 5, LOCK_MS, "w1", T0)
    assert result.due_schedules == [ScheduleRecord("now", SPEC, T0 - 5, None, 0, 1)]
    # Fired, the tick is no longer due; the delayed job is the next thing due.
    assert await backend.fire_schedule(
        "q", "now", 1, T0 - 5, T0 + 2 * MINUTE, new_job("n", run_at_ms=T0 - 5), T0
    )
    assert await settle_look(backend, T0) == ([], T0 + 30_000)
    # Promotion runs in the write path; the due ticks come back from it too.
    assert await settle_look(backend, T0 + MINUTE) == (["later"], T0 + MINUTE)
    assert await settle_look(backend, T0 + 2 * MINUTE) == (["later", "now"], T0 + MINUTE)


async def test_both_settle_paths_report_due_schedules(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await add(backend, new_job("a"), new_job("b"))
    # Waiting work: the write path claims it and reports the tick.
    result = await backend.settle("q", [], 1, LOCK_MS, "w1", T0)
    assert [c.record.id for c in result.claimed] == ["a"]
    assert [s.id for s in result.due_schedules] == ["s"]
    # Outcomes: always the write path.
    done = Complete("a", result.claimed[0].token, "null")
    result = await backend.settle("q", [done], 0, LOCK_MS, "w1", T0)
    assert result.refused == []
    assert [s.id for s in result.due_schedules] == ["s"]
    assert result.next_due_ms == T0
    # No claim wanted: the read-only look.
    assert await settle_look(backend, T0, claim_count=0) == (["s"], T0)


async def test_settle_reports_a_few_due_schedules_earliest_first(
    backend: SqliteBackend,
) -> None:
    for n in range(DUE_LIMIT + 2):
        await backend.upsert_schedule("q", f"s{n:02}", SPEC, T0 - n // 2)
    assert DUE_LIMIT == 10
    due, next_due = await settle_look(backend, T0)
    assert due == ["s10", "s11", "s08", "s09", "s06", "s07", "s04", "s05", "s02", "s03"]
    assert next_due == T0 - 5


async def test_a_paused_or_held_queue_still_reports_due_ticks(backend: SqliteBackend) -> None:
    await backend.upsert_schedule("q", "s", SPEC, T0)
    await backend.set_paused("q", True)
    await add(backend, new_job("a"))
    assert await settle_look(backend, T0) == (["s"], T0)
    result = await backend.settle("q", [], 5, LOCK_MS, "w1", T0)
    assert result.claimed == []
    # The tick's job is added while paused, and waits there.
    assert await tick(backend, 1, T0, T0 + MINUTE)
    assert (await backend.counts("q"))["waiting"] == 2
    assert await settle_look(backend, T0 + MINUTE) == (["s"], T0 + MINUTE)
    await backend.set_paused("q", False)
    # Held by a rate limit: still reported.
    (claimed,) = await claim(backend, 1, now=T0 + MINUTE)
    hold = Release("a", claimed.token, hold_ms=MINUTE)
    await backend.settle("q", [hold], 0, LOCK_MS, "w1", T0 + MINUTE)
    await backend.upsert_schedule("q", "t", SPEC, T0)
    result = await backend.settle("q", [], 5, LOCK_MS, "w1", T0 + MINUTE)
    assert result.claimed == []
    assert result.hold_until_ms == T0 + 2 * MINUTE
    assert [s.id for s in result.due_schedules] == ["t", "s"]


# -- an older file ------------------------------------------------------------------------


async def test_a_version_1_file_is_upgraded_in_place(db_path: str) -> None:
    assert SCHEMA_VERSION >= 2
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO queues (name, next_seq) VALUES ('q', 2)")
        conn.execute(
            "INSERT INTO jobs (queue, id, name, data, options, state, seq, created_at)"
            " VALUES ('q', 'old', 'task', '{}', '{}', 'waiting', 1, ?)",
            (T0,),
        )
    conn.close()
    backend = SqliteBackend(db_path, {})
    try:
        assert await settle_look(backend, T0, claim_count=0) == ([], None)
        assert await backend.upsert_schedule("q", "s", SPEC, T0)
        assert await tick(backend, 1, T0, T0 + MINUTE)
        assert (await backend.counts("q"))["waiting"] == 2
        claimed = await claim(backend, 5)
        assert [c.record.id for c in claimed] == ["old", f"s:{T0}"]
    finally:
        await backend.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        index = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'schedules_due'"
        ).fetchone()
        assert index is not None
    conn.close()


# -- processes racing for ticks -----------------------------------------------------------

FIRER = """
import asyncio, json, sys
from corral.backends.base import NewJob, Retention
from corral.backends.sqlite import SqliteBackend

async def main(path, start, step, count):
    store = SqliteBackend(path, {})
    await store.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    keep = Retention(None, None)
    fired = []
    for n in range(count):
        due = start + n * step
        while (await store.list_schedules("q"))[0].next_run < due:
            pass  # wait for the previous tick, so that all race for this one
        job = NewJob(f"s:{due}", "t", "{}", "{}", 0, False, None, due, (), None, keep, keep)
        if await store.fire_schedule("q", "s", 1, due, due + step, job, None):
            fired.append(n)
            await asyncio.sleep(0.002)  # give the others a start on the next tick
    await store.close()
    print("fired " + json.dumps(fired), flush=True)

path, start, step, count = sys.argv[1:]
asyncio.run(main(path, int(start), int(step), int(count)))
"""
"""A child process: tries to fire each of `count` ticks of schedule `s` of queue `q`, in
order, each as soon as the schedule reaches it, and prints the numbers of the ticks it
fired."""


@pytest.mark.slow
async def test_processes_racing_fire_each_tick_once(
    backend: SqliteBackend, db_path: str
) -> None:
    ticks, step = 50, 1000
    await backend.upsert_schedule("q", "s", SPEC, T0)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", FIRER, db_path, str(T0), str(step), str(ticks),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for child in children:
        await ready(child)
    await go(*children)
    outputs = await asyncio.gather(*(finish_process(child) for child in children))
    fired: list[int] = []
    for output in outputs:
        (line,) = [line for line in output.splitlines() if line.startswith("fired ")]
        fired += json.loads(line.removeprefix("fired "))
    assert sorted(fired) == list(range(ticks))
    assert await schedule(backend) == ScheduleRecord(
        "s", SPEC, T0 + ticks * step, T0 + (ticks - 1) * step, ticks, 1
    )
    assert (await backend.counts("q"))["waiting"] == ticks
