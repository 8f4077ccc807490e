"""A 24-hour email chain driven by the virtual clock runs in well under a second."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import corral
from corral.testing import FastClock, VirtualClock

from .support import WorkerFactory, WorkerStarter, is_state, stored, wait_for

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)
Processor = Callable[[corral.Job], Coroutine[Any, Any, Any]]


def chain(queue: corral.Queue, ran: list[tuple[str, datetime]], clock: VirtualClock) -> dict[
    str, Processor
]:
    """email1 → (30 min) → email2 → (24 h) → callAlert, each adding the next."""

    async def email1(job: corral.Job) -> None:
        ran.append(("email1", clock.now()))
        await queue.add("email2", job.data, delay=timedelta(minutes=30), job_id="email2:L1")

    async def email2(job: corral.Job) -> None:
        ran.append(("email2", clock.now()))
        await queue.add("callAlert", job.data, delay=timedelta(hours=24), job_id="callAlert:L1")

    async def call_alert(job: corral.Job) -> dict[str, str]:
        ran.append(("callAlert", clock.now()))
        return {"called": job.data["leadId"]}

    return {"email1": email1, "email2": email2, "callAlert": call_alert}


async def test_email_chain_in_burst_runs(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    started = time.monotonic()
    ran: list[tuple[str, datetime]] = []
    worker = make_worker(chain(queue, ran, clock))
    await queue.add("email1", {"leadId": "L1"}, job_id="email1:L1")

    assert await worker.run(burst=True) == 1
    assert (await stored(queue, "email2:L1")).state == "delayed"
    await clock.advance(timedelta(minutes=29))
    assert await worker.run(burst=True) == 0
    await clock.advance(timedelta(minutes=1))
    assert await worker.run(burst=True) == 1
    await clock.advance(timedelta(hours=24))
    assert await worker.run(burst=True) == 1

    assert ran == [
        ("email1", START),
        ("email2", START + timedelta(minutes=30)),
        ("callAlert", START + timedelta(minutes=30, hours=24)),
    ]
    alert = await stored(queue, "callAlert:L1")
    assert (alert.state, alert.return_value) == ("completed", {"called": "L1"})
    assert alert.processed_at == START + timedelta(minutes=30, hours=24)
    assert (await queue.counts())["completed"] == 3
    assert time.monotonic() - started < 1.0


async def test_email_chain_with_a_running_worker(
    queue: corral.Queue,
    clock: VirtualClock,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    started = time.monotonic()
    ran: list[tuple[str, datetime]] = []
    start_worker(make_worker(chain(queue, ran, clock)))
    await queue.add("email1", {"leadId": "L1"}, job_id="email1:L1")

    await wait_for(is_state(queue, "email1:L1", "completed"))
    await wait_for(is_state(queue, "email2:L1", "delayed"))
    await clock.advance(timedelta(minutes=30))
    await wait_for(is_state(queue, "email2:L1", "completed"))
    await wait_for(is_state(queue, "callAlert:L1", "delayed"))
    await clock.advance(timedelta(hours=24))
    await wait_for(is_state(queue, "callAlert:L1", "completed"))

    assert [name for name, _ in ran] == ["email1", "email2", "callAlert"]
    assert ran[2][1] == START + timedelta(minutes=30, hours=24)
    assert time.monotonic() - started < 1.0


async def test_clock_drives_created_and_run_at(queue: corral.Queue, clock: VirtualClock) -> None:
    await clock.advance(timedelta(days=3))

    job = await queue.add("m", {}, delay=timedelta(hours=1))

    assert job.created_at == START + timedelta(days=3)
    assert job.run_at == START + timedelta(days=3, hours=1)
    assert clock.now() == START + timedelta(days=3)


async def test_a_fast_clock_plays_a_day_of_delays_in_a_second(
    store_url: str, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    clock = FastClock(3600 * 24)  # a day per real second
    ran: list[str] = []

    async def note(job: corral.Job) -> None:
        ran.append(job.id)

    async with corral.Queue("q", url=store_url, clock=clock) as queue:
        start = clock.now()
        for hours in (1, 5, 23):
            await queue.add("remind", job_id=f"in-{hours}h", delay=timedelta(hours=hours))
        # Locks count in the clock's time: five real seconds of it.
        start_worker(make_worker(note, clock=clock, lock_duration=clock.speed * 5))

        await wait_for(lambda: len(ran) == 3, timeout=10)

        assert ran == ["in-1h", "in-5h", "in-23h"]
        for hours in (1, 5, 23):
            job = await queue.get_job(f"in-{hours}h")
            assert job is not None
            assert job.processed_at is not None
            assert job.processed_at >= start + timedelta(hours=hours)
            assert job.stalled_count == 0
