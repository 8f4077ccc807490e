"""Settling attempts and claiming: tokens, retention, promotion, pause, hold, stalls, locks."""

from __future__ import annotations

import asyncio

from corral.backends.base import Complete, Fail, Release, Retention, RetryLater
from corral.backends.sqlite import SqliteBackend
from corral.backends.sqlite.settle import STALLED_REASON
from corral.job_state import JobState
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, ids, new_job, state_of


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


async def test_promote_by_hand(backend: SqliteBackend) -> None:
    await add(backend, new_job("d", delay_ms=60_000), new_job("w"))
    assert await backend.promote("q", "d", T0 + 5)
    assert not await backend.promote("q", "d", T0 + 5)
    assert not await backend.promote("q", "w", T0 + 5)
    job = await backend.get_job("q", "d")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.WAITING, T0 + 5)


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
