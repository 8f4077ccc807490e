"""Settling attempts and claiming, the same on every store: tokens, retention, promotion,
pause, hold, stalls."""

from __future__ import annotations

from corral.backends.base import (
    Backend,
    Complete,
    Fail,
    Outcome,
    Release,
    Retention,
)
from corral.job_state import JobState
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, ids, new_job, state_of


async def test_complete_and_fail_need_the_current_token(backend: Backend) -> None:
    await add(backend, new_job("a"), new_job("b"), new_job("c"))
    a, _ = await claim(backend, 2)
    result = await backend.settle(
        "q",
        [
            Complete("a", a.token, '{"ok": true}'),
            Fail("b", "not-the-token", "boom", None),
            Complete("c", "whatever", "null"),  # c is waiting, not active
            Complete("missing", "x", "null"),
        ],
        0, LOCK_MS, "w1", T0 + 10,
    )
    assert result.refused == ["b", "c", "missing"]
    assert result.claimed == []
    done = await backend.get_job("q", "a")
    assert done is not None
    assert (done.state, done.attempts_made, done.return_value, done.finished_at) == (
        JobState.COMPLETED, 1, '{"ok": true}', T0 + 10,
    )
    assert done.lock_token is None
    assert await state_of(backend, "b") == "active"
    assert await state_of(backend, "c") == "waiting"
    # The same token again (a worker re-sending after a lost reply) changes nothing. Redis
    # counts it as applied (its replies can be lost; test_redis_settle); SQLite refuses it.
    await backend.settle("q", [Complete("a", a.token, "null")], 0, LOCK_MS, "w1", T0)
    again = await backend.get_job("q", "a")
    assert again is not None
    assert (again.attempts_made, again.return_value) == (1, '{"ok": true}')


async def test_release_with_hold_holds_the_queue(backend: Backend) -> None:
    await add(backend, new_job("a"), new_job("b"))
    (a,) = await claim(backend, 1)
    result = await backend.settle("q", [Release("a", a.token, 2000)], 5, LOCK_MS, "w1", T0 + 10)
    assert (result.claimed, result.hold_until_ms) == ([], T0 + 2010)
    shorter = await backend.settle("q", [], 5, LOCK_MS, "w1", T0 + 20)
    assert (shorter.claimed, shorter.hold_until_ms) == ([], T0 + 2010)
    after = await backend.settle("q", [], 5, LOCK_MS, "w1", T0 + 2010)
    assert (ids(after.claimed), after.hold_until_ms) == (["a", "b"], None)


async def test_pause_stops_claims_but_not_adds(backend: Backend) -> None:
    await backend.set_paused("q", True)
    assert await backend.is_paused("q")
    await add(backend, new_job("a"))
    assert await claim(backend, 5) == []
    await backend.set_paused("q", False)
    assert not await backend.is_paused("q")
    assert ids(await claim(backend, 5)) == ["a"]


async def test_due_delayed_jobs_are_promoted_behind_waiting_ones(backend: Backend) -> None:
    await add(backend, new_job("d1", delay_ms=1000), new_job("d2", delay_ms=2000))
    await add(backend, new_job("d3", delay_ms=9000), new_job("lifo", delay_ms=1500, lifo=True))
    await add(backend, new_job("w"), now=T0 + 500)
    early = await backend.settle("q", [], 0, LOCK_MS, "w1", T0 + 600)
    assert early.next_due_ms == T0 + 1000
    result = await backend.settle("q", [], 0, LOCK_MS, "w1", T0 + 2000)
    assert (result.claimed, result.next_due_ms) == ([], T0 + 9000)
    waiting = await backend.list_jobs("q", "waiting", 0, 10)
    assert [job.id for job in waiting] == ["lifo", "w", "d1", "d2"]
    assert ids(await claim(backend, 10, T0 + 9000)) == ["lifo", "w", "d1", "d2", "d3"]
    last = await backend.settle("q", [], 1, LOCK_MS, "w1", T0 + 9000)
    assert last.next_due_ms is None


async def test_retention_by_count(backend: Backend) -> None:
    keep_two = Retention(2, None)
    await add(backend, *(new_job(f"j{i}", keep_completed=keep_two) for i in range(5)))
    for i, claimed in enumerate(await claim(backend, 5)):
        outcome = Complete(claimed.record.id, claimed.token, "null")
        await backend.settle("q", [outcome], 0, LOCK_MS, "w1", T0 + i)
    completed = await backend.list_jobs("q", "completed", 0, 10)
    assert [job.id for job in completed] == ["j4", "j3"]


async def test_retention_of_completed_jobs_leaves_failed_ones(backend: Backend) -> None:
    await add(backend, new_job("f"), new_job("c", keep_completed=Retention(0, None)))
    f, c = await claim(backend, 2)
    outcomes: list[Outcome] = [Fail("f", f.token, "x", None), Complete("c", c.token, "1")]
    result = await backend.settle("q", outcomes, 0, LOCK_MS, "w1", T0)
    assert result.refused == []
    counts = await backend.counts("q")
    assert (counts["failed"], counts["completed"]) == (1, 0)
