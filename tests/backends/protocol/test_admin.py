"""Reading, listing and managing jobs and queues, the same on every store."""

from __future__ import annotations

import pytest

from corral.backends.base import Backend, Complete
from corral.errors import JobLockedError
from tests.backends.protocol.support import EMPTY, LOCK_MS, T0, add, claim, new_job


async def test_counts_name_every_state(backend: Backend) -> None:
    assert await backend.counts("nothing-here") == EMPTY
    await add(backend, new_job("a"), new_job("b"), new_job("d", delay_ms=10))
    await claim(backend, 1)
    assert await backend.counts("q") == {**EMPTY, "waiting": 1, "delayed": 1, "active": 1}


async def test_remove(backend: Backend) -> None:
    await add(backend, new_job("a", tags=("t",)), new_job("b"))
    (b,) = [c for c in await claim(backend, 2) if c.record.id == "b"]
    with pytest.raises(JobLockedError):
        await backend.remove("q", "b")
    await backend.settle("q", [Complete("b", b.token, "1")], 0, LOCK_MS, "w", T0)
    assert await backend.add_log("q", "b", "hello", 10) == 1
    assert await backend.remove("q", "b")
    assert not await backend.remove("q", "b")
    assert await backend.get_logs("q", "b") == []
    await add(backend, new_job("b"))
    assert await backend.get_logs("q", "b") == []


async def test_logs_progress_and_data(backend: Backend) -> None:
    await add(backend, new_job("a"))
    counts = [await backend.add_log("q", "a", f"line {i}", 3) for i in range(5)]
    assert counts == [1, 2, 3, 3, 3]
    assert await backend.get_logs("q", "a") == ["line 2", "line 3", "line 4"]
    assert await backend.add_log("q", "a", "kept", 0) == 4
    assert await backend.add_log("q", "gone", "x", 3) == 0
    assert await backend.update_progress("q", "a", '{"pct": 5}')
    assert await backend.update_data("q", "a", '{"v": 2}')
    assert not await backend.update_progress("q", "gone", "1")
    assert not await backend.update_data("q", "gone", "1")
    job = await backend.get_job("q", "a")
    assert job is not None
    assert (job.progress, job.data) == ('{"pct": 5}', '{"v": 2}')
