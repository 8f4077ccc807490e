"""Helpers for the Redis store's own tests."""

from __future__ import annotations

import json
from typing import Any

from corral.backends.base import AddResult, Backend, Claimed, NewJob, Retention

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
