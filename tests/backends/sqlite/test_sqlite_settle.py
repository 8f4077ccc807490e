"""Settling attempts and claiming: tokens, retention, promotion, pause, hold, stalls, locks."""

from __future__ import annotations

import asyncio

from corral.backends.base import Complete, Fail, Outcome, Release, Retention, RetryLater
from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite.settle import STALLED_REASON
from corral.job_state import JobState
from tests.backends.sqlite.sqlite_support import LOCK_MS, T0, add, claim, ids, new_job


async def state_of(backend: SqliteBackend, job_id: str) -> str | None:
    job = await backend.get_job("q", job_id)
    return None if job is None else str(job.state)


async def test_claim_locks_each_job_with_its_own_token(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"), new_job("b"), new_job("c"))
    result = await backend.settle("q", [], 2, LOCK_MS, "w1", T0 + 7)
    assert ids(result.claimed) == ["a", "b"]
    assert result.now_ms == T0 + 7
    tokens = {c.token for c in result.claimed}
    assert len(tokens) == 2
    for claimed in result.claimed:
        assert claimed.record.state == JobState.ACTIVE
        assert claimed.record.processed_at == T0 + 7
        assert claimed.record.lock_token == claimed.token
        assert claimed.record.data == f'{{"id": "{claimed.record.id}"}}'


async def test_complete_and_fail_need_the_current_token(backend: SqliteBackend) -> None:
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
    again = await backend.settle("q", [Complete("a", a.token, "null")], 0, LOCK_MS, "w1", T0)
    assert again.refused == ["a"]


async def test_fail_retry_later_and_release(backend: SqliteBackend) -> None:
    await add(backend, new_job("f"), new_job("r"), new_job("now"), new_job("back"))
    f, r, now, back = await claim(backend, 4)
    result = await backend.settle(
        "q",
        [
            Fail("f", f.token, "bad input", "Traceback ..."),
            RetryLater("r", r.token, "flaky", None, 5000),
            RetryLater("now", now.token, "flaky", "tb", 0),
            Release("back", back.token),
        ],
        0, LOCK_MS, "w1", T0 + 100,
    )
    assert result.refused == []
    assert result.next_due_ms == T0 + 5100
    failed = await backend.get_job("q", "f")
    assert failed is not None
    assert (failed.state, failed.attempts_made, failed.failed_reason, failed.stacktrace) == (
        JobState.FAILED, 1, "bad input", "Traceback ...",
    )
    retried = await backend.get_job("q", "r")
    assert retried is not None
    assert (retried.state, retried.run_at, retried.attempts_made) == (
        JobState.DELAYED, T0 + 5100, 1,
    )
    due_now = await backend.get_job("q", "now")
    assert due_now is not None
    assert (due_now.state, due_now.attempts_made, due_now.failed_reason) == (
        JobState.WAITING, 1, "flaky",
    )
    released = await backend.get_job("q", "back")
    assert released is not None
    assert (released.state, released.attempts_made) == (JobState.WAITING, 0)
    # A released job keeps its place; a retry due at once queues behind.
    assert ids(await claim(backend, 5, T0 + 100)) == ["back", "now"]


async def test_release_with_hold_holds_the_queue(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"), new_job("b"))
    (a,) = await claim(backend, 1)
    result = await backend.settle("q", [Release("a", a.token, 2000)], 5, LOCK_MS, "w1", T0 + 10)
    assert (result.claimed, result.hold_until_ms) == ([], T0 + 2010)
    shorter = await backend.settle("q", [], 5, LOCK_MS, "w1", T0 + 20)
    assert (shorter.claimed, shorter.hold_until_ms) == ([], T0 + 2010)
    after = await backend.settle("q", [], 5, LOCK_MS, "w1", T0 + 2010)
    assert (ids(after.claimed), after.hold_until_ms) == (["a", "b"], None)


async def test_pause_stops_claims_but_not_adds(backend: SqliteBackend) -> None:
    await backend.set_paused("q", True)
    assert await backend.is_paused("q")
    await add(backend, new_job("a"))
    assert await claim(backend, 5) == []
    await backend.set_paused("q", False)
    assert not await backend.is_paused("q")
    assert ids(await claim(backend, 5)) == ["a"]


async def test_due_delayed_jobs_are_promoted_behind_waiting_ones(backend: SqliteBackend) -> None:
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


async def test_promote_by_hand(backend: SqliteBackend) -> None:
    await add(backend, new_job("d", delay_ms=60_000), new_job("w"))
    assert await backend.promote("q", "d", T0 + 5)
    assert not await backend.promote("q", "d", T0 + 5)
    assert not await backend.promote("q", "w", T0 + 5)
    job = await backend.get_job("q", "d")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.WAITING, T0 + 5)


async def test_retention_by_count(backend: SqliteBackend) -> None:
    keep_two = Retention(2, None)
    await add(backend, *(new_job(f"j{i}", keep_completed=keep_two) for i in range(5)))
    for i, claimed in enumerate(await claim(backend, 5)):
        outcome = Complete(claimed.record.id, claimed.token, "null")
        await backend.settle("q", [outcome], 0, LOCK_MS, "w1", T0 + i)
    completed = await backend.list_jobs("q", "completed", 0, 10)
    assert [job.id for job in completed] == ["j4", "j3"]


async def test_retention_by_age_and_at_once(backend: SqliteBackend) -> None:
    await add(backend, new_job("old", keep_failed=Retention(None, 1000)), new_job("new"))
    await add(backend, new_job("gone", keep_failed=Retention(0, None)))
    await add(backend, new_job("aged", keep_failed=Retention(None, 1000)))
    old, new, gone, aged = await claim(backend, 4)
    await backend.settle("q", [Fail("old", old.token, "x", None)], 0, LOCK_MS, "w1", T0)
    await backend.settle("q", [Fail("new", new.token, "x", None)], 0, LOCK_MS, "w1", T0 + 500)
    await backend.add_log("q", "gone", "a line", 10)
    await backend.settle("q", [Fail("gone", gone.token, "x", None)], 0, LOCK_MS, "w1", T0 + 600)
    assert await backend.get_job("q", "gone") is None
    assert await backend.get_logs("q", "gone") == []
    assert await state_of(backend, "old") == "failed"
    await backend.settle("q", [Fail("aged", aged.token, "x", None)], 0, LOCK_MS, "w1", T0 + 1200)
    failed = await backend.list_jobs("q", "failed", 0, 10)
    assert [job.id for job in failed] == ["aged", "new"]


async def test_retention_of_completed_jobs_leaves_failed_ones(backend: SqliteBackend) -> None:
    await add(backend, new_job("f"), new_job("c", keep_completed=Retention(0, None)))
    f, c = await claim(backend, 2)
    outcomes: list[Outcome] = [Fail("f", f.token, "x", None), Complete("c", c.token, "1")]
    result = await backend.settle("q", outcomes, 0, LOCK_MS, "w1", T0)
    assert result.refused == []
    counts = await backend.counts("q")
    assert (counts["failed"], counts["completed"]) == (1, 0)


async def test_recover_stalled_hands_back_then_fails(backend: SqliteBackend) -> None:
    await add(backend, new_job("s"), new_job("fresh"))
    (s,) = await claim(backend, 1, T0, lock_ms=1000)
    (fresh,) = await claim(backend, 1, T0 + 1500, lock_ms=1000)
    first = await backend.recover_stalled("q", 1, T0 + 2000)
    assert (first.recovered, first.failed) == (["s"], [])
    job = await backend.get_job("q", "s")
    assert job is not None
    assert (job.state, job.stalled_count, job.attempts_made, job.lock_token) == (
        JobState.WAITING, 1, 0, None,
    )
    late = await backend.settle("q", [Complete("s", s.token, "null")], 0, LOCK_MS, "w1", T0)
    assert late.refused == ["s"]
    (again,) = await claim(backend, 1, T0 + 2000, lock_ms=1000)
    assert again.record.id == "s"
    second = await backend.recover_stalled("q", 1, T0 + 3001)
    assert (sorted(second.recovered), second.failed) == (["fresh"], ["s"])
    job = await backend.get_job("q", "s")
    assert job is not None
    assert (job.state, job.stalled_count, job.failed_reason, job.finished_at) == (
        JobState.FAILED, 2, STALLED_REASON, T0 + 3001,
    )
    assert fresh.record.id == "fresh"


async def test_lock_keeper_extends_from_another_thread(backend: SqliteBackend) -> None:
    await add(backend, new_job("a"), new_job("b"))
    a, b = await claim(backend, 2, T0, lock_ms=1000)
    await backend.settle("q", [Complete("b", b.token, "null")], 0, LOCK_MS, "w1", T0)
    keeper = backend.lock_keeper()
    try:
        tokens = {"a": a.token, "b": b.token, "c": "nope"}
        lost = await asyncio.to_thread(keeper.extend_locks, "q", tokens, 5000, T0 + 900)
        assert lost == ["b", "c"]
        assert await asyncio.to_thread(keeper.extend_locks, "q", {}, 5000, T0) == []
    finally:
        await asyncio.to_thread(keeper.close)
    assert (await backend.recover_stalled("q", 1, T0 + 5000)).recovered == []
    assert (await backend.recover_stalled("q", 1, T0 + 6000)).recovered == ["a"]
