"""`corral.Job`: its attributes and the methods that act on the stored job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

import corral
import corral.sync
from corral.testing import VirtualClock

from .support import WorkerFactory, WorkerStarter, hold_active, stored

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)


async def succeed(job: corral.Job) -> dict[str, Any]:
    return {"ok": True, "n": [1, 2]}


async def explode_deeply(job: corral.Job) -> None:
    raise ValueError("boom from the processor")


def assert_utc(moment: datetime | None) -> None:
    assert isinstance(moment, datetime)
    assert moment.utcoffset() == timedelta(0)


async def test_attributes_of_a_new_job(queue: corral.Queue) -> None:
    job = await queue.add(
        "email1", {"leadId": "L1"}, job_id="email1:L1", priority=3, tags=["lead:L1"],
        attempts=2, timeout=30,
    )

    assert job.id == "email1:L1"
    assert job.name == "email1"
    assert job.data == {"leadId": "L1"}
    assert job.queue_name == "q"
    assert isinstance(job.state, corral.JobState)
    assert job.state == corral.JobState.WAITING
    assert job.attempts_made == 0
    assert job.stalled_count == 0
    assert job.progress is None
    assert job.return_value is None
    assert job.failed_reason is None
    assert job.stacktrace is None
    assert_utc(job.created_at)
    assert job.created_at == START
    assert job.processed_at is None
    assert job.finished_at is None
    assert job.priority == 3
    assert list(job.tags) == ["lead:L1"]
    assert job.group is None
    assert isinstance(job.options, corral.JobOptions)
    assert job.options.attempts == 2
    assert job.options.timeout == 30


async def test_attributes_of_a_delayed_job(queue: corral.Queue) -> None:
    job = await queue.add("m", {}, delay=timedelta(hours=1))

    assert job.state == corral.JobState.DELAYED
    assert_utc(job.run_at)
    assert job.run_at == START + timedelta(hours=1)


async def test_attributes_of_a_completed_job(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {})
    await clock.advance(5)

    assert await make_worker(succeed).run(burst=True) == 1

    done = await stored(queue, job.id)
    assert done.state == corral.JobState.COMPLETED
    assert done.return_value == {"ok": True, "n": [1, 2]}
    assert done.attempts_made == 1
    assert done.created_at == START
    assert_utc(done.processed_at)
    assert done.processed_at == START + timedelta(seconds=5)
    assert_utc(done.finished_at)
    assert done.finished_at == START + timedelta(seconds=5)
    assert done.failed_reason is None


async def test_attributes_of_a_failed_job(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {})

    assert await make_worker(explode_deeply).run(burst=True) == 1

    failed = await stored(queue, job.id)
    assert failed.state == corral.JobState.FAILED
    assert failed.failed_reason is not None
    assert "boom from the processor" in failed.failed_reason
    assert failed.stacktrace is not None
    assert "explode_deeply" in failed.stacktrace
    assert failed.attempts_made == 1
    assert failed.return_value is None
    assert_utc(failed.finished_at)


async def test_to_json_is_json_with_every_field(queue: corral.Queue) -> None:
    job = await queue.add("m", {"a": 1}, tags=["t"], delay=10)

    shape = job.to_json()

    orjson.dumps(shape)  # strict JSON, datetimes as text
    for key in [
        "id", "name", "data", "state", "attempts_made", "stalled_count", "progress",
        "return_value", "failed_reason", "stacktrace", "created_at", "processed_at",
        "finished_at", "run_at", "priority", "tags", "group", "options",
    ]:
        assert key in shape
    assert shape["state"] == "delayed"
    assert datetime.fromisoformat(shape["created_at"]) == START
    assert datetime.fromisoformat(shape["run_at"]) == START + timedelta(seconds=10)
    assert shape["options"] == job.options.to_json()


# -- progress, logs, data ------------------------------------------------------------------


async def test_update_progress_from_the_processor(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async def report(job: corral.Job) -> None:
        await job.update_progress(40)
        await job.update_progress({"step": 2, "of": 3})

    job = await queue.add("m", {})
    await make_worker(report).run(burst=True)

    assert (await stored(queue, job.id)).progress == {"step": 2, "of": 3}


async def test_update_progress_outside_a_worker(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    await job.update_progress(12.5)

    assert job.progress == 12.5
    assert (await stored(queue, job.id)).progress == 12.5


async def test_update_progress_refuses_non_json(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    with pytest.raises(corral.SerializationError):
        await job.update_progress({"at": datetime.now(UTC)})

    assert (await stored(queue, job.id)).progress is None


async def test_log_and_logs(queue: corral.Queue, make_worker: WorkerFactory) -> None:
    async def chatty(job: corral.Job) -> None:
        await job.log("started")
        await job.log("halfway: 50%")

    job = await queue.add("m", {})
    assert await job.log("queued by test") == 1
    await make_worker(chatty).run(burst=True)

    assert await (await stored(queue, job.id)).logs() == [
        "queued by test", "started", "halfway: 50%",
    ]


async def test_logs_of_a_job_without_logs(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    assert await job.logs() == []


async def test_update_data(queue: corral.Queue, make_worker: WorkerFactory) -> None:
    seen: list[Any] = []

    async def read(job: corral.Job) -> None:
        seen.append(job.data)

    job = await queue.add("m", {"v": 1})
    await job.update_data({"v": 2, "extra": [True, None]})

    assert job.data == {"v": 2, "extra": [True, None]}
    assert (await stored(queue, job.id)).data == {"v": 2, "extra": [True, None]}
    await make_worker(read).run(burst=True)
    assert seen == [{"v": 2, "extra": [True, None]}]


async def test_update_data_refuses_non_json_and_keeps_the_data(queue: corral.Queue) -> None:
    job = await queue.add("m", {"v": 1})

    with pytest.raises(corral.SerializationError, match=r"data\.when"):
        await job.update_data({"when": datetime.now(UTC)})

    assert (await stored(queue, job.id)).data == {"v": 1}


async def test_update_data_respects_max_payload(queue: corral.Queue) -> None:
    await queue.configure(max_payload=100)
    job = await queue.add("m", {"v": 1})

    with pytest.raises(corral.PayloadTooLargeError):
        await job.update_data({"v": "x" * 200})

    assert (await stored(queue, job.id)).data == {"v": 1}


# -- state, remove, retry, promote ---------------------------------------------------------


async def test_get_state_follows_the_stored_job(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {})
    assert await job.get_state() == corral.JobState.WAITING

    await make_worker(succeed).run(burst=True)

    assert await job.get_state() == corral.JobState.COMPLETED


async def test_get_state_of_a_removed_job_is_none(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    assert await job.remove() is True

    assert await job.get_state() is None
    assert await queue.get_job(job.id) is None
    assert await job.remove() is False


async def test_methods_of_a_removed_job_raise_job_not_found(queue: corral.Queue) -> None:
    job = await queue.add("m", {})
    await queue.remove(job.id)

    with pytest.raises(corral.JobNotFoundError):
        await job.update_progress(1)
    with pytest.raises(corral.JobNotFoundError):
        await job.log("line")
    with pytest.raises(corral.JobNotFoundError):
        await job.update_data({"v": 2})
    assert issubclass(corral.JobNotFoundError, KeyError)
    assert issubclass(corral.JobNotFoundError, corral.CorralError)
    assert await queue.get_job(job.id) is None


async def test_remove_of_an_active_job_raises_job_locked(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    job = await queue.add("m", {})
    await hold_active(queue, make_worker, start_worker, job.id)

    with pytest.raises(corral.JobLockedError):
        await job.remove()


async def test_retry_starts_attempts_afresh(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    calls = 0

    async def flaky(job: corral.Job) -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ValueError(f"failure {calls}")
        return "finally"

    job = await queue.add("m", {}, attempts=2)
    worker = make_worker(flaky)
    assert await worker.run(burst=True) == 2
    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made) == ("failed", 2)

    assert await failed.retry() is True

    again = await stored(queue, job.id)
    assert again.state == "waiting"
    assert again.attempts_made == 0
    # Two fresh attempts: the first fails (failure 3), the second succeeds.
    assert await worker.run(burst=True) == 2
    done = await stored(queue, job.id)
    assert (done.state, done.attempts_made, done.return_value) == ("completed", 2, "finally")


async def test_retry_of_a_waiting_job_is_false(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    assert await job.retry() is False
    assert await job.get_state() == "waiting"


async def test_promote(queue: corral.Queue, make_worker: WorkerFactory) -> None:
    job = await queue.add("m", {}, delay=timedelta(days=1))

    assert await job.promote() is True

    assert await job.get_state() == "waiting"
    assert await job.promote() is False
    assert await make_worker(succeed).run(burst=True) == 1


# -- wait_until_finished -------------------------------------------------------------------


async def test_wait_until_finished_returns_the_result(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    start_worker(make_worker(succeed))
    job = await queue.add("m", {})

    assert await job.wait_until_finished(timeout=5) == {"ok": True, "n": [1, 2]}


async def test_wait_until_finished_raises_when_the_job_fails(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    start_worker(make_worker(explode_deeply))
    job = await queue.add("m", {})

    with pytest.raises(corral.JobFailedError, match="boom from the processor"):
        await job.wait_until_finished(timeout=5)


async def test_wait_until_finished_times_out(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    with pytest.raises(TimeoutError):
        await job.wait_until_finished(timeout=0.1)


async def test_wait_until_finished_of_an_already_finished_job(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {})
    await make_worker(succeed).run(burst=True)

    assert await job.wait_until_finished(timeout=1) == {"ok": True, "n": [1, 2]}


async def test_processors_add_follow_up_jobs_through_job_queue(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async def first(job: corral.Job) -> None:
        assert job.queue.name == "q"
        await job.queue.add("second", {"from": job.id}, job_id="second")

    def second(job: corral.sync.Job) -> None:  # a thread: the queue's methods block
        job.queue.add("third", {"from": job.id}, job_id="third")

    await queue.add("first", job_id="first")
    ran = await make_worker({"first": first, "second": second, "third": succeed}).run(burst=True)

    assert ran == 3
    third = await queue.get_job("third")
    assert third is not None
    assert third.state == corral.JobState.COMPLETED
    assert third.data == {"from": "second"}
