"""Deduplication by key: while pending, throttled by ttl, debounced with replace."""

from __future__ import annotations

from datetime import timedelta

import pytest

import corral
from corral.testing import VirtualClock

from .support import WorkerFactory, WorkerStarter, hold_active, stored


async def test_an_add_is_ignored_while_a_job_with_the_key_is_pending(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    first = await queue.add("sync", {"v": 1}, dedupe=corral.Dedupe("sync:w1"))
    second = await queue.add("sync", {"v": 2}, dedupe=corral.Dedupe("sync:w1"))
    assert second.id == first.id
    assert (second.duplicate, second.data) == (True, {"v": 1})
    assert (await queue.counts())["waiting"] == 1
    await make_worker(lambda job: None).run(burst=True)
    third = await queue.add("sync", {"v": 3}, dedupe=corral.Dedupe("sync:w1"))
    assert third.id != first.id
    assert not third.duplicate


async def test_a_delayed_job_also_blocks_its_key(queue: corral.Queue) -> None:
    first = await queue.add("sync", {}, delay=60, dedupe=corral.Dedupe("k"))
    again = await queue.add("sync", {}, dedupe=corral.Dedupe("k"))
    assert again.id == first.id
    assert again.state == "delayed"


async def test_ttl_throttles_adds_for_that_long(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    first = await queue.add("ping", {}, dedupe=corral.Dedupe("k", ttl=60),
                            remove_on_complete=False)
    await make_worker(lambda job: None).run(burst=True)
    await clock.advance(59)
    again = await queue.add("ping", {}, dedupe=corral.Dedupe("k", ttl=60))
    assert (again.id, again.duplicate) == (first.id, True)
    await clock.advance(1)
    fresh = await queue.add("ping", {}, dedupe=corral.Dedupe("k", ttl=60))
    assert fresh.id != first.id


async def test_replace_debounces_a_delayed_job(queue: corral.Queue, clock: VirtualClock) -> None:
    first = await queue.add("save", {"v": 1}, delay=10, dedupe=corral.Dedupe("doc", replace=True))
    await clock.advance(5)
    second = await queue.add("save", {"v": 2}, delay=10,
                             dedupe=corral.Dedupe("doc", replace=True))
    assert second.id == first.id
    job = await stored(queue, first.id)
    assert job.data == {"v": 2}
    assert job.run_at == clock.now() + timedelta(seconds=10)
    assert (await queue.counts())["delayed"] == 1


async def test_replace_updates_a_waiting_job(queue: corral.Queue) -> None:
    first = await queue.add("save", {"v": 1}, dedupe=corral.Dedupe("doc", replace=True))
    await queue.add("save", {"v": 2}, dedupe=corral.Dedupe("doc", replace=True))
    assert (await stored(queue, first.id)).data == {"v": 2}
    assert (await queue.counts())["waiting"] == 1


async def test_an_active_survivor_makes_replace_a_plain_duplicate(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    first = await queue.add("save", {"v": 1}, dedupe=corral.Dedupe("doc", replace=True))
    _, blocker = await hold_active(queue, make_worker, start_worker, first.id)
    again = await queue.add("save", {"v": 2}, dedupe=corral.Dedupe("doc", replace=True))
    assert (again.id, again.duplicate) == (first.id, True)
    assert (await stored(queue, first.id)).data == {"v": 1}
    assert (await queue.counts())["waiting"] == 0
    blocker.release()


async def test_the_job_id_rule_comes_first(queue: corral.Queue) -> None:
    first = await queue.add("a", {"v": 1}, job_id="fixed", dedupe=corral.Dedupe("k", replace=True))
    again = await queue.add("a", {"v": 2}, job_id="fixed", dedupe=corral.Dedupe("k", replace=True))
    assert again.id == first.id
    assert (await stored(queue, "fixed")).data == {"v": 1}


async def test_dedupe_works_in_bulk_and_as_a_default_is_refused(queue: corral.Queue) -> None:
    jobs = await queue.add_bulk(
        [corral.JobSpec("m", {"i": i}, dedupe=corral.Dedupe("same")) for i in range(3)]
    )
    assert len({job.id for job in jobs}) == 1
    with pytest.raises(corral.InvalidOptionError):
        await queue.configure(defaults=corral.JobOptions(dedupe=corral.Dedupe("k")))


@pytest.mark.parametrize(
    "arguments", [("",), ("k", -1), ("k", 0), ("k", float("inf")), ("k", None, "yes")]
)
def test_bad_dedupe_is_refused(arguments: tuple[object, ...]) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Dedupe(*arguments)  # type: ignore[arg-type]
