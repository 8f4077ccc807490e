"""Producer API: `add` with each of its options, `add_bulk`, queue defaults and precedence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import corral
from corral.options import LIBRARY_DEFAULTS
from corral.testing import VirtualClock

from .support import WorkerFactory, WorkerStarter, hold_active, stored

START = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)


async def succeed(job: corral.Job) -> str:
    return "done"


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


def total(counts: dict[str, int]) -> int:
    return sum(counts.values())


# -- timing ----------------------------------------------------------------------------------


async def test_add_without_timing_is_waiting(queue: corral.Queue) -> None:
    job = await queue.add("m", {"a": 1})

    assert job.state == corral.JobState.WAITING
    assert job.name == "m"
    assert job.data == {"a": 1}
    assert (await queue.counts())["waiting"] == 1


async def test_delay_in_seconds_holds_job_until_due(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, delay=90)
    worker = make_worker(succeed)

    assert job.state == "delayed"
    assert job.run_at == START + timedelta(seconds=90)
    await clock.advance(89)
    assert await worker.run(burst=True) == 0
    assert (await stored(queue, job.id)).state == "delayed"
    await clock.advance(1)
    assert await worker.run(burst=True) == 1
    assert (await stored(queue, job.id)).state == "completed"


async def test_delay_as_timedelta(queue: corral.Queue) -> None:
    job = await queue.add("m", {}, delay=timedelta(minutes=30))

    assert job.state == "delayed"
    assert job.run_at == START + timedelta(minutes=30)
    assert (await queue.counts())["delayed"] == 1


async def test_zero_delay_is_waiting(queue: corral.Queue) -> None:
    job = await queue.add("m", {}, delay=0)

    assert job.state == "waiting"


async def test_run_at_with_any_timezone_is_stored_as_utc(queue: corral.Queue) -> None:
    plus_two = timezone(timedelta(hours=2))
    job = await queue.add("m", {}, run_at=datetime(2026, 2, 24, 14, 30, tzinfo=plus_two))

    assert job.state == "delayed"
    assert job.run_at == datetime(2026, 2, 24, 12, 30, tzinfo=UTC)
    assert job.run_at is not None
    assert job.run_at.utcoffset() == timedelta(0)


async def test_run_at_due_after_clock_reaches_it(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, run_at=START + timedelta(hours=5))
    worker = make_worker(succeed)

    await clock.advance(timedelta(hours=5) - timedelta(seconds=1))
    assert await worker.run(burst=True) == 0
    await clock.advance(1)
    assert await worker.run(burst=True) == 1
    assert (await stored(queue, job.id)).state == "completed"


async def test_run_at_in_the_past_is_waiting(queue: corral.Queue) -> None:
    job = await queue.add("m", {}, run_at=START - timedelta(hours=1))

    assert job.state == "waiting"


# -- attempts ------------------------------------------------------------------------------


async def test_attempts_are_all_used_before_failing(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("m", {}, attempts=3)

    # No backoff: each retry is due at once, so one burst runs all three attempts.
    assert await make_worker(explode).run(burst=True) == 3
    failed = await stored(queue, job.id)
    assert failed.state == "failed"
    assert failed.attempts_made == 3
    assert failed.options.attempts == 3


# -- job ids -------------------------------------------------------------------------------


async def _job_in_state(
    state: str,
    queue: corral.Queue,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> corral.Job:
    """A job with id `fixed` and data {"v": 1} in `state`."""
    timing: dict[str, Any] = {"delay": 60} if state == "delayed" else {}
    job = await queue.add("first", {"v": 1}, job_id="fixed", **timing)
    if state == "completed":
        assert await make_worker(succeed).run(burst=True) == 1
    elif state == "failed":
        assert await make_worker(explode).run(burst=True) == 1
    elif state == "active":
        await hold_active(queue, make_worker, start_worker, "fixed")
    return job


@pytest.mark.parametrize("state", ["waiting", "delayed", "active", "completed", "failed"])
async def test_job_id_still_stored_returns_that_job_unchanged(
    state: str,
    queue: corral.Queue,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    await _job_in_state(state, queue, make_worker, start_worker)
    before = await queue.counts()

    again = await queue.add("second", {"v": 2}, job_id="fixed", priority=7, tags=["x"])

    assert again.id == "fixed"
    assert again.name == "first"
    assert again.data == {"v": 1}
    assert again.state == state
    assert again.priority == 0
    assert list(again.tags) == []
    assert await queue.counts() == before
    kept = await stored(queue, "fixed")
    assert (kept.name, kept.data, kept.state) == ("first", {"v": 1}, state)


async def test_job_id_is_free_again_once_retention_removed_the_job(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    await queue.add("first", {"v": 1}, job_id="once", remove_on_complete=True)
    assert await make_worker(succeed).run(burst=True) == 1
    assert await queue.get_job("once") is None

    fresh = await queue.add("second", {"v": 2}, job_id="once")

    assert fresh.id == "once"
    assert fresh.name == "second"
    assert fresh.data == {"v": 2}
    assert fresh.state == "waiting"


async def test_job_id_is_free_again_after_remove(queue: corral.Queue) -> None:
    await queue.add("first", {"v": 1}, job_id="gone")
    assert await queue.remove("gone") is True

    fresh = await queue.add("second", {"v": 2}, job_id="gone")

    assert (fresh.name, fresh.data) == ("second", {"v": 2})


async def test_generated_ids_are_unique(queue: corral.Queue) -> None:
    jobs = [await queue.add("m", {"i": i}) for i in range(20)]

    assert len({job.id for job in jobs}) == 20
    assert (await queue.counts())["waiting"] == 20


# -- ordering ------------------------------------------------------------------------------


async def test_lowest_priority_runs_first_fifo_within_a_priority(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    for name, priority in [("p5", 5), ("p1a", 1), ("p3", 3), ("p1b", 1), ("neg", -2)]:
        await queue.add(name, {}, priority=priority)
    order: list[str] = []

    async def record(job: corral.Job) -> None:
        order.append(job.name)

    listed = [job.name for job in await queue.jobs("waiting")]
    assert await make_worker(record, concurrency=1).run(burst=True) == 5

    assert order == ["neg", "p1a", "p1b", "p3", "p5"]
    assert listed == order


async def test_lifo_job_goes_first_within_its_priority(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    await queue.add("a", {})
    await queue.add("b", {})
    await queue.add("c", {}, lifo=True)
    await queue.add("d", {})
    await queue.add("e", {}, lifo=True)
    await queue.add("low", {}, priority=1, lifo=True)
    order: list[str] = []

    async def record(job: corral.Job) -> None:
        order.append(job.name)

    assert await make_worker(record, concurrency=1).run(burst=True) == 6

    assert order == ["e", "c", "a", "b", "d", "low"]


# -- tags, timeout -------------------------------------------------------------------------


async def test_tags_are_stored(queue: corral.Queue) -> None:
    job = await queue.add("m", {}, tags=["lead:L1", "campaign:7"])

    assert sorted(job.tags) == ["campaign:7", "lead:L1"]
    assert sorted((await stored(queue, job.id)).tags) == ["campaign:7", "lead:L1"]


async def test_remove_tagged_removes_only_waiting_and_delayed(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    done = await queue.add("ok", {}, tags=["lead:L1"])
    await make_worker({"ok": succeed}).run(burst=True)
    dead = await queue.add("bad", {}, tags=["lead:L1"])
    await make_worker({"bad": explode}).run(burst=True)
    waiting = await queue.add("m", {}, tags=["lead:L1"])
    delayed = await queue.add("m", {}, tags=["lead:L1", "other"], delay=60)
    untagged = await queue.add("m", {}, tags=["lead:L2"])

    assert await queue.remove_tagged("lead:L1") == 2

    assert await queue.get_job(waiting.id) is None
    assert await queue.get_job(delayed.id) is None
    assert (await stored(queue, untagged.id)).state == "waiting"
    assert (await stored(queue, done.id)).state == "completed"
    assert (await stored(queue, dead.id)).state == "failed"
    assert await queue.remove_tagged("lead:L1") == 0


async def test_timeout_is_stored_in_seconds(queue: corral.Queue) -> None:
    job = await queue.add("m", {}, timeout=timedelta(seconds=90))
    plain = await queue.add("m", {}, timeout=2.5)

    assert (await stored(queue, job.id)).options.timeout == 90
    assert (await stored(queue, plain.id)).options.timeout == 2.5


# -- defaults and precedence ---------------------------------------------------------------


async def test_library_defaults(queue: corral.Queue) -> None:
    job = await queue.add("m", {})
    options = (await stored(queue, job.id)).options

    assert options.attempts == 1
    assert options.backoff is None
    assert options.priority == 0
    assert options.lifo is False
    assert options.timeout is None
    assert options.remove_on_complete == corral.Keep(count=1000)
    assert options.remove_on_fail == corral.Keep(count=10000)
    assert job.priority == 0
    assert (await queue.config()).max_payload == 1_048_576
    assert (await queue.config()).events == "final"


async def test_stored_defaults_apply_to_every_producer(
    queue: corral.Queue, store_url: str, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    await queue.configure(defaults=corral.JobOptions(attempts=3, priority=4))

    async with corral.Queue("q", url=store_url, clock=clock) as other:
        job = await other.add("m", {})

    assert job.options.attempts == 3
    assert job.priority == 4
    assert job.options.remove_on_fail == corral.Keep(count=10000)
    assert await make_worker(explode).run(burst=True) == 3
    assert (await stored(queue, job.id)).attempts_made == 3


async def test_add_keywords_override_stored_defaults(queue: corral.Queue) -> None:
    await queue.configure(
        defaults=corral.JobOptions(
            attempts=3, priority=4, backoff=corral.Backoff.fixed(10), remove_on_complete=5
        )
    )

    job = await queue.add("m", {}, attempts=2, remove_on_complete=True)
    options = (await stored(queue, job.id)).options

    assert options.attempts == 2
    assert options.remove_on_complete == corral.Keep(count=0)
    assert options.priority == 4
    assert options.backoff == corral.Backoff.fixed(10)
    assert options.remove_on_fail == corral.Keep(count=10000)


async def test_changed_defaults_apply_to_later_adds_only(queue: corral.Queue) -> None:
    early = await queue.add("m", {})
    await queue.configure(defaults=corral.JobOptions(attempts=5))
    late = await queue.add("m", {})

    assert (await stored(queue, early.id)).options.attempts == 1
    assert (await stored(queue, late.id)).options.attempts == 5


async def test_a_default_delay_applies_unless_the_job_has_timing_of_its_own(
    queue: corral.Queue,
) -> None:
    await queue.configure(defaults=corral.JobOptions(delay=60, priority=2))
    plain = await queue.add("m", {}, job_id="plain")
    own_delay = await queue.add("m", {}, delay=5)
    own_run_at = await queue.add("m", {}, run_at=START + timedelta(seconds=30))
    own_options = await queue.add("m", {}, attempts=2)

    assert plain.id == "plain"
    assert plain.run_at == own_options.run_at == START + timedelta(seconds=60)
    assert own_delay.run_at == START + timedelta(seconds=5)
    assert own_run_at.run_at == START + timedelta(seconds=30)
    assert {job.priority for job in (plain, own_delay, own_run_at, own_options)} == {2}
    # A job that sets the defaults' own values stores what one that sets nothing does.
    same = await queue.add("m", {}, priority=2)
    assert (await stored(queue, same.id)).options == (await stored(queue, plain.id)).options


async def test_the_job_add_returns_is_the_job_stored(queue: corral.Queue) -> None:
    await queue.configure(defaults=corral.JobOptions(attempts=3))
    jobs = [
        await queue.add("m", {"a": 1}),
        await queue.add("m", [1, 2], delay=90, tags=["t"], group="g", priority=-2),
        await queue.add("m", None, run_at=START + timedelta(hours=1), lifo=True,
                        remove_on_complete=5, backoff=corral.Backoff.exponential(2)),
        *await queue.add_bulk([corral.JobSpec("m", {"b": 2}, delay=10, timeout=3)]),
    ]
    for job in jobs:
        assert job.to_json() == (await stored(queue, job.id)).to_json()


async def test_a_job_stores_only_the_options_that_differ_from_the_defaults(
    queue: corral.Queue,
) -> None:
    plain = await queue.add("m", {})
    own = await queue.add("m", {}, attempts=3, remove_on_complete=1000)  # 1000: the default
    records = [await queue.backend.get_job(queue.name, job.id) for job in (plain, own)]
    assert [record.options for record in records if record] == ["{}", '{"attempts":3}']
    effective = (await stored(queue, own.id)).options
    assert (effective.attempts, effective.remove_on_complete) == (3, corral.Keep(count=1000))
    assert effective.to_json() == {
        **corral.JobOptions(**LIBRARY_DEFAULTS).to_json(), "attempts": 3,
    }


async def test_generated_ids_sort_by_when_they_were_made(
    queue: corral.Queue, clock: VirtualClock
) -> None:
    made = []
    for _ in range(6):
        made.append((await queue.add("m", {})).id)
        await clock.advance(0.002)
    made += [job.id for job in await queue.add_bulk([corral.JobSpec("m", {})] * 2)]
    assert made[:6] == sorted(made[:6])
    assert all(len(job_id) == 32 and int(job_id, 16) >= 0 for job_id in made)
    assert len(set(made)) == len(made)


# -- add_bulk ------------------------------------------------------------------------------


async def test_add_bulk_writes_every_job_in_order(queue: corral.Queue) -> None:
    jobs = await queue.add_bulk(
        [
            corral.JobSpec("m", {"i": 1}),
            corral.JobSpec("m", {"i": 2}, delay=5),
            corral.JobSpec("n", {"i": 3}, job_id="bulk-3", priority=2),
        ]
    )

    assert [job.data for job in jobs] == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert [str(job.state) for job in jobs] == ["waiting", "delayed", "waiting"]
    assert jobs[1].run_at == START + timedelta(seconds=5)
    assert jobs[2].id == "bulk-3"
    assert jobs[2].priority == 2
    counts = await queue.counts()
    assert (counts["waiting"], counts["delayed"]) == (2, 1)


async def test_add_bulk_of_nothing(queue: corral.Queue) -> None:
    assert await queue.add_bulk([]) == []
    assert total(await queue.counts()) == 0


async def test_add_bulk_returns_stored_job_for_a_known_id(queue: corral.Queue) -> None:
    await queue.add("m", {"v": 1}, job_id="known")

    jobs = await queue.add_bulk(
        [corral.JobSpec("m", {"v": 2}, job_id="known"), corral.JobSpec("m", {"v": 3})]
    )

    assert jobs[0].data == {"v": 1}
    assert jobs[1].data == {"v": 3}
    assert (await queue.counts())["waiting"] == 2


async def test_add_bulk_with_one_non_json_spec_writes_nothing(queue: corral.Queue) -> None:
    await queue.add("m", {"before": True})
    before = await queue.counts()

    with pytest.raises(corral.SerializationError, match=r"data\.bad"):
        await queue.add_bulk(
            [
                corral.JobSpec("m", {"i": 1}),
                corral.JobSpec("m", {"i": 2}),
                corral.JobSpec("m", {"bad": {1, 2}}),
            ]
        )

    assert await queue.counts() == before


async def test_add_bulk_with_one_payload_too_large_writes_nothing(queue: corral.Queue) -> None:
    await queue.configure(max_payload=200)
    before = await queue.counts()

    with pytest.raises(corral.PayloadTooLargeError):
        await queue.add_bulk(
            [corral.JobSpec("m", {"i": 1}), corral.JobSpec("m", {"blob": "x" * 500})]
        )

    assert await queue.counts() == before


async def test_add_bulk_refuses_items_that_are_not_specs(queue: corral.Queue) -> None:
    with pytest.raises(corral.InvalidOptionError):
        await queue.add_bulk([corral.JobSpec("m", {}), ("m", {})])  # type: ignore[list-item]

    assert total(await queue.counts()) == 0


def test_job_spec_validates_options_at_construction() -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.JobSpec("m", {}, attempts=0)
    with pytest.raises(corral.InvalidOptionError):
        corral.JobSpec("m", {}, no_such_option=1)
