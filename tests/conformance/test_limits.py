"""Queue-wide limits stored with the queue: rate limits, concurrency, fair groups."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import corral
from corral.testing import VirtualClock

from .support import Blocker, WorkerFactory, WorkerStarter, wait_for


def max_in_window(starts: list[float], window: float) -> int:
    """The most starts that fall in any half-open window of `window` seconds."""
    starts = sorted(starts)
    best, left = 0, 0
    for right, moment in enumerate(starts):
        while moment - starts[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return best


async def test_configure_stores_limits_and_reads_them_back(queue: corral.Queue) -> None:
    await queue.configure(limiter=corral.RateLimit(20, per=60), concurrency=10,
                          group_limiter=corral.RateLimit(5, per=1), group_concurrency=2)
    other = corral.Queue("q", url=queue.url)
    try:
        config = await other.config()
    finally:
        await other.close()
    assert config.limiter == corral.RateLimit(20, per=60)
    assert config.group_limiter == corral.RateLimit(5, per=1)
    assert (config.concurrency, config.group_concurrency) == (10, 2)
    await queue.configure(concurrency=None)
    assert (await queue.config()).concurrency is None
    assert (await queue.config()).limiter == corral.RateLimit(20, per=60)


@pytest.mark.parametrize(
    "settings",
    [
        {"limiter": corral.RateLimit},
        {"limiter": 5},
        {"concurrency": 0},
        {"concurrency": 2.5},
        {"group_concurrency": -1},
        {"group_limiter": "fast"},
    ],
)
async def test_bad_limits_are_refused(queue: corral.Queue, settings: dict[str, object]) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await queue.configure(**settings)  # type: ignore[arg-type]
    assert (await queue.config()) == corral.QueueConfig()


@pytest.mark.parametrize(("limit", "per"), [(0, 1), (-1, 1), (1, 0), (1, -5), (1, float("nan"))])
def test_bad_rate_limits_are_refused(limit: int, per: float) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.RateLimit(limit, per=per)


async def test_rate_limit_holds_jobs_waiting_until_the_window_slides(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.configure(limiter=corral.RateLimit(2, per=60))
    jobs = [await queue.add("m", {"i": i}) for i in range(5)]
    worker = make_worker(lambda job: None, concurrency=5)
    assert await worker.run(burst=True) == 2
    counts = await queue.counts()
    assert (counts["completed"], counts["waiting"]) == (2, 3)
    await clock.advance(59)
    assert await worker.run(burst=True) == 0
    await clock.advance(1)
    assert await worker.run(burst=True) == 2
    await clock.advance(60)
    assert await worker.run(burst=True) == 1
    starts = [(await queue.get_job(job.id)).processed_at for job in jobs]  # type: ignore[union-attr]
    assert max_in_window([s.timestamp() for s in starts if s], 60) == 2


async def test_rate_limit_is_shared_by_all_workers(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    await queue.configure(limiter=corral.RateLimit(3, per=60))
    await queue.add_bulk([corral.JobSpec("m", {"i": i}) for i in range(10)])
    workers = [make_worker(lambda job: None, concurrency=3) for _ in range(3)]
    ran = await asyncio.gather(*(worker.run(burst=True) for worker in workers))
    assert sum(ran) == 3


async def test_queue_concurrency_caps_active_jobs_across_workers(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    await queue.configure(concurrency=2)
    await queue.add_bulk([corral.JobSpec("m", {"i": i}) for i in range(6)])
    blockers = [Blocker(), Blocker()]
    for blocker in blockers:
        start_worker(make_worker(blocker.process, concurrency=5))

    async def active() -> int:
        return (await queue.counts())["active"]

    await wait_for(lambda: sum(len(b.started) for b in blockers) == 2)
    await asyncio.sleep(0.1)
    assert await active() == 2
    assert sum(len(b.started) for b in blockers) == 2
    await queue.configure(concurrency=None)
    await wait_for(lambda: sum(len(b.started) for b in blockers) == 6)
    for blocker in blockers:
        blocker.release()
    await wait_for(lambda: sum(len(b.finished) for b in blockers) == 6)


async def test_groups_take_turns_so_a_small_tenant_is_not_starved(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    order: list[str] = []

    async def record(job: corral.Job) -> None:
        order.append(job.group or "")

    await queue.add_bulk([corral.JobSpec("m", {"i": i}, group="big") for i in range(1000)])
    await queue.add_bulk([corral.JobSpec("m", {"i": i}, group="small") for i in range(10)])
    assert await make_worker(record).run(burst=True) == 1010
    last_small = max(index for index, group in enumerate(order) if group == "small")
    assert last_small < 25, f"the small group finished only at position {last_small}"


async def test_round_robin_between_groups_within_a_priority(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    order: list[str] = []

    async def record(job: corral.Job) -> None:
        order.append(f"{job.group}{job.data['i']}")

    specs = [corral.JobSpec("m", {"i": i}, group=group) for group in "ab" for i in range(3)]
    specs += [corral.JobSpec("m", {"i": 9}, group="c", priority=-1)]
    specs += [corral.JobSpec("m", {"i": 0}), corral.JobSpec("m", {"i": 1})]
    await queue.add_bulk(specs)
    await make_worker(record).run(burst=True)
    assert order[0] == "c9"  # a lower priority first, whatever its group
    # Then one job of each group per round, each group in its own FIFO order.
    assert sorted(order[1:4]) == ["None0", "a0", "b0"]
    assert sorted(order[4:7]) == ["None1", "a1", "b1"]
    assert sorted(order[7:]) == ["a2", "b2"]


async def test_group_concurrency_holds_across_workers(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    await queue.configure(group_concurrency=1)
    await queue.add_bulk(
        [corral.JobSpec("m", {"i": i}, group=group) for group in ("a", "b") for i in range(3)]
    )
    blockers = [Blocker(), Blocker()]
    for blocker in blockers:
        start_worker(make_worker(blocker.process, concurrency=4))
    await wait_for(lambda: sum(len(b.started) for b in blockers) == 2)
    await asyncio.sleep(0.1)
    active = await queue.jobs("active")
    assert sorted(job.group or "" for job in active) == ["a", "b"]
    for blocker in blockers:
        blocker.release()
    await wait_for(lambda: sum(len(b.finished) for b in blockers) == 6)


async def test_group_rate_limit_holds_each_group(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.configure(group_limiter=corral.RateLimit(1, per=60))
    await queue.add_bulk(
        [corral.JobSpec("m", {"i": i}, group=group) for group in ("a", "b") for i in range(3)]
    )
    worker = make_worker(lambda job: None, concurrency=4)
    assert await worker.run(burst=True) == 2
    await clock.advance(timedelta(seconds=60))
    assert await worker.run(burst=True) == 2
    assert (await queue.counts())["waiting"] == 2
