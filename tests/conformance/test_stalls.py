"""Locks and stalls: a lapsed lock hands the job back; a stale worker's result is refused.

A stalled worker is simulated by a processor that never returns while the virtual clock
moves past `lock_duration + stalled_interval`: the lock lapses in the store's eyes.
"""

from __future__ import annotations

import corral
from corral.testing import VirtualClock

from .support import Blocker, WorkerFactory, WorkerStarter, is_state, stored, wait_for

LOCK = 30
INTERVAL = 30
PAST_THE_LOCK = LOCK + INTERVAL + 1


async def succeed(job: corral.Job) -> str:
    return "rescued"


async def test_stalled_job_goes_back_to_waiting_and_is_run_by_another_worker(
    queue: corral.Queue,
    clock: VirtualClock,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    stalled: list[str] = []
    stale_completed: list[str] = []
    blocker = Blocker(result="stale result")
    stale = make_worker(blocker.process, lock_duration=LOCK, stalled_interval=INTERVAL)
    stale.on("stalled", stalled.append)
    stale.on("completed", lambda job, result: stale_completed.append(job.id))
    stale_errors: list[BaseException] = []
    stale.on("error", stale_errors.append)
    start_worker(stale)
    job = await queue.add("m", {}, attempts=1)
    await wait_for(is_state(queue, job.id, "active"))

    await clock.advance(PAST_THE_LOCK)
    rescuer = make_worker(succeed, lock_duration=LOCK, stalled_interval=INTERVAL)
    rescuer.on("stalled", stalled.append)

    assert await rescuer.run(burst=True) == 1

    done = await stored(queue, job.id)
    assert done.state == "completed"
    assert done.return_value == "rescued"
    assert done.stalled_count == 1
    assert done.attempts_made == 1  # the stalled attempt is not counted
    assert stalled == [job.id]

    # The stale worker finishes late: its lock is gone, so its result is discarded.
    blocker.release()
    await stale.close(timeout=5)

    after = await stored(queue, job.id)
    assert (after.state, after.return_value) == ("completed", "rescued")
    assert (after.attempts_made, after.stalled_count) == (1, 1)
    assert stale_completed == []
    assert [type(error) for error in stale_errors] == [corral.LockLostError]


async def test_job_stalled_more_than_allowed_fails(
    queue: corral.Queue,
    clock: VirtualClock,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    options = {"lock_duration": LOCK, "stalled_interval": INTERVAL, "max_stalled_count": 1}
    job = await queue.add("m", {}, attempts=3)
    first = Blocker()
    start_worker(make_worker(first.process, **options))
    await wait_for(lambda: first.started == [job.id])

    # First lapse: back to waiting, then taken by another worker that also stalls.
    await clock.advance(PAST_THE_LOCK)
    second = Blocker()
    start_worker(make_worker(second.process, **options))
    await wait_for(lambda: second.started == [job.id])
    again = await stored(queue, job.id)
    assert (again.state, again.stalled_count, again.attempts_made) == ("active", 1, 0)

    # Second lapse: more than max_stalled_count, so the job fails.
    await clock.advance(PAST_THE_LOCK)
    assert await make_worker(succeed, **options).run(burst=True) == 0

    failed = await stored(queue, job.id)
    assert failed.state == "failed"
    assert failed.failed_reason is not None
    assert "stalled more than allow" in failed.failed_reason
    assert failed.stalled_count == 2
    assert failed.attempts_made == 0


async def test_stall_does_not_use_an_attempt(
    queue: corral.Queue,
    clock: VirtualClock,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    calls = 0

    async def fails_after_stall(job: corral.Job) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("real failure")

    job = await queue.add("m", {}, attempts=1)
    blocker = Blocker()
    start_worker(make_worker(blocker.process, lock_duration=LOCK, stalled_interval=INTERVAL))
    await wait_for(lambda: blocker.started == [job.id])
    await clock.advance(PAST_THE_LOCK)

    # With attempts=1 the single attempt is still available after the stall.
    worker = make_worker(fails_after_stall, lock_duration=LOCK, stalled_interval=INTERVAL)
    assert await worker.run(burst=True) == 1

    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made, failed.stalled_count) == ("failed", 1, 1)
    assert failed.failed_reason is not None
    assert "real failure" in failed.failed_reason
    assert calls == 1
