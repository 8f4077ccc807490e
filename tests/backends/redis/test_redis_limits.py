"""Queue-wide limits and fair groups on the Redis store.

The limits stored beside the config, concurrency and rate limits across claimers, the
sliding window and the hold it reports, round-robin between groups, per-group limits, the
bulk claim of a queue whose waiting jobs share one group, who gets woken, and what
obliterate forgets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis

from corral.backends.base import Complete, DedupeRule
from corral.backends.redis import RedisBackend
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

MARKER = "corral:{q}:marker"


def key(part: str) -> str:
    return f"corral:{{q}}:{part}"


@pytest.fixture
async def second(redis_url: str) -> AsyncIterator[RedisBackend]:
    """Another backend on the same Redis: a worker on another machine."""
    store = RedisBackend(redis_url, {})
    yield store
    await store.close()


# -- settings -----------------------------------------------------------------------------


async def test_set_config_stores_the_limits_beside_the_config(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    assert await limit(backend, concurrency=3, rate_limit=5, rate_per_ms=SECOND) == 1
    fields = [b"concurrency", b"rate_limit", b"rate_per_ms", b"group_concurrency"]
    assert raw.hmget(key("meta"), fields) == [b"3", b"5", b"1000", None]
    assert await limit(backend, group_concurrency=2) == 2
    assert raw.hmget(key("meta"), fields) == [None, None, None, b"2"]
    assert (await backend.get_config("q")).config == "[('group_concurrency', 2)]"
    assert await backend.queue_names() == ["q"]


# -- rate limit ---------------------------------------------------------------------------


async def test_rate_limit_records_starts_and_holds_until_the_window_lets_one_go(
    backend: RedisBackend, second: RedisBackend, raw: redis.Redis
) -> None:
    await limit(backend, rate_limit=3, rate_per_ms=SECOND)
    await add(backend, *grouped(None, 10))
    assert ids(await claim(backend, 2, now=T0)) == ["U1", "U2"]
    assert ids(await claim(second, 5, now=T0 + 300)) == ["U3"]
    starts = cast(list[tuple[bytes, float]], raw.zrange(key("starts"), 0, -1, withscores=True))
    assert [score for _, score in starts] == [
        T0, T0, T0 + 300,
    ]
    assert raw.exists(key("gstarts")) == 0  # no group rate limit: no group windows
    for claimer, at in ((backend, T0 + 400), (second, T0 + 999)):
        held = await look(claimer, 5, at)
        assert (held.claimed, held.hold_until_ms) == ([], T0 + SECOND)
    counts = await backend.counts("q")
    assert (counts["waiting"], counts["active"]) == (7, 3)
    # The window slides: both starts at T0 leave it at T0 + 1 s, the third 300 ms later.
    assert ids(await claim(second, 5, now=T0 + SECOND)) == ["U4", "U5"]
    held = await look(backend, 5, T0 + SECOND + 1)
    assert held.hold_until_ms == T0 + SECOND + 300
    assert ids(await claim(backend, 5, now=T0 + SECOND + 300)) == ["U6"]
    # Starts older than the window are forgotten as new ones are recorded.
    assert ids(await claim(backend, 5, now=T0 + 5 * SECOND)) == ["U7", "U8", "U9"]
    assert raw.zrange(key("starts"), 0, -1, withscores=True)[0][1] == T0 + 5 * SECOND
    assert raw.zcard(key("starts")) == 3


async def test_a_rate_hold_is_reported_only_while_jobs_wait(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await limit(backend, rate_limit=1, rate_per_ms=SECOND)
    await add(backend, new_job("a"))
    (claimed,) = await claim(backend, 1)
    await complete(backend, "a", claimed.token)
    assert (await look(backend, 1, T0 + 10)).hold_until_ms is None
    await add(backend, new_job("b"), now=T0 + 20)
    result = await look(backend, 1, T0 + 30)
    assert (result.claimed, result.hold_until_ms) == ([], T0 + SECOND)
    # A lowered limit: the hold lasts until enough starts left the window.
    await limit(backend, rate_limit=3, rate_per_ms=SECOND)
    assert ids(await claim(backend, 1, now=T0 + 100)) == ["b"]
    await add(backend, new_job("c"), new_job("d"), now=T0 + 200)
    assert ids(await claim(backend, 1, now=T0 + 200)) == ["c"]
    await limit(backend, rate_limit=1, rate_per_ms=SECOND)
    assert (await look(backend, 1, T0 + 300)).hold_until_ms == T0 + 200 + SECOND
    # Lifting every rate limit forgets the starts.
    await limit(backend, concurrency=10)
    assert raw.exists(key("starts"), key("gstarts")) == 0
    assert ids(await claim(backend, 1, now=T0 + 300)) == ["d"]


# -- groups -------------------------------------------------------------------------------


async def test_groups_take_turns_within_a_priority(backend: RedisBackend) -> None:
    await add(backend, *grouped("A", 3), *grouped("B", 2), *grouped(None, 2))
    await add(backend, new_job("A-lifo", group="A", lifo=True), now=T0 + 1)
    # Never served: by name, the ungrouped jobs' group ("") first.
    expected = ["U1", "A-lifo", "B1", "U2", "A1", "B2", "A2", "A3"]
    assert await claim_one_by_one(backend, 9) == expected


async def test_a_batch_claim_takes_the_same_turns(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, *grouped("A", 3), *grouped("B", 2), *grouped(None, 2))
    assert ids(await claim(backend, 4)) == ["U1", "A1", "B1", "U2"]
    # Turns carry over to the next call; groups whose jobs ran out leave the rotation.
    assert raw.zrange(key("groups"), 0, -1, withscores=True) == [(b"A", 2), (b"B", 3)]
    assert raw.hget(key("meta"), "turn") == b"4"
    assert ids(await claim(backend, 10)) == ["A2", "B2", "A3"]
    assert raw.exists(key("groups"), key("gwaiting")) == 0


async def test_group_concurrency(
    backend: RedisBackend, second: RedisBackend, raw: redis.Redis
) -> None:
    await limit(backend, group_concurrency=2)
    await add(backend, *grouped("A", 5), *grouped("B", 3), *grouped(None, 1))
    first = await claim(backend, 3)
    assert ids(first) == ["U1", "A1", "B1"]
    assert ids(await claim(second, 10)) == ["A2", "B2"]
    assert await claim(backend, 10) == []
    idle = await look(second, 10, T0)
    assert (idle.claimed, idle.hold_until_ms) == ([], None)
    assert raw.hgetall(key("gactive")) == {b"A": b"2", b"B": b"2", b"": b"1"}
    await complete(backend, "A1", first[1].token)
    assert ids(await claim(second, 10)) == ["A3"]
    # One group alone (the bulk claim) obeys it too.
    await backend.obliterate("q", force=True)
    await limit(backend, group_concurrency=2)
    await add(backend, *grouped("A", 5))
    assert ids(await claim(backend, 10)) == ["A1", "A2"]
    assert await claim(second, 10) == []


async def test_group_concurrency_counts_jobs_active_before_it_was_set(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, *grouped("A", 3), *grouped("B", 1))
    early = await claim(backend, 2)
    assert ids(early) == ["A1", "B1"]
    assert raw.exists(key("gactive")) == 0  # not counted while no limit needs it
    await limit(backend, group_concurrency=1)
    assert raw.hgetall(key("gactive")) == {b"A": b"1", b"B": b"1"}
    assert await claim(backend, 5) == []
    await complete(backend, "A1", early[0].token)
    assert ids(await claim(backend, 5)) == ["A2"]
    await limit(backend)
    assert raw.exists(key("gactive")) == 0


async def test_group_rate_limit(backend: RedisBackend, raw: redis.Redis) -> None:
    await limit(backend, group_rate_limit=2, group_rate_per_ms=SECOND)
    await add(backend, *grouped("A", 5), *grouped("B", 3))
    assert ids(await claim(backend, 10, now=T0)) == ["A1", "B1", "A2", "B2"]
    assert ids(await claim(backend, 10, now=T0 + 100)) == []
    held = await look(backend, 10, T0 + 100)
    assert held.hold_until_ms == T0 + SECOND
    gstarts = cast(list[bytes], raw.zrange(key("gstarts"), 0, -1))
    assert sorted(member.split(b"\0")[0] for member in gstarts) == [
        b"A", b"A", b"B", b"B",
    ]
    assert ids(await claim(backend, 10, now=T0 + SECOND)) == ["A3", "B3", "A4"]
    # Only A waits now, at its rate: the hold names when A's window frees.
    assert await claim(backend, 10, now=T0 + SECOND + 5) == []
    assert (await look(backend, 10, T0 + SECOND + 5)).hold_until_ms == T0 + 2 * SECOND


async def test_a_group_rate_limit_set_later_sees_earlier_starts(backend: RedisBackend) -> None:
    await limit(backend, rate_limit=100, rate_per_ms=SECOND)
    await add(backend, *grouped("A", 3), *grouped("B", 3))
    assert ids(await claim(backend, 2, now=T0)) == ["A1", "B1"]
    await limit(backend, rate_limit=100, rate_per_ms=SECOND, group_rate_limit=1,
                group_rate_per_ms=SECOND)
    assert await claim(backend, 5, now=T0 + 10) == []
    assert (await look(backend, 5, T0 + 10)).hold_until_ms == T0 + SECOND
    assert ids(await claim(backend, 5, now=T0 + SECOND)) == ["A2", "B2"]


async def test_held_groups_are_passed_over_in_one_call(backend: RedisBackend) -> None:
    await limit(backend, group_concurrency=1)
    groups = [f"g{i:03}" for i in range(200)]
    await add(backend, *(new_job(f"{g}-{n}", group=g) for n in (1, 2) for g in groups))
    first = await claim(backend, 500)
    assert ids(first) == [f"{g}-1" for g in groups]
    assert await claim(backend, 10) == []
    # The last group frees a slot: the claim passes the 199 held groups to reach it.
    await complete(backend, "g199-1", first[-1].token)
    assert ids(await claim(backend, 10)) == ["g199-2"]


# -- the bulk claim -----------------------------------------------------------------------


async def test_one_group_alone_takes_the_bulk_claim(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("p1", priority=1), new_job("a"), new_job("b"))
    await add(backend, new_job("lifo", lifo=True), now=T0 + 1)
    # Without a grouped job the queue keeps no group index: `waiting` is the order.
    assert raw.exists(key("gwaiting"), key("groups")) == 0
    assert raw.hget(key("meta"), "grouped") == b"0"
    assert ids(await claim(backend, 3)) == ["lifo", "a", "b"]
    assert raw.hget(key("meta"), "turn") is None
    await add(backend, new_job("c"), *grouped("A", 3))  # the index starts, "c" in it
    assert raw.hget(key("meta"), "grouped") == b"1"
    assert raw.zrange(key("groups"), 0, -1, withscores=True) == [(b"", 0), (b"A", 0)]
    assert ids(await claim(backend, 4)) == ["c", "A1", "A2", "A3"]
    assert ids(await claim(backend, 3)) == ["p1"]
    await add(backend, *grouped("B", 3))  # one named group alone: one bulk claim
    assert ids(await claim(backend, 2)) == ["B1", "B2"]
    assert raw.zrange(key("groups"), 0, -1, withscores=True) == [(b"B", 0)]
    assert raw.exists(key("starts"), key("gactive")) == 0  # no limit needs them


# -- waking other workers -----------------------------------------------------------------


async def test_a_claim_cut_short_by_the_limits_wakes_nobody(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await limit(backend, concurrency=2)
    await add(backend, *grouped(None, 5))
    raw.delete(MARKER)
    (u1, _) = await claim(backend, 5)
    assert raw.exists(MARKER) == 0  # the others would find nothing to claim
    # A finished job frees a slot: a worker that does not claim it wakes one that may.
    await backend.settle("q", [Complete("U1", u1.token, "null")], 0, LOCK_MS, "w1", T0)
    assert raw.exists(MARKER) == 1
    raw.delete(MARKER)
    assert len(await claim(backend, 1)) == 1
    assert raw.exists(MARKER) == 0  # the claim took all it asked for: at the limit again


# -- the group index ----------------------------------------------------------------------


async def test_a_queue_without_the_group_index_is_indexed_on_its_next_claim(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, *grouped("A", 3), *grouped("B", 2), new_job("p", priority=-1))
    # As a queue written before groups existed: waiting jobs without the index.
    raw.delete(key("gwaiting"), key("groups"))
    assert await claim_one_by_one(backend, 6) == ["p", "A1", "B1", "A2", "B2", "A3"]
    assert raw.exists(key("groups"), key("gwaiting")) == 0


async def test_obliterate_forgets_starts_groups_and_dedupe_keys(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await limit(backend, rate_limit=10, rate_per_ms=SECOND, group_rate_limit=5,
                group_rate_per_ms=SECOND, group_concurrency=3)
    await add(backend, *grouped("A", 2), *grouped("B", 2))
    await add(backend, new_job("d", dedupe=DedupeRule("k", None, False)))
    await claim(backend, 3)
    parts = ["starts", "gstarts", "gactive", "groups", "gwaiting", "dedupe", "meta"]
    assert all(raw.exists(key(part)) for part in parts)
    await backend.obliterate("q", force=True)
    assert raw.keys("corral:{q}:*") == []


async def test_limits_apply_to_workers_racing_on_one_queue(redis_url: str) -> None:
    backends = [RedisBackend(redis_url, {}) for _ in range(4)]
    try:
        await limit(backends[0], concurrency=5)
        await add(backends[0], *grouped(None, 50))
        batches = await asyncio.gather(*(claim(b, 5) for b in backends))
        assert sum(len(batch) for batch in batches) == 5
    finally:
        for store in backends:
            await store.close()
