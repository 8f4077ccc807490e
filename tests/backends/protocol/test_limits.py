"""Queue-wide limits and fair groups, the same on every store: concurrency across
claimers, rate-limit holds, round-robin between groups, group and queue limits together."""

from __future__ import annotations

from corral.backends.base import Backend, Release
from tests.backends.protocol.support import (
    LOCK_MS,
    SECOND,
    T0,
    add,
    claim,
    claim_one_by_one,
    complete,
    grouped,
    ids,
    limit,
    look,
    new_job,
)


async def test_concurrency_holds_across_claimers(backend: Backend, second: Backend) -> None:
    await limit(backend, concurrency=3)
    await add(backend, *grouped(None, 10))
    first = await claim(backend, 2)
    assert ids(first) == ["U1", "U2"]
    assert ids(await claim(second, 5)) == ["U3"]
    assert await claim(backend, 5) == []
    idle = await look(second, 5, T0)
    assert (idle.claimed, idle.hold_until_ms) == ([], None)  # no time frees a slot
    await complete(backend, "U1", first[0].token)
    assert ids(await claim(second, 5)) == ["U4"]
    assert (await backend.counts("q"))["active"] == 3
    await limit(backend, concurrency=None)  # lifted
    assert len(await claim(backend, 10)) == 6


async def test_a_rate_limited_release_hold_still_comes_first(backend: Backend) -> None:
    await limit(backend, rate_limit=5, rate_per_ms=SECOND)
    await add(backend, new_job("a"), new_job("b"))
    (claimed,) = await claim(backend, 1)
    held = Release("a", claimed.token, hold_ms=3 * SECOND)
    result = await backend.settle("q", [held], 5, LOCK_MS, "w1", T0 + 10)
    assert (result.claimed, result.hold_until_ms) == ([], T0 + 10 + 3 * SECOND)


async def test_priority_comes_before_taking_turns(backend: Backend) -> None:
    await add(
        backend,
        new_job("a1", group="A"), new_job("a2", group="A"), new_job("a3", group="A", priority=1),
        new_job("b1", group="B", priority=1), new_job("b2", group="B", priority=1),
        new_job("b0", group="B", priority=2), new_job("u0", priority=-1),
    )
    assert await claim_one_by_one(backend, 8) == ["u0", "a1", "a2", "b1", "a3", "b2", "b0"]


async def test_a_small_group_is_not_starved_by_a_big_one(backend: Backend) -> None:
    await add(backend, *grouped("big", 1000))
    await add(backend, *grouped("small", 10), now=T0 + 1)
    order = await claim_one_by_one(backend, 20)
    assert sorted(job_id for job_id in order if job_id.startswith("small")) == sorted(
        f"small{i}" for i in range(1, 11)
    )
    # The same with workers claiming several at a time.
    await backend.obliterate("q", force=True)
    await add(backend, *grouped("big", 1000))
    await add(backend, *grouped("small", 10), now=T0 + 1)
    batches = [ids(await claim(backend, 5)) for _ in range(4)]
    assert sum(job_id.startswith("small") for batch in batches for job_id in batch) == 10


async def test_group_limits_together_hold_only_for_the_rate(backend: Backend) -> None:
    await limit(backend, group_concurrency=1, group_rate_limit=1, group_rate_per_ms=SECOND)
    await add(backend, *grouped("A", 2), *grouped("B", 2))
    a1, b1 = await claim(backend, 10)
    assert ids([a1, b1]) == ["A1", "B1"]
    # Both groups at their concurrency: no time frees them, only a completion.
    assert (await look(backend, 10, T0 + 10)).hold_until_ms is None
    await complete(backend, "A1", a1.token, now=T0 + 20)
    # A is free of its concurrency but not of its rate: held until its start leaves.
    assert (await look(backend, 10, T0 + 30)).hold_until_ms == T0 + SECOND
    assert ids(await claim(backend, 10, now=T0 + SECOND)) == ["A2"]


async def test_queue_limits_and_group_limits_combine(backend: Backend) -> None:
    await limit(backend, concurrency=3, group_concurrency=2)
    await add(backend, *grouped("A", 4), *grouped("B", 4))
    assert ids(await claim(backend, 10)) == ["A1", "B1", "A2"]
    assert await claim(backend, 10) == []
