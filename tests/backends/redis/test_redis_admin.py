"""Reading, listing and managing jobs and queues."""

from __future__ import annotations

import pytest
import redis

from corral.backends.base import Limits
from corral.backends.redis import RedisBackend
from corral.errors import BackendUnavailableError, InvalidOptionError, JobLockedError
from corral.job_state import JobState
from tests.backends.protocol.support import EMPTY, T0, add, claim, finish, new_job


async def test_listing_orders(backend: RedisBackend) -> None:
    await add(backend, new_job("d-late", delay_ms=900), new_job("d-soon", delay_ms=100))
    await add(backend, *(new_job(f"j{i}") for i in range(6)))
    await finish(backend, fail=["j0", "j1"], done=["j2", "j3", "j4", "j5"], now=T0 + 1)

    async def listed(state: str, offset: int = 0, limit: int = 10) -> list[str]:
        jobs = await backend.list_jobs("q", state, offset, limit)  # type: ignore[arg-type]
        assert {job.state for job in jobs} <= {JobState(state)}
        return [job.id for job in jobs]

    assert await listed("delayed") == ["d-soon", "d-late"]
    assert await listed("failed") == ["j1", "j0"]
    assert await listed("completed") == ["j5", "j4", "j3", "j2"]
    assert await listed("completed", 1, 2) == ["j4", "j3"]
    assert await listed("completed", 0, 0) == []
    assert await listed("active") == []
    assert await listed("waiting-children") == []
    with pytest.raises(InvalidOptionError):
        await backend.list_jobs("q", "running", 0, 10)  # type: ignore[arg-type]


async def test_active_jobs_are_listed_by_start(backend: RedisBackend) -> None:
    await add(backend, new_job("a"), new_job("b"), new_job("c"))
    await claim(backend, 1, T0 + 5, lock_ms=1000)
    await claim(backend, 2, T0 + 10, lock_ms=100)
    listed = await backend.list_jobs("q", "active", 0, 10)
    assert [job.id for job in listed] == ["a", "b", "c"]
    assert [job.id for job in await backend.list_jobs("q", "active", 1, 1)] == ["b"]


async def test_remove_tagged_takes_waiting_and_delayed_only(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a", tags=("lead:1",)), new_job("b", tags=("lead:1", "x")))
    await add(backend, new_job("c", tags=("lead:1",), delay_ms=50), new_job("d", tags=("x",)))
    await add(backend, new_job("active", tags=("lead:1",), priority=-1))
    await add(backend, new_job("prefix", tags=("lead:10",)))
    await claim(backend, 1)
    assert await backend.remove_tagged("q", "lead:1") == 3
    assert await backend.remove_tagged("q", "lead:1") == 0
    assert await backend.get_job("q", "active") is not None
    assert await backend.get_job("q", "prefix") is not None
    assert await backend.remove_tagged("q", "x") == 1
    assert await backend.counts("q") == {**EMPTY, "active": 1, "waiting": 1}
    entries = sorted(raw.zrange("corral:{q}:tags", 0, -1))
    assert entries == [b"lead:1\0active", b"lead:10\0prefix"]


async def test_retry_job_and_retry_failed(backend: RedisBackend) -> None:
    await add(backend, *(new_job(f"j{i}") for i in range(4)))
    await finish(backend, fail=["j2", "j0", "j1"], done=["j3"], now=T0)
    await backend.update_progress("q", "j3", "50")
    assert not await backend.retry_job("q", "missing", T0)
    assert await backend.retry_job("q", "j3", T0)
    job = await backend.get_job("q", "j3")
    assert job is not None
    assert (job.state, job.attempts_made, job.return_value, job.finished_at, job.progress) == (
        JobState.WAITING, 0, None, None, None,
    )
    assert not await backend.retry_job("q", "j3", T0)
    assert await backend.retry_failed("q", 0, T0) == 0
    assert await backend.retry_failed("q", 2, T0) == 2
    assert [job.id for job in await backend.list_jobs("q", "waiting", 0, 10)] == ["j3", "j2", "j0"]
    assert await backend.retry_failed("q", None, T0) == 1
    failed_again = await backend.get_job("q", "j1")
    assert failed_again is not None
    assert (failed_again.failed_reason, failed_again.attempts_made) == (None, 0)
    assert (await backend.counts("q"))["failed"] == 0


async def test_clean(backend: RedisBackend) -> None:
    await add(backend, *(new_job(f"j{i}") for i in range(4)))
    await finish(backend, fail=[], done=["j0", "j1", "j2", "j3"], now=T0)  # finished T0..T0+3
    await add(backend, new_job("w"), now=T0)
    await add(backend, new_job("d1", delay_ms=10**6), new_job("d2", delay_ms=10), now=T0 + 5)
    assert sorted(await backend.clean("q", "completed", 1000, 2, T0 + 1002)) == ["j0", "j1"]
    assert await backend.clean("q", "completed", 1000, 0, T0 + 1002) == ["j2"]
    assert await backend.clean("q", "waiting", 1000, 10, T0 + 999) == []
    assert await backend.clean("q", "waiting", 1000, 10, T0 + 1000) == ["w"]
    assert await backend.clean("q", "delayed", 0, 1, T0 + 5) == ["d1"]
    assert await backend.clean("q", "delayed", 0, 0, T0 + 5) == ["d2"]
    with pytest.raises(InvalidOptionError):
        await backend.clean("q", "active", 0, 10, T0)


async def test_drain_and_obliterate(backend: RedisBackend, raw: redis.Redis) -> None:
    await add(backend, new_job("a", tags=("t",)), new_job("b"), new_job("d", delay_ms=5))
    await add(backend, new_job("act", priority=-1))
    await claim(backend, 1)
    assert await backend.drain("q", False) == 2
    assert await backend.counts("q") == {**EMPTY, "delayed": 1, "active": 1}
    assert await backend.drain("q", True) == 1
    with pytest.raises(JobLockedError):
        await backend.obliterate("q", False)
    await backend.set_config("q", "{}", Limits())
    await backend.obliterate("q", True)
    assert await backend.counts("q") == EMPTY
    assert await backend.queue_names() == []
    assert (await backend.get_config("q")).version == 0
    assert raw.keys("corral:{q}:*") == []
    await add(backend, new_job("again"))
    assert await backend.queue_names() == ["q"]


async def test_a_closed_backend_refuses_calls(redis_url: str) -> None:
    store = RedisBackend(redis_url, {})
    assert await store.ping()
    await store.close()
    await store.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        await store.ping()
