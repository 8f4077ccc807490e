"""The blocking API: `corral.sync.Queue` and `corral.sync.Job`, from plain functions."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import corral
import corral.sync
from corral.testing import VirtualClock

from .support import WorkerFactory, stored

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def sync_queue(store_url: str, clock: VirtualClock) -> Iterator[corral.sync.Queue]:
    queue = corral.sync.Queue("q", url=store_url, clock=clock)
    yield queue
    queue.close()


def test_add_get_job_counts_jobs_remove(sync_queue: corral.sync.Queue) -> None:
    job = sync_queue.add("m", {"a": 1}, job_id="s1", tags=["t"])
    delayed = sync_queue.add("m", {"b": 2}, delay=timedelta(minutes=5))

    assert isinstance(job, corral.sync.Job)
    assert (job.id, job.name, job.data, job.state) == ("s1", "m", {"a": 1}, "waiting")
    assert job.created_at == START
    assert delayed.run_at == START + timedelta(minutes=5)
    fetched = sync_queue.get_job("s1")
    assert isinstance(fetched, corral.sync.Job)
    assert fetched.data == {"a": 1}
    assert sync_queue.get_job("nope") is None
    assert sync_queue.counts() == {
        "waiting": 1, "delayed": 1, "active": 0, "completed": 0, "failed": 0,
        "waiting-children": 0,
    }
    listed = sync_queue.jobs("delayed", offset=0, limit=10)
    assert [j.id for j in listed] == [delayed.id]
    assert all(isinstance(j, corral.sync.Job) for j in listed)

    assert sync_queue.remove("s1") is True

    assert sync_queue.get_job("s1") is None
    assert sync_queue.remove("s1") is False
    assert sync_queue.counts()["waiting"] == 0


def test_same_id_returns_the_stored_job(sync_queue: corral.sync.Queue) -> None:
    sync_queue.add("m", {"v": 1}, job_id="dup")

    again = sync_queue.add("m", {"v": 2}, job_id="dup")

    assert again.data == {"v": 1}
    assert sync_queue.counts()["waiting"] == 1


def test_sync_job_methods_block(sync_queue: corral.sync.Queue) -> None:
    job = sync_queue.add("m", {"v": 1}, delay=60)

    job.update_progress(30)
    assert job.log("first line") == 1
    job.update_data({"v": 2})
    assert job.promote() is True

    assert job.get_state() == "waiting"
    again = sync_queue.get_job(job.id)
    assert again is not None
    assert (again.progress, again.data) == (30, {"v": 2})
    assert again.logs() == ["first line"]
    assert job.remove() is True
    assert job.get_state() is None


def test_errors_are_raised_as_in_the_async_api(sync_queue: corral.sync.Queue) -> None:
    with pytest.raises(corral.InvalidOptionError):
        sync_queue.add("m", {}, attempts=0)
    with pytest.raises(corral.SerializationError, match=r"data\.when"):
        sync_queue.add("m", {"when": datetime.now(UTC)})

    assert sum(sync_queue.counts().values()) == 0


def test_admin_methods(sync_queue: corral.sync.Queue) -> None:
    assert sync_queue.ping() is True
    sync_queue.pause()
    assert sync_queue.is_paused() is True
    sync_queue.resume()
    assert sync_queue.is_paused() is False

    config = sync_queue.configure(max_payload=4096)

    assert config.max_payload == 4096
    assert sync_queue.config() == config
    sync_queue.add_bulk([corral.JobSpec("m", {"i": 1}), corral.JobSpec("m", {"i": 2})])
    assert sync_queue.drain() == 2


def test_with_block(store_url: str, clock: VirtualClock) -> None:
    with corral.sync.Queue("q", url=store_url, clock=clock) as queue:
        job = queue.add("m", {"x": 1})

    with corral.sync.Queue("q", url=store_url, clock=clock) as queue:
        again = queue.get_job(job.id)
        assert again is not None
        assert again.data == {"x": 1}


def test_sync_and_async_queues_share_the_store(
    sync_queue: corral.sync.Queue, store_url: str
) -> None:
    sync_queue.add("m", {"from": "sync"}, job_id="shared")

    async def read() -> Any:
        async with corral.Queue("q", url=store_url) as queue:
            job = await queue.get_job("shared")
            return None if job is None else job.data

    assert asyncio.run(read()) == {"from": "sync"}


async def test_plain_function_processor_gets_a_sync_job(
    queue: corral.Queue, store_url: str, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    follow_ups = corral.sync.Queue("q", url=store_url, clock=clock)
    seen: list[Any] = []

    def first(job: corral.sync.Job) -> dict[str, Any]:
        seen.append(isinstance(job, corral.sync.Job))
        seen.append(job.get_state())
        job.update_progress({"stage": "half"})
        job.log("working")
        follow_ups.add("next", {"after": job.id}, job_id="follow-up")
        return {"handled": job.data["n"]}

    def then(job: corral.sync.Job) -> str:
        return f"after {job.data['after']}"

    try:
        job = await queue.add("first", {"n": 7})
        worker = make_worker({"first": first, "next": then})

        assert await worker.run(burst=True) == 2
    finally:
        follow_ups.close()

    assert seen == [True, "active"]
    done = await stored(queue, job.id)
    assert done.return_value == {"handled": 7}
    assert done.progress == {"stage": "half"}
    assert await done.logs() == ["working"]
    follow_up = await stored(queue, "follow-up")
    assert (follow_up.state, follow_up.return_value) == ("completed", f"after {job.id}")


# -- one implementation ---------------------------------------------------------------------


def _coroutine_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"),
    [(corral.Queue, corral.sync.Queue), (corral.Job, corral.sync.Job)],
    ids=["Queue", "Job"],
)
def test_blocking_api_has_every_async_method_with_the_same_parameters(
    async_cls: type, sync_cls: type
) -> None:
    methods = _coroutine_methods(async_cls)
    assert methods, "no async methods found"

    for name, signature in methods.items():
        blocking = getattr(sync_cls, name, None)
        assert blocking is not None, f"corral.sync.{sync_cls.__name__} lacks {name}"
        assert not inspect.iscoroutinefunction(blocking), f"{name} must block, not be async"
        assert _shape(inspect.signature(blocking)) == _shape(signature), name


def test_sync_queue_survives_fork(sync_queue: corral.sync.Queue) -> None:
    sync_queue.add("m", {"from": "parent"})

    pid = os.fork()
    if pid == 0:  # the child: use the parent's queue object, then leave without cleanup
        code = 1
        try:
            signal.alarm(10)
            sync_queue.add("m", {"from": "child"}, job_id="from-child")
            code = 0 if sync_queue.counts()["waiting"] == 2 else 2
        finally:
            os._exit(code)

    deadline = time.monotonic() + 15
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung using the sync queue")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    child_job = sync_queue.get_job("from-child")
    assert child_job is not None
    assert child_job.data == {"from": "child"}
    sync_queue.add("m", {"from": "parent again"})
    assert sync_queue.counts()["waiting"] == 3
