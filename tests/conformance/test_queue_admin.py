"""Producer and admin API of `corral.Queue`: reading, removing, pausing, cleaning, settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import corral
from corral.testing import VirtualClock

from .support import WorkerFactory, WorkerStarter, hold_active, stored

STATES = {"waiting", "delayed", "active", "completed", "failed", "waiting-children"}


async def succeed(job: corral.Job) -> str:
    return "done"


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


async def complete_one(
    queue: corral.Queue, make_worker: WorkerFactory, name: str = "m", **options: object
) -> corral.Job:
    job = await queue.add(name, {}, **options)
    assert await make_worker(succeed).run(burst=True) == 1
    return job


async def fail_one(
    queue: corral.Queue, make_worker: WorkerFactory, name: str = "m", **options: object
) -> corral.Job:
    job = await queue.add(name, {}, **options)
    assert await make_worker(explode).run(burst=True) == 1
    return job


# -- reading -------------------------------------------------------------------------------


async def test_get_job_returns_the_stored_job(queue: corral.Queue) -> None:
    added = await queue.add("m", {"k": [1, 2]}, job_id="j1")

    job = await queue.get_job("j1")

    assert isinstance(job, corral.Job)
    assert (job.id, job.name, job.data, job.state) == ("j1", "m", {"k": [1, 2]}, "waiting")
    assert job.created_at == added.created_at


async def test_get_job_of_unknown_id_is_none(queue: corral.Queue) -> None:
    assert await queue.get_job("nope") is None


async def test_counts_has_all_six_states(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    assert await queue.counts() == dict.fromkeys(STATES, 0)

    await complete_one(queue, make_worker)
    await fail_one(queue, make_worker)
    await queue.add("m", {}, delay=60)
    await queue.add("m", {}, delay=60)
    held = await queue.add("m", {}, job_id="held")
    await hold_active(queue, make_worker, start_worker, held.id)
    await queue.add("m", {})
    await queue.add("m", {})
    await queue.add("m", {})

    assert await queue.counts() == {
        "waiting": 3, "delayed": 2, "active": 1, "completed": 1, "failed": 1,
        "waiting-children": 0,
    }
    assert [job.id for job in await queue.jobs("active")] == [held.id]
    assert len(await queue.jobs("waiting-children")) == 0


async def test_jobs_waiting_in_run_order_with_paging(queue: corral.Queue) -> None:
    for name in "abcde":
        await queue.add(name, {})

    pages = [
        [job.name for job in await queue.jobs("waiting", offset=offset, limit=2)]
        for offset in (0, 2, 4, 6)
    ]

    assert pages == [["a", "b"], ["c", "d"], ["e"], []]
    assert [job.name for job in await queue.jobs("waiting")] == list("abcde")


async def test_jobs_delayed_next_due_first(queue: corral.Queue) -> None:
    await queue.add("in30", {}, delay=30)
    await queue.add("in10", {}, delay=10)
    await queue.add("in20", {}, delay=20)

    assert [job.name for job in await queue.jobs("delayed")] == ["in10", "in20", "in30"]
    assert [job.name for job in await queue.jobs("delayed", offset=1, limit=1)] == ["in20"]


async def test_jobs_finished_newest_first(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    for name in ["first", "second", "third"]:
        await complete_one(queue, make_worker, name)
        await clock.advance(1)

    assert [job.name for job in await queue.jobs("completed")] == ["third", "second", "first"]
    assert [job.name for job in await queue.jobs("completed", offset=1, limit=5)] == [
        "second", "first",
    ]
    assert all(job.state == "completed" for job in await queue.jobs("completed"))


async def test_jobs_accepts_job_state_enum(queue: corral.Queue) -> None:
    await queue.add("m", {})

    assert len(await queue.jobs(corral.JobState.WAITING)) == 1


async def test_jobs_refuses_unknown_state(queue: corral.Queue) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await queue.jobs("finished")


# -- removing ------------------------------------------------------------------------------


async def test_remove_waiting_delayed_and_finished_jobs(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    done = await complete_one(queue, make_worker)
    dead = await fail_one(queue, make_worker)
    waiting = await queue.add("m", {})
    delayed = await queue.add("m", {}, delay=60)

    for job in (done, dead, waiting, delayed):
        assert await queue.remove(job.id) is True
        assert await queue.get_job(job.id) is None
    assert sum((await queue.counts()).values()) == 0


async def test_remove_unknown_id_is_false(queue: corral.Queue) -> None:
    assert await queue.remove("nope") is False


async def test_remove_active_job_raises_job_locked(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    job = await queue.add("m", {})
    await hold_active(queue, make_worker, start_worker, job.id)

    with pytest.raises(corral.JobLockedError):
        await queue.remove(job.id)

    assert (await stored(queue, job.id)).state == "active"


# -- pause, promote, retry -----------------------------------------------------------------


async def test_paused_queue_takes_adds_but_runs_nothing(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    worker = make_worker(succeed)
    assert await queue.is_paused() is False

    await queue.pause()
    job = await queue.add("m", {})

    assert await queue.is_paused() is True
    assert await worker.run(burst=True) == 0
    assert (await stored(queue, job.id)).state == "waiting"

    await queue.resume()

    assert await queue.is_paused() is False
    assert await worker.run(burst=True) == 1
    assert (await stored(queue, job.id)).state == "completed"


async def test_pause_is_seen_by_other_queue_objects(
    queue: corral.Queue, store_url: str, clock: VirtualClock
) -> None:
    await queue.pause()

    async with corral.Queue("q", url=store_url, clock=clock) as other:
        assert await other.is_paused() is True
    async with corral.Queue("other", url=store_url, clock=clock) as unrelated:
        assert await unrelated.is_paused() is False


async def test_promote_makes_delayed_job_waiting(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, delay=timedelta(hours=2))

    assert await queue.promote(job.id) is True

    assert (await stored(queue, job.id)).state == "waiting"
    assert await make_worker(succeed).run(burst=True) == 1


async def test_promote_refuses_jobs_that_are_not_delayed(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    assert await queue.promote(job.id) is False
    assert await queue.promote("nope") is False
    assert (await stored(queue, job.id)).state == "waiting"


async def test_retry_failed_moves_failed_jobs_back_with_limit(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    for _ in range(3):
        await fail_one(queue, make_worker)
    done = await complete_one(queue, make_worker)

    assert await queue.retry_failed(limit=2) == 2
    counts = await queue.counts()
    assert (counts["failed"], counts["waiting"]) == (1, 2)

    assert await queue.retry_failed() == 1
    counts = await queue.counts()
    assert (counts["failed"], counts["waiting"], counts["completed"]) == (0, 3, 1)
    assert (await stored(queue, done.id)).state == "completed"
    assert await queue.retry_failed() == 0


async def test_retry_of_a_job_not_failed_is_false(queue: corral.Queue) -> None:
    job = await queue.add("m", {})

    assert await queue.retry(job.id) is False
    assert await queue.retry("nope") is False
    assert (await stored(queue, job.id)).state == "waiting"


async def test_queue_retry_of_failed_job(queue: corral.Queue, make_worker: WorkerFactory) -> None:
    job = await fail_one(queue, make_worker)

    assert await queue.retry(job.id) is True

    assert (await stored(queue, job.id)).state == "waiting"


# -- clean, drain, obliterate --------------------------------------------------------------


async def test_clean_removes_finished_jobs_older_than_grace(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    old = [await complete_one(queue, make_worker) for _ in range(3)]
    old_failed = await fail_one(queue, make_worker)
    await clock.advance(timedelta(hours=2))
    recent = await complete_one(queue, make_worker)

    removed = await queue.clean("completed", grace=3600)

    assert sorted(removed) == sorted(job.id for job in old)
    assert [job.id for job in await queue.jobs("completed")] == [recent.id]
    assert (await stored(queue, old_failed.id)).state == "failed"

    assert await queue.clean("failed", grace=timedelta(hours=1)) == [old_failed.id]
    assert (await queue.counts())["failed"] == 0


async def test_clean_stops_at_limit(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    jobs = [await complete_one(queue, make_worker) for _ in range(5)]
    await clock.advance(10)

    removed = await queue.clean("completed", grace=0, limit=2)

    assert len(removed) == 2
    assert set(removed) <= {job.id for job in jobs}
    assert (await queue.counts())["completed"] == 3


async def test_clean_waiting_jobs(queue: corral.Queue, clock: VirtualClock) -> None:
    old = await queue.add("m", {})
    await clock.advance(120)
    young = await queue.add("m", {})

    assert await queue.clean("waiting", grace=60) == [old.id]
    assert [job.id for job in await queue.jobs("waiting")] == [young.id]


async def test_drain_removes_waiting_jobs_and_delayed_on_request(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    done = await complete_one(queue, make_worker)
    await queue.add("m", {})
    await queue.add("m", {})
    delayed = await queue.add("m", {}, delay=60)

    assert await queue.drain() == 2
    counts = await queue.counts()
    assert (counts["waiting"], counts["delayed"], counts["completed"]) == (0, 1, 1)

    await queue.add("m", {})
    assert await queue.drain(delayed=True) == 2
    assert await queue.get_job(delayed.id) is None
    assert (await stored(queue, done.id)).state == "completed"


async def test_obliterate_removes_every_job_and_setting(
    queue: corral.Queue, make_worker: WorkerFactory, store_url: str, clock: VirtualClock
) -> None:
    await queue.configure(max_payload=4096)
    await complete_one(queue, make_worker)
    await fail_one(queue, make_worker)
    await queue.add("m", {}, delay=60)
    await queue.add("m", {})
    async with corral.Queue("kept", url=store_url, clock=clock) as kept:
        await kept.add("m", {})

        await queue.obliterate()

        assert await queue.counts() == dict.fromkeys(STATES, 0)
        assert (await queue.config()).max_payload == 1_048_576
        assert (await kept.counts())["waiting"] == 1


async def test_obliterate_refuses_with_active_jobs_unless_forced(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    job = await queue.add("m", {})
    await queue.add("m", {})
    await hold_active(queue, make_worker, start_worker, job.id)
    before = await queue.counts()

    with pytest.raises(corral.JobLockedError):
        await queue.obliterate()

    assert await queue.counts() == before
    await queue.obliterate(force=True)
    assert await queue.counts() == dict.fromkeys(STATES, 0)


# -- the queue itself ----------------------------------------------------------------------


async def test_ping(queue: corral.Queue) -> None:
    assert await queue.ping() is True


async def test_configure_round_trip(
    queue: corral.Queue, store_url: str, clock: VirtualClock
) -> None:
    defaults = corral.JobOptions(
        attempts=3, backoff=corral.Backoff.custom([60, 300, 900]), remove_on_fail=50
    )

    config = await queue.configure(defaults=defaults, max_payload=2048, events="all")

    assert isinstance(config, corral.QueueConfig)
    assert (config.max_payload, config.events) == (2048, "all")
    assert config.defaults == defaults
    async with corral.Queue("q", url=store_url, clock=clock) as other:
        read = await other.config()
    assert read == config
    assert read.defaults.attempts == 3
    assert read.defaults.backoff == corral.Backoff.custom([60, 300, 900])


async def test_configure_is_a_partial_update(queue: corral.Queue) -> None:
    await queue.configure(defaults=corral.JobOptions(attempts=4), max_payload=2048)

    config = await queue.configure(events="off")

    assert (config.max_payload, config.events) == (2048, "off")
    assert config.defaults.attempts == 4
    assert await queue.config() == config


async def test_config_of_a_new_queue_is_the_library_defaults(queue: corral.Queue) -> None:
    config = await queue.config()

    assert (config.max_payload, config.events) == (1_048_576, "final")
    assert config.defaults.given() == {}


@pytest.mark.parametrize(
    "settings",
    [
        {"events": "everything"},
        {"max_payload": 0},
        {"max_payload": "1MB"},
        {"defaults": corral.JobOptions(job_id="x")},
        {"defaults": {"attempts": 0}},
    ],
    ids=["events", "max_payload-zero", "max_payload-str", "defaults-job_id", "defaults-bad"],
)
async def test_configure_refuses_bad_settings_and_keeps_the_old(
    queue: corral.Queue, settings: dict[str, Any]
) -> None:
    await queue.configure(max_payload=2048)

    with pytest.raises(corral.InvalidOptionError):
        await queue.configure(**settings)

    config = await queue.config()
    assert (config.max_payload, config.events) == (2048, "final")
    assert config.defaults.given() == {}


async def test_async_with_closes_and_keeps_what_was_added(
    store_url: str, clock: VirtualClock
) -> None:
    async with corral.Queue("q", url=store_url, clock=clock) as queue:
        job = await queue.add("m", {"kept": True})

    async with corral.Queue("q", url=store_url, clock=clock) as again:
        assert (await stored(again, job.id)).data == {"kept": True}


async def test_queues_in_one_store_are_separate(store_url: str, clock: VirtualClock) -> None:
    async with (
        corral.Queue("a", url=store_url, clock=clock) as a,
        corral.Queue("b", url=store_url, clock=clock) as b,
    ):
        await a.add("m", {}, job_id="same")
        await b.add("n", {}, job_id="same")

        assert (await stored(a, "same")).name == "m"
        assert (await stored(b, "same")).name == "n"
        assert (await a.counts())["waiting"] == 1
        await a.pause()
        assert await b.is_paused() is False
