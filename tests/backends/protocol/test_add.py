"""Adding jobs, the same on every store: states, duplicate ids, order of claiming."""

from __future__ import annotations

from corral.backends.base import Backend, Limits
from corral.job_state import JobState
from tests.backends.protocol.support import T0, add, claim, ids, new_job


async def test_add_returns_records_in_input_order(backend: Backend) -> None:
    result = await backend.add(
        "q",
        [
            new_job("now"),
            new_job("later", delay_ms=5000),
            new_job("at", run_at_ms=T0 + 60_000),
            new_job("past", run_at_ms=T0 - 1),
            new_job("tagged", tags=("a", "b"), group="g", priority=3),
        ],
        0,
        T0,
    )
    assert result.now_ms == T0
    assert not result.stale_config
    states = [(rec.id, rec.state, rec.run_at, created) for rec, created in result.records]
    assert states == [
        ("now", JobState.WAITING, None, True),
        ("later", JobState.DELAYED, T0 + 5000, True),
        ("at", JobState.DELAYED, T0 + 60_000, True),
        ("past", JobState.WAITING, T0 - 1, True),
        ("tagged", JobState.WAITING, None, True),
    ]
    stored = await backend.get_job("q", "tagged")
    assert stored == result.records[4][0]
    assert stored is not None
    assert (stored.tags, stored.group, stored.priority) == (("a", "b"), "g", 3)
    assert stored.created_at == T0


async def test_an_id_still_stored_returns_that_job_unchanged(backend: Backend) -> None:
    await add(backend, new_job("a", data='{"v": 1}'))
    await backend.settle("q", [], 1, 1000, "w", T0)  # now active
    result = await backend.add("q", [new_job("a", data='{"v": 2}'), new_job("b")], 0, T0 + 5)
    (first, created_first), (_, created_second) = result.records
    assert (first.data, first.state, created_first, created_second) == (
        '{"v": 1}', JobState.ACTIVE, False, True,
    )


async def test_a_duplicate_within_one_bulk_returns_the_first(backend: Backend) -> None:
    result = await backend.add("q", [new_job("a", data="1"), new_job("a", data="2")], 0, T0)
    assert [(r.data, created) for r, created in result.records] == [("1", True), ("1", False)]
    assert (await backend.counts("q"))["waiting"] == 1


async def test_queues_are_listed_once_used(backend: Backend) -> None:
    await add(backend, new_job("a"), queue="mail")
    await backend.set_config("billing", "{}", Limits())
    await backend.set_paused("reports", True)
    assert await backend.queue_names() == ["billing", "mail", "reports"]


async def test_claim_order_is_priority_then_fifo_with_lifo_first(backend: Backend) -> None:
    await add(backend, new_job("p1-a", priority=1), new_job("p0-a"), new_job("p0-b"))
    await add(backend, new_job("p0-lifo", lifo=True), new_job("p0-c"), now=T0 + 1)
    await add(backend, new_job("p0-lifo2", lifo=True), new_job("p1-lifo", priority=1, lifo=True))
    expected = ["p0-lifo2", "p0-lifo", "p0-a", "p0-b", "p0-c", "p1-lifo", "p1-a"]
    listed = await backend.list_jobs("q", "waiting", 0, 100)
    assert [job.id for job in listed] == expected
    assert ids(await claim(backend, 3)) == expected[:3]
    assert ids(await claim(backend, 10)) == expected[3:]


async def test_queues_are_separate(backend: Backend) -> None:
    await add(backend, new_job("a"), queue="one")
    await add(backend, new_job("a", data="other"), queue="two")
    assert ids(await claim(backend, 5, queue="one")) == ["a"]
    assert (await backend.counts("two"))["waiting"] == 1
