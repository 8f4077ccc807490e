"""Schedules: one job per tick, upserts, catch-up after downtime, bounds, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import corral
from corral.testing import VirtualClock

from .support import WorkerFactory


def ticks_of(jobs: list[corral.Job], schedule_id: str) -> list[str]:
    prefix = f"schedule:{schedule_id}:"
    return sorted(job.id for job in jobs if job.id.startswith(prefix))


async def all_jobs(queue: corral.Queue) -> list[corral.Job]:
    found: list[corral.Job] = []
    for state in ("waiting", "delayed", "active", "completed", "failed"):
        found += await queue.jobs(state, limit=1000)
    return found


async def test_every_fires_at_once_then_each_period(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    ran: list[datetime] = []

    async def beat(job: corral.Job) -> None:
        ran.append(clock.now())

    worker = make_worker({"beat": beat})
    created = await queue.schedule("beat", every=timedelta(minutes=5))
    assert created.next_run == clock.now()
    assert created.job_name == "beat"
    for _ in range(3):
        assert await worker.run(burst=True) == 1
        await clock.advance(timedelta(minutes=5))
    start = ran[0]
    assert ran == [start, start + timedelta(minutes=5), start + timedelta(minutes=10)]
    [listed] = await queue.schedules()
    assert listed.count == 3
    assert listed.last_run == start + timedelta(minutes=10)
    assert listed.next_run == start + timedelta(minutes=15)


async def test_cron_fires_at_each_matching_instant_in_its_time_zone(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    worker = make_worker(lambda job: None)
    schedule = await queue.schedule("rollup", cron="0 2 * * *", tz="Europe/Berlin")
    # 12:00 UTC on 24 Feb: the next 02:00 in Berlin (UTC+1) is 01:00 UTC on 25 Feb.
    first = datetime(2026, 2, 25, 1, 0, tzinfo=UTC)
    assert schedule.next_run == first
    assert await worker.run(burst=True) == 0
    await clock.set(first - timedelta(seconds=1))
    assert await worker.run(burst=True) == 0
    for day in range(2):
        await clock.set(first + timedelta(days=day))
        assert await worker.run(burst=True) == 1
    due = [first, first + timedelta(days=1)]
    expected = [f"schedule:rollup:{int(moment.timestamp() * 1000)}" for moment in due]
    assert ticks_of(await all_jobs(queue), "rollup") == expected
    [listed] = await queue.schedules()
    assert listed.last_run == due[-1]
    assert listed.next_run == first + timedelta(days=2)


async def test_six_field_cron_has_seconds_first(queue: corral.Queue) -> None:
    schedule = await queue.schedule("fast", cron="*/20 * * * * *")
    assert schedule.next_run == datetime(2026, 2, 24, 12, 0, 20, tzinfo=UTC)


async def test_a_tick_job_carries_the_schedule_data_and_options(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    await queue.schedule(
        "sync", every=60, job_name="syncAll", data={"full": True}, attempts=4, priority=3,
        tags=["sync"],
    )
    await make_worker({"syncAll": lambda job: None}).run(burst=True)
    [job] = await queue.jobs("completed")
    assert job.name == "syncAll"
    assert job.data == {"full": True}
    assert (job.options.attempts, job.priority, job.tags) == (4, 3, ("sync",))
    assert job.id == f"schedule:sync:{int(job.created_at.timestamp() * 1000)}"


async def test_identical_upsert_changes_nothing(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.schedule("beat", every=60)
    await make_worker(lambda job: None).run(burst=True)
    before = await queue.schedules()
    await clock.advance(30)
    again = await queue.schedule("beat", every=60)
    assert await queue.schedules() == before
    assert again.next_run == before[0].next_run


async def test_changed_upsert_replaces_the_planned_tick_without_duplicates(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    worker = make_worker(lambda job: None)
    await queue.schedule("beat", every=60)
    assert await worker.run(burst=True) == 1
    await clock.advance(30)
    changed = await queue.schedule("beat", every=120)
    # A new period counts from the upsert: `every` fires once when changed, then each period.
    assert changed.next_run == clock.now()
    assert await worker.run(burst=True) == 1
    assert await worker.run(burst=True) == 0
    await clock.advance(120)
    assert await worker.run(burst=True) == 1
    assert len(ticks_of(await all_jobs(queue), "beat")) == 3
    [listed] = await queue.schedules()
    assert listed.count == 3
    assert listed.every == timedelta(seconds=120)


async def test_unschedule_removes_the_schedule_and_its_planned_tick(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.schedule("beat", every=60)
    assert await queue.unschedule("beat") is True
    assert await queue.unschedule("beat") is False
    assert await queue.schedules() == []
    await clock.advance(600)
    assert await make_worker(lambda job: None).run(burst=True) == 0


async def test_after_downtime_a_schedule_catches_up_with_one_run(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    worker = make_worker(lambda job: None)
    await queue.schedule("beat", every=60)
    assert await worker.run(burst=True) == 1
    start = clock.now()
    await clock.advance(timedelta(minutes=10, seconds=30))
    assert await worker.run(burst=True) == 1
    [listed] = await queue.schedules()
    assert listed.last_run == start + timedelta(minutes=1)
    assert listed.next_run == start + timedelta(minutes=11)


async def test_a_tick_fires_once_even_after_retention_removed_its_job(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.schedule("beat", every=60, remove_on_complete=True)
    first, second = make_worker(lambda job: None), make_worker(lambda job: None)
    assert await first.run(burst=True) == 1
    assert await queue.counts() == {
        "waiting": 0, "delayed": 0, "active": 0, "completed": 0, "failed": 0,
        "waiting-children": 0,
    }
    assert await second.run(burst=True) == 0
    [listed] = await queue.schedules()
    assert listed.count == 1


async def test_racing_workers_fire_each_tick_once(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    import asyncio

    await queue.schedule("beat", every=60)
    workers = [make_worker(lambda job: None) for _ in range(3)]
    for _ in range(5):
        await asyncio.gather(*(worker.run(burst=True) for worker in workers))
        await clock.advance(60)
    assert len(ticks_of(await all_jobs(queue), "beat")) == 5


async def test_start_end_and_limit_bound_the_ticks(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    worker = make_worker(lambda job: None)
    later = clock.now() + timedelta(hours=1)
    await queue.schedule("bounded", every=60, start=later, limit=3)
    assert await worker.run(burst=True) == 0
    for _ in range(6):
        await clock.advance(timedelta(hours=1) if clock.now() < later else timedelta(minutes=1))
        await worker.run(burst=True)
    [listed] = await queue.schedules()
    assert (listed.count, listed.next_run) == (3, None)
    assert listed.last_run == later + timedelta(minutes=2)

    await queue.schedule("ending", every=60, end=clock.now() + timedelta(seconds=150))
    for _ in range(5):
        await worker.run(burst=True)
        await clock.advance(60)
    ending = next(s for s in await queue.schedules() if s.id == "ending")
    assert (ending.count, ending.next_run) == (3, None)


async def test_ticks_are_added_while_paused_and_run_after_resume(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    await queue.pause()
    await queue.schedule("beat", every=60)
    worker = make_worker(lambda job: None)
    assert await worker.run(burst=True) == 0
    assert (await queue.counts())["waiting"] == 1
    await queue.resume()
    assert await worker.run(burst=True) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one of cron"),
        ({"cron": "* * * * *", "every": 60}, "exactly one of cron"),
        ({"cron": "61 * * * *"}, "not a valid"),
        ({"cron": "* * *"}, "5 fields"),
        ({"every": 0}, "every"),
        ({"every": -5}, "every"),
        ({"every": "soon"}, "every"),
        ({"every": 60, "tz": "Mars/Olympus"}, "time zone"),
        ({"every": 60, "job_id": "x"}, "not allowed in a schedule"),
        ({"every": 60, "delay": 5}, "not allowed in a schedule"),
        ({"every": 60, "limit": 0}, "limit"),
        ({"every": 60, "attempts": 0}, "attempts"),
        ({"every": 60, "data": {"bad": float("nan")}}, "data.bad"),
        ({"every": 60, "start": datetime(2026, 3, 1)}, "aware"),
        ({"every": 60, "unknown_option": 1}, "unknown"),
    ],
)
async def test_bad_schedules_are_refused_and_nothing_is_stored(
    queue: corral.Queue, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(corral.InvalidOptionError, match=message):
        await queue.schedule("bad", **arguments)  # type: ignore[arg-type]
    assert await queue.schedules() == []


@pytest.mark.parametrize("schedule_id", ["", "x" * 201, "tab\there"])
async def test_bad_schedule_ids_are_refused(queue: corral.Queue, schedule_id: str) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await queue.schedule(schedule_id, every=60)
