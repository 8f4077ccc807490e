"""What each transition records in a queue's event stream, at each level, on every store."""

from __future__ import annotations

import pytest

from corral.backends.base import (
    Backend,
    Complete,
    DedupeRule,
    Fail,
    Release,
    RetryLater,
)
from corral.backends.sqlite.settle import STALLED_REASON
from tests.backends.protocol.events_support import (
    LEVELS,
    add,
    at_level,
    configure,
    events,
    settle,
)
from tests.backends.protocol.support import T0, claim, new_job


@pytest.mark.parametrize("level", LEVELS)
async def test_dedupe_hits(backend: Backend, level: str) -> None:
    await configure(backend, level)
    keep = DedupeRule("k", None, replace=False)
    debounce = DedupeRule("d", None, replace=True)
    assert await add(backend, new_job("a", dedupe=keep)) == [True]
    assert await add(backend, new_job("a2", dedupe=keep), new_job("a", dedupe=keep)) == [
        False, False,
    ]
    assert await add(backend, new_job("d1", dedupe=debounce, delay_ms=1000)) == [True]
    assert await add(backend, new_job("d2", dedupe=debounce, delay_ms=3000)) == [False]
    assert await add(backend, new_job("d3", dedupe=debounce), now=T0 + 10) == [False]
    assert await events(backend) == at_level(level, [
        ("added", "a", {"name": "task"}),
        ("waiting", "a", None),
        ("deduplicated", "a2", {"key": "k", "job_id": "a"}),
        ("added", "d1", {"name": "task", "delay_ms": 1000}),
        ("delayed", "d1", {"run_at": T0 + 1000}),
        ("deduplicated", "d2", {"key": "d", "job_id": "d1"}),
        ("delayed", "d1", {"run_at": T0 + 3000}),  # its delay starts again
        ("deduplicated", "d3", {"key": "d", "job_id": "d1"}),
        ("waiting", "d1", None),  # replaced by a job due at once
    ])


@pytest.mark.parametrize("level", LEVELS)
async def test_settle_outcomes_and_claims(backend: Backend, level: str) -> None:
    await configure(backend, level)
    await add(backend, *[new_job(i) for i in "cfrzl"])
    held = {c.record.id: c.token for c in await claim(backend, 5)}
    after_claim = await backend.last_event_id("q")
    claimed = await settle(backend, [
        Complete("c", held["c"], '{"sent": [1, 2]}'),
        Fail("f", held["f"], "boom", "trace"),
        RetryLater("r", held["r"], "later", None, 2000),
        RetryLater("z", held["z"], "again", None, 0),
        Release("l", held["l"]),
    ], T0 + 100, claim_count=1)
    assert claimed == ["l"]  # z, due at once, queues behind l, which kept its place
    assert await events(backend, after=after_claim) == at_level(level, [
        ("completed", "c", {"return_value": {"sent": [1, 2]}}),
        ("failed", "f", {"reason": "boom", "attempts_made": 1}),
        ("retrying", "r", {"reason": "later", "delay_ms": 2000, "attempts_made": 1}),
        ("delayed", "r", {"run_at": T0 + 2100}),
        ("retrying", "z", {"reason": "again", "delay_ms": 0, "attempts_made": 1}),
        ("waiting", "l", None),
        ("waiting", "z", None),  # promoted in the same settle
        ("active", "l", {"worker": "w1"}),
    ])


@pytest.mark.parametrize("level", LEVELS)
async def test_claims_and_promotions(backend: Backend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("a"), new_job("d", delay_ms=1000))
    start = await backend.last_event_id("q")
    assert await settle(backend, [], T0 + 1000, claim_count=5) == ["a", "d"]
    assert await events(backend, after=start) == at_level(level, [
        ("waiting", "d", None),
        ("active", "a", {"worker": "w1"}),
        ("active", "d", {"worker": "w1"}),
    ])


@pytest.mark.parametrize("level", LEVELS)
async def test_stalls(backend: Backend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("s"))
    await claim(backend, 1, T0, lock_ms=1000)
    start = await backend.last_event_id("q")
    assert (await backend.recover_stalled("q", 1, T0 + 2000)).recovered == ["s"]
    await claim(backend, 1, T0 + 2000, lock_ms=1000)
    assert (await backend.recover_stalled("q", 1, T0 + 4000)).failed == ["s"]
    assert await events(backend, after=start) == at_level(level, [
        ("stalled", "s", {"stalled_count": 1}),
        ("waiting", "s", None),
        ("active", "s", {"worker": "w1"}),
        ("stalled", "s", {"stalled_count": 2}),
        ("failed", "s", {"reason": STALLED_REASON, "attempts_made": 0}),
    ])


@pytest.mark.parametrize("level", LEVELS)
async def test_removals_one_event_per_job(backend: Backend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("old"), now=T0 - 1000)
    await add(
        backend,
        new_job("r"), new_job("t1", tags=("x",)), new_job("t2", tags=("x",), delay_ms=10),
        new_job("w1"), new_job("w2", delay_ms=10),
    )
    (held,) = await claim(backend, 1)
    assert held.record.id == "old"
    await settle(backend, [Complete("old", held.token, "null")], T0)
    start = await backend.last_event_id("q")
    assert await backend.remove("q", "r")
    assert not await backend.remove("q", "r")
    assert await backend.remove_tagged("q", "x") == 2
    assert await backend.clean("q", "completed", 0, 0, T0) == ["old"]
    assert await backend.drain("q", delayed=True) == 2
    removed = await events(backend, after=start)
    if level == "off":
        assert removed == []
        return
    assert [removed[0], removed[3]] == [("removed", "r", None), ("removed", "old", None)]
    assert sorted(removed[1:3]) == [("removed", "t1", None), ("removed", "t2", None)]
    assert sorted(removed[4:]) == [("removed", "w1", None), ("removed", "w2", None)]


@pytest.mark.parametrize("level", LEVELS)
async def test_progress(backend: Backend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("p"))
    start = await backend.last_event_id("q")
    assert await backend.update_progress("q", "p", '{"done": 40, "of": 100}')
    assert not await backend.update_progress("q", "gone", "1")
    assert await backend.update_data("q", "p", "{}")  # no event
    assert await backend.add_log("q", "p", "a line", 10) == 1  # no event
    assert await events(backend, after=start) == at_level(level, [
        ("progress", "p", {"progress": {"done": 40, "of": 100}}),
    ])


@pytest.mark.parametrize("level", LEVELS)
async def test_moves_by_hand(backend: Backend, level: str) -> None:
    await configure(backend, level)
    await add(backend, new_job("d", delay_ms=60_000), new_job("f1"), new_job("f2"))
    for job in await claim(backend, 2):
        await settle(backend, [Fail(job.record.id, job.token, "no", None)], T0)
    start = await backend.last_event_id("q")
    assert await backend.promote("q", "d", T0 + 1)
    assert await backend.retry_job("q", "f1", T0 + 2)
    assert await backend.retry_failed("q", None, T0 + 3) == 1
    assert await events(backend, after=start) == at_level(level, [
        ("waiting", "d", None), ("waiting", "f1", None), ("waiting", "f2", None),
    ])
