"""Retention: `remove_on_complete` / `remove_on_fail` as True, 0, N, False and `Keep`."""

from __future__ import annotations

from typing import Any

import pytest

import corral
from corral.testing import VirtualClock

from .support import WorkerFactory, stored


async def succeed(job: corral.Job) -> str:
    return "done"


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


async def finish_in_turn(
    queue: corral.Queue,
    clock: VirtualClock,
    make_worker: WorkerFactory,
    count: int,
    *,
    fail: bool = False,
    **options: Any,
) -> list[str]:
    """Add and finish `count` jobs one second apart; returns their ids, oldest first."""
    ids = []
    worker = make_worker(explode if fail else succeed)
    for i in range(count):
        ids.append((await queue.add("m", {"i": i}, **options)).id)
        assert await worker.run(burst=True) == 1
        await clock.advance(1)
    return ids


@pytest.mark.parametrize("keep", [True, 0, corral.Keep(count=0)], ids=["True", "0", "Keep0"])
async def test_remove_on_complete_removes_the_job_when_it_completes(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory, keep: Any
) -> None:
    [job_id] = await finish_in_turn(queue, clock, make_worker, 1, remove_on_complete=keep)

    assert await queue.get_job(job_id) is None
    assert (await queue.counts())["completed"] == 0


@pytest.mark.parametrize("keep", [2, corral.Keep(count=2)], ids=["int", "Keep"])
async def test_remove_on_complete_keeps_the_newest_n(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory, keep: Any
) -> None:
    ids = await finish_in_turn(queue, clock, make_worker, 4, remove_on_complete=keep)

    assert [job.id for job in await queue.jobs("completed")] == [ids[3], ids[2]]
    assert await queue.get_job(ids[0]) is None


async def test_remove_on_complete_false_keeps_every_job(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    ids = await finish_in_turn(queue, clock, make_worker, 4, remove_on_complete=False)

    assert sorted(job.id for job in await queue.jobs("completed")) == sorted(ids)


async def test_keep_age_drops_jobs_older_than_age(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    keep = corral.Keep(age=60)
    old = await finish_in_turn(queue, clock, make_worker, 2, remove_on_complete=keep)
    await clock.advance(120)

    young = await finish_in_turn(queue, clock, make_worker, 1, remove_on_complete=keep)

    assert [job.id for job in await queue.jobs("completed")] == young
    assert [await queue.get_job(job_id) for job_id in old] == [None, None]


async def test_keep_count_and_age_both_apply(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    keep = corral.Keep(count=2, age=60)
    await finish_in_turn(queue, clock, make_worker, 2, remove_on_complete=keep)
    await clock.advance(120)

    young = await finish_in_turn(queue, clock, make_worker, 3, remove_on_complete=keep)

    assert [job.id for job in await queue.jobs("completed")] == [young[2], young[1]]


@pytest.mark.parametrize("keep", [True, 0], ids=["True", "0"])
async def test_remove_on_fail_removes_the_job_when_it_fails(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory, keep: Any
) -> None:
    [job_id] = await finish_in_turn(queue, clock, make_worker, 1, fail=True, remove_on_fail=keep)

    assert await queue.get_job(job_id) is None
    assert (await queue.counts())["failed"] == 0


async def test_remove_on_fail_keeps_the_newest_n(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    ids = await finish_in_turn(queue, clock, make_worker, 3, fail=True, remove_on_fail=1)

    assert [job.id for job in await queue.jobs("failed")] == [ids[2]]


async def test_remove_on_fail_does_not_touch_retried_attempts(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    calls = 0

    async def fail_once(job: corral.Job) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first attempt")
        return "second"

    job = await queue.add("m", {}, attempts=2, remove_on_fail=True)

    assert await make_worker(fail_once).run(burst=True) == 2
    done = await stored(queue, job.id)
    assert (done.state, done.return_value, done.attempts_made) == ("completed", "second", 2)


async def test_retention_is_per_state(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    failed = await finish_in_turn(queue, clock, make_worker, 2, fail=True, remove_on_complete=1)
    completed = await finish_in_turn(queue, clock, make_worker, 2, remove_on_complete=1)

    assert sorted(job.id for job in await queue.jobs("failed")) == sorted(failed)
    assert [job.id for job in await queue.jobs("completed")] == [completed[1]]
