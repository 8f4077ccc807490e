"""Retries and backoff, observed through the `run_at` of the retried, delayed job."""

from __future__ import annotations

from datetime import timedelta

import corral
from corral.testing import VirtualClock

from .support import WorkerFactory, stored


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


async def retry_waits(
    queue: corral.Queue,
    clock: VirtualClock,
    worker: corral.Worker,
    job_id: str,
    retries: int,
) -> list[float]:
    """Run attempts one by one; the seconds from each failure to the retry's run_at."""
    waits = []
    for attempt in range(1, retries + 1):
        assert await worker.run(burst=True) == 1
        job = await stored(queue, job_id)
        assert job.state == "delayed", f"attempt {attempt} should leave the job delayed"
        assert job.attempts_made == attempt
        assert job.run_at is not None
        waits.append((job.run_at - clock.now()).total_seconds())
        await clock.advance(job.run_at - clock.now())
    return waits


async def test_without_backoff_a_retry_is_due_at_once(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    calls = 0

    async def fail_twice(job: corral.Job) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError(f"failure {calls}")
        return "third time"

    job = await queue.add("m", {}, attempts=3)

    assert await make_worker(fail_twice).run(burst=True) == 3
    done = await stored(queue, job.id)
    assert (done.state, done.attempts_made, done.return_value) == ("completed", 3, "third time")


async def test_fixed_backoff(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, attempts=4, backoff=corral.Backoff.fixed(10))
    worker = make_worker(explode)

    assert await retry_waits(queue, clock, worker, job.id, 3) == [10, 10, 10]
    assert await worker.run(burst=True) == 1
    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made) == ("failed", 4)


async def test_fixed_backoff_as_timedelta(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, attempts=2, backoff=corral.Backoff.fixed(timedelta(minutes=2)))

    assert await retry_waits(queue, clock, make_worker(explode), job.id, 1) == [120]


async def test_retry_is_not_run_before_it_is_due(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, attempts=2, backoff=corral.Backoff.fixed(30))
    worker = make_worker(explode)
    assert await worker.run(burst=True) == 1

    await clock.advance(29)
    assert await worker.run(burst=True) == 0
    await clock.advance(1)
    assert await worker.run(burst=True) == 1
    assert (await stored(queue, job.id)).state == "failed"


async def test_exponential_backoff_doubles(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, attempts=5, backoff=corral.Backoff.exponential(60))

    assert await retry_waits(queue, clock, make_worker(explode), job.id, 4) == [60, 120, 240, 480]


async def test_exponential_backoff_is_capped(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    backoff = corral.Backoff.exponential(60, cap=150)
    job = await queue.add("m", {}, attempts=5, backoff=backoff)

    assert await retry_waits(queue, clock, make_worker(explode), job.id, 4) == [60, 120, 150, 150]


async def test_exponential_backoff_jitter_stays_in_bounds(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    backoff = corral.Backoff.exponential(100, jitter=0.5)
    job = await queue.add("m", {}, attempts=4, backoff=backoff)

    waits = await retry_waits(queue, clock, make_worker(explode), job.id, 3)

    for wait, full in zip(waits, [100, 200, 400], strict=True):
        assert full * 0.5 <= wait <= full


async def test_jitter_varies_between_jobs(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    backoff = corral.Backoff.exponential(1000, jitter=1.0)
    jobs = [await queue.add("m", {}, attempts=2, backoff=backoff) for _ in range(8)]

    assert await make_worker(explode, concurrency=8).run(burst=True) == 8

    run_ats = {(await stored(queue, job.id)).run_at for job in jobs}
    # Eight draws from a 1000 s range landing on one millisecond would mean no jitter.
    assert len(run_ats) > 1


async def test_custom_backoff_repeats_its_last_delay(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    backoff = corral.Backoff.custom([5, timedelta(seconds=20), 60])
    job = await queue.add("m", {}, attempts=6, backoff=backoff)

    assert await retry_waits(queue, clock, make_worker(explode), job.id, 5) == [5, 20, 60, 60, 60]


async def test_backoff_by_worker_asks_the_workers_callable(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    seen: list[tuple[int, str]] = []

    def backoff(attempt: int, exc: BaseException) -> float:
        seen.append((attempt, str(exc)))
        return 7 * attempt

    job = await queue.add("m", {}, attempts=3, backoff=corral.Backoff.by_worker())
    worker = make_worker(explode, backoff=backoff)

    assert await retry_waits(queue, clock, worker, job.id, 2) == [7, 14]
    assert seen == [(1, "boom"), (2, "boom")]


async def test_backoff_from_queue_defaults(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.configure(
        defaults=corral.JobOptions(attempts=3, backoff=corral.Backoff.custom([60, 300]))
    )
    job = await queue.add("m", {})

    assert await retry_waits(queue, clock, make_worker(explode), job.id, 2) == [60, 300]


async def test_failed_attempt_with_attempts_left_is_delayed_with_its_reason(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, attempts=2, backoff=corral.Backoff.fixed(60))

    assert await make_worker(explode).run(burst=True) == 1

    retrying = await stored(queue, job.id)
    assert retrying.state == "delayed"
    assert retrying.failed_reason is not None
    assert "boom" in retrying.failed_reason
