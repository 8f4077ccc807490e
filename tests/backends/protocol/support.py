"""Helpers shared by the store tests: jobs to add, adding, claiming, reading back.

The calls go through the `Backend` protocol only, so they work on every store."""

from __future__ import annotations

import json
from typing import Any

from corral.backends.base import (
    AddResult,
    Backend,
    Claimed,
    Complete,
    DedupeRule,
    Fail,
    Limits,
    NewJob,
    Retention,
    SettleResult,
)

T0 = 1_700_000_000_000
"""A fixed store time (epoch ms), passed as `now_ms` as a virtual clock would."""
LOCK_MS = 30_000
KEEP_ALL = Retention(None, None)


def new_job(job_id: str, **changes: Any) -> NewJob:
    """A job to add, with every option at its plainest unless changed."""
    fields: dict[str, Any] = {
        "id": job_id,
        "name": "task",
        "data": json.dumps({"id": job_id}),
        "options": "{}",
        "priority": 0,
        "lifo": False,
        "delay_ms": None,
        "run_at_ms": None,
        "tags": (),
        "group": None,
        "keep_completed": KEEP_ALL,
        "keep_failed": KEEP_ALL,
    }
    fields.update(changes)
    return NewJob(**fields)


def ids(claimed: list[Claimed]) -> list[str]:
    """The job ids of claimed jobs, in claim order."""
    return [c.record.id for c in claimed]


async def add(backend: Backend, *jobs: NewJob, queue: str = "q", now: int = T0) -> None:
    """Add jobs at the queue's current config version."""
    await add_jobs(backend, list(jobs), queue=queue, now=now)


async def add_jobs(
    backend: Backend, jobs: list[NewJob], queue: str = "q", now: int = T0
) -> AddResult:
    """Add jobs at the queue's current config version, failing the test when the store
    reports a stale config."""
    version = (await backend.get_config(queue)).version
    result = await backend.add(queue, jobs, version, now)
    assert not result.stale_config
    return result


async def claim(
    backend: Backend, count: int, now: int = T0, queue: str = "q", lock_ms: int = LOCK_MS
) -> list[Claimed]:
    """Claim up to `count` jobs and nothing else."""
    result = await backend.settle(queue, [], count, lock_ms, "w1", now)
    return result.claimed


async def state_of(backend: Backend, job_id: str, queue: str = "q") -> str | None:
    """A job's stored state, or None when it is gone."""
    job = await backend.get_job(queue, job_id)
    return None if job is None else str(job.state)


# -- limits, dedupe and admin ------------------------------------------------------------

SECOND = 1000
EMPTY = {
    "waiting": 0, "delayed": 0, "active": 0, "completed": 0, "failed": 0, "waiting-children": 0,
}
"""`counts` of a queue with no jobs."""


async def limit(backend: Backend, queue: str = "q", **limits: Any) -> int:
    """Store limits (and a config text naming them) for the queue."""
    return await backend.set_config(queue, repr(sorted(limits.items())), Limits(**limits))


async def look(backend: Backend, count: int, now: int) -> SettleResult:
    """An idle worker's settle: no outcomes, `count` free slots."""
    return await backend.settle("q", [], count, LOCK_MS, "w1", now)


async def complete(backend: Backend, job_id: str, token: str, now: int = T0) -> None:
    """Complete a held job, failing the test when the store refuses."""
    result = await backend.settle("q", [Complete(job_id, token, "null")], 0, LOCK_MS, "w1", now)
    assert result.refused == []


def grouped(group: str | None, count: int, **changes: Any) -> list[NewJob]:
    """`count` jobs of a group, with ids like `A1`, `A2` (`U1` for ungrouped jobs)."""
    prefix = group or "U"
    return [new_job(f"{prefix}{i}", group=group, **changes) for i in range(1, count + 1)]


async def claim_one_by_one(backend: Backend, count: int, now: int = T0) -> list[str]:
    """Claim `count` times, one job each: the ids in claim order."""
    order: list[str] = []
    for _ in range(count):
        order += ids(await claim(backend, 1, now=now))
    return order


def deduped(job_id: str, key: str = "k", ttl_ms: int | None = None, replace: bool = False,
            **changes: Any) -> NewJob:
    """A job with a dedupe rule."""
    return new_job(job_id, dedupe=DedupeRule(key, ttl_ms, replace), **changes)


async def add_one(backend: Backend, job: NewJob, now: int = T0) -> tuple[str, bool, str]:
    """Add one job: the id of the job returned, whether it was created, its data."""
    result = await add_jobs(backend, [job], now=now)
    ((record, created),) = result.records
    return record.id, created, record.data


async def finish(backend: Backend, *, fail: list[str], done: list[str], now: int) -> None:
    """Claim every waiting job and fail or complete the named ones, in the given order."""
    held = {c.record.id: c.token for c in await claim(backend, 100, now)}
    for job_id in fail:
        await backend.settle("q", [Fail(job_id, held[job_id], "x", None)], 0, LOCK_MS, "w", now)
        now += 1
    for job_id in done:
        await backend.settle("q", [Complete(job_id, held[job_id], "1")], 0, LOCK_MS, "w", now)
        now += 1
