"""Queue events across processes, resumable and capped; per-minute metrics."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

import corral
from corral.events import Event, EventType, QueueEvents
from corral.testing import VirtualClock

from .support import WorkerFactory, WorkerStarter


async def drain_events(events: QueueEvents) -> list[Event]:
    found: list[Event] = []
    while batch := await events.read(block_ms=50):
        found += batch
    return found


def kinds(events: list[Event], job_id: str | None = None) -> list[str]:
    return [str(e.type) for e in events if job_id is None or e.job_id == job_id]


async def test_final_events_of_a_job_lifecycle(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async with QueueEvents("q", url=queue.url) as events:
        await events.start()

        async def process(job: corral.Job) -> dict[str, int]:
            await job.update_progress(50)
            if job.data["fail"]:
                raise RuntimeError("card declined")
            return {"sent": 1}

        good = await queue.add("m", {"fail": False})
        bad = await queue.add("m", {"fail": True}, attempts=2)
        await make_worker(process).run(burst=True)
        seen = await drain_events(events)
    assert kinds(seen, good.id) == ["added", "progress", "completed"]
    assert kinds(seen, bad.id) == ["added", "progress", "retrying", "progress", "failed"]
    completed = next(e for e in seen if e.job_id == good.id and e.type == "completed")
    assert completed.data["return_value"] == {"sent": 1}
    assert completed.type is EventType.COMPLETED
    failed = next(e for e in seen if e.job_id == bad.id and e.type == "failed")
    assert "card declined" in failed.data["reason"]
    assert len({e.id for e in seen}) == len(seen)


async def test_level_all_adds_waiting_active_and_delayed(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.configure(events="all")
    async with QueueEvents("q", url=queue.url) as events:
        await events.start()
        job = await queue.add("m", {}, delay=10)
        await clock.advance(10)
        await make_worker(lambda j: None).run(burst=True)
        seen = kinds(await drain_events(events), job.id)
    assert seen[:2] == ["added", "delayed"]
    assert seen[-3:] == ["waiting", "active", "completed"]


async def test_level_off_records_nothing(queue: corral.Queue, make_worker: WorkerFactory) -> None:
    await queue.configure(events="off")
    async with QueueEvents("q", url=queue.url, last_id="0") as events:
        await queue.add("m", {})
        await make_worker(lambda j: None).run(burst=True)
        assert await drain_events(events) == []


async def test_resume_after_a_last_id_and_from_the_oldest(queue: corral.Queue) -> None:
    first = await queue.add("m", {"i": 1})
    second = await queue.add("m", {"i": 2})
    async with QueueEvents("q", url=queue.url, last_id="0") as events:
        everything = await drain_events(events)
    assert [e.job_id for e in everything] == [first.id, second.id]
    async with QueueEvents("q", url=queue.url, last_id=everything[0].id) as events:
        assert [e.job_id for e in await drain_events(events)] == [second.id]


async def test_removed_and_deduplicated_events(queue: corral.Queue) -> None:
    async with QueueEvents("q", url=queue.url) as events:
        await events.start()
        job = await queue.add("m", {}, dedupe=corral.Dedupe("k"))
        await queue.add("m", {}, dedupe=corral.Dedupe("k"))
        await queue.remove(job.id)
        seen = await drain_events(events)
    assert kinds(seen) == ["added", "deduplicated", "removed"]


async def test_the_stream_is_capped(queue: corral.Queue) -> None:
    for start in range(0, 10_500, 1500):
        await queue.add_bulk([corral.JobSpec("m", {"i": i}) for i in range(start, start + 1500)])
    async with QueueEvents("q", url=queue.url, last_id="0") as events:
        kept = await drain_events(events)
    assert 9_000 <= len(kept) <= 10_100
    assert kept[-1].data["name"] == "m"


async def test_events_from_another_process_arrive_within_a_moment(queue: corral.Queue) -> None:
    script = (
        "import asyncio, sys, corral\n"
        "async def main():\n"
        "    async with corral.Queue('q', url=sys.argv[1]) as q:\n"
        "        await q.add('from-child', {}, job_id='child-job')\n"
        "asyncio.run(main())\n"
    )
    async with QueueEvents("q", url=queue.url) as events:
        await events.start()
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, queue.url)
        assert await process.wait() == 0
        started = time.monotonic()
        batch = await events.read(block_ms=2000)
        assert [e.job_id for e in batch] == ["child-job"]
        assert time.monotonic() - started < 1.0


async def test_wait_until_finished_follows_events(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    job = await queue.add("m", {"x": 2})

    async def double(j: corral.Job) -> int:
        return int(j.data["x"]) * 2

    start_worker(make_worker({"m": double}))
    assert await job.wait_until_finished(timeout=5) == 4
    bad = await queue.add("boom", {})
    with pytest.raises(corral.JobFailedError, match="no processor"):
        await bad.wait_until_finished(timeout=5)


async def test_metrics_count_and_time_finished_jobs_per_minute(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    async def slow(job: corral.Job) -> None:
        if job.data.get("fail"):
            raise RuntimeError("no")

    start = clock.now()
    await queue.add_bulk([corral.JobSpec("m", {}) for _ in range(3)])
    await clock.advance(5)  # they wait 5 s before a worker takes them
    await make_worker(slow).run(burst=True)
    await clock.advance(timedelta(minutes=1))
    await queue.add("m", {"fail": True})
    await make_worker(slow).run(burst=True)
    stats = await queue.metrics(since=start - timedelta(minutes=1), until=clock.now())
    assert [(s.completed, s.failed) for s in stats] == [(3, 0), (0, 1)]
    assert stats[0].wait_ms_max == 5000
    assert stats[0].minute == start
    assert await queue.metrics(since=clock.now() + timedelta(minutes=5),
                               until=clock.now() + timedelta(minutes=6)) == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"since": datetime(2026, 2, 24, 12, 0)},
        {"until": "yesterday"},
        {"since": datetime(2026, 2, 25, tzinfo=UTC), "until": datetime(2026, 2, 24, tzinfo=UTC)},
    ],
)
async def test_bad_metrics_ranges_are_refused(
    queue: corral.Queue, arguments: dict[str, object]
) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await queue.metrics(**arguments)  # type: ignore[arg-type]
