"""Settling attempts and claiming: tokens, retention, promotion, pause, hold, stalls, locks."""

from __future__ import annotations

import asyncio
import threading

import redis

from corral.backends.base import Complete, Fail, Outcome, Release, Retention, RetryLater
from corral.backends.redis import RedisBackend
from corral.backends.sqlite.settle import STALLED_REASON
from corral.job_state import JobState
from tests.backends.protocol.support import LOCK_MS, T0, add, claim, ids, new_job, state_of

MARKER = "corral:{q}:marker"


async def test_claim_locks_each_job_with_its_own_token(backend: RedisBackend) -> None:
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
    again = await backend.settle("q", [], 1, LOCK_MS, "w1", T0 + 7)
    assert not tokens & {c.token for c in again.claimed}


async def test_fail_retry_later_and_release(backend: RedisBackend) -> None:
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
    assert (retried.state, retried.run_at, retried.attempts_made, retried.stacktrace) == (
        JobState.DELAYED, T0 + 5100, 1, None,
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


async def test_jobs_due_together_are_promoted_in_the_order_added(backend: RedisBackend) -> None:
    names = ["z", "m", "a", "q", "b"]
    await add(backend, *(new_job(name, delay_ms=100) for name in names))
    assert ids(await claim(backend, 10, T0 + 100)) == names


async def test_promotion_is_bounded_per_call_and_reports_what_is_left(
    backend: RedisBackend,
) -> None:
    await add(backend, *(new_job(f"d{i:04}", delay_ms=1 + i // 1000) for i in range(1500)))
    first = await backend.settle("q", [], 0, LOCK_MS, "w1", T0 + 10)
    assert first.next_due_ms == T0 + 2  # more jobs are already due: call again at once
    assert (await backend.counts("q"))["waiting"] == 1000
    second = await backend.settle("q", [], 0, LOCK_MS, "w1", T0 + 10)
    assert second.next_due_ms is None
    assert (await backend.counts("q"))["waiting"] == 1500
    assert ids(await claim(backend, 3, T0 + 10)) == ["d0000", "d0001", "d0002"]


async def test_promote_by_hand(backend: RedisBackend) -> None:
    await add(backend, new_job("d", delay_ms=60_000), new_job("w"))
    assert await backend.promote("q", "d", T0 + 5)
    assert not await backend.promote("q", "d", T0 + 5)
    assert not await backend.promote("q", "w", T0 + 5)
    assert not await backend.promote("q", "missing", T0 + 5)
    job = await backend.get_job("q", "d")
    assert job is not None
    assert (job.state, job.run_at) == (JobState.WAITING, T0 + 5)


async def test_jobs_finished_at_one_instant_keep_their_finishing_order(
    backend: RedisBackend,
) -> None:
    keep_three = Retention(3, None)
    names = ["z", "m", "a", "q", "b"]
    await add(backend, *(new_job(name, keep_completed=keep_three) for name in names))
    held = await claim(backend, 5)
    outcomes: list[Outcome] = [Complete(c.record.id, c.token, "1") for c in held]
    await backend.settle("q", outcomes, 0, LOCK_MS, "w1", T0)
    completed = await backend.list_jobs("q", "completed", 0, 10)
    assert [job.id for job in completed] == ["b", "q", "a"]


async def test_retention_by_age_and_at_once(backend: RedisBackend) -> None:
    await add(backend, new_job("old", keep_failed=Retention(None, 1000)), new_job("new"))
    await add(backend, new_job("gone", keep_failed=Retention(0, None), tags=("t",)))
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


async def test_retention_removes_everything_of_a_job(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a", tags=("t",), keep_completed=Retention(0, None)))
    (a,) = await claim(backend, 1)
    await backend.add_log("q", "a", "line", 10)
    await backend.settle("q", [Complete("a", a.token, "1")], 0, LOCK_MS, "w1", T0)
    for part in ("jobs", "data", "logs"):
        assert not raw.hexists(f"corral:{{q}}:{part}", "a")
    for part in ("tags", "completed", "active"):
        assert raw.zcard(f"corral:{{q}}:{part}") == 0


async def test_a_keep_zero_job_goes_before_others_trim(backend: RedisBackend) -> None:
    keep_two = Retention(2, None)
    await add(backend, new_job("x", keep_completed=keep_two), new_job("y", keep_completed=keep_two))
    await add(backend, new_job("now", keep_completed=Retention(0, None)))
    await add(backend, new_job("kept", keep_completed=keep_two))
    x, y, now, kept = await claim(backend, 4)
    await backend.settle("q", [Complete("x", x.token, "1")], 0, LOCK_MS, "w1", T0)
    await backend.settle("q", [Complete("y", y.token, "1")], 0, LOCK_MS, "w1", T0 + 1)
    outcomes: list[Outcome] = [
        Complete("kept", kept.token, "1"), Complete("now", now.token, "1"),
    ]
    await backend.settle("q", outcomes, 0, LOCK_MS, "w1", T0 + 2)
    completed = await backend.list_jobs("q", "completed", 0, 10)
    assert [job.id for job in completed] == ["kept", "y"]


async def test_recover_stalled_hands_back_then_fails(backend: RedisBackend) -> None:
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
    nothing = await backend.recover_stalled("q", 1, T0 + 3001)
    assert (nothing.recovered, nothing.failed) == ([], [])


async def test_a_stalled_job_keeps_its_place(backend: RedisBackend) -> None:
    await add(backend, new_job("first"), new_job("second"))
    await claim(backend, 1, T0, lock_ms=1000)
    await backend.recover_stalled("q", 5, T0 + 1001)
    assert ids(await claim(backend, 5, T0 + 1001)) == ["first", "second"]


async def test_lock_keeper_extends_from_another_thread(backend: RedisBackend) -> None:
    await add(backend, new_job("a"), new_job("b"))
    a, b = await claim(backend, 2, T0, lock_ms=1000)
    await backend.settle("q", [Complete("b", b.token, "null")], 0, LOCK_MS, "w1", T0)
    keeper = backend.lock_keeper()
    try:
        tokens = {"a": a.token, "b": b.token, "c": "nope"}
        lost = await asyncio.to_thread(keeper.extend_locks, "q", tokens, 5000, T0 + 900)
        assert lost == ["b", "c"]
        assert await asyncio.to_thread(keeper.extend_locks, "q", {}, 5000, T0) == []
        threads = [
            threading.Thread(target=keeper.extend_locks, args=("q", {"a": a.token}, 5000, T0 + 900))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        await asyncio.to_thread(keeper.close)
    assert (await backend.recover_stalled("q", 1, T0 + 5000)).recovered == []
    assert (await backend.recover_stalled("q", 1, T0 + 6000)).recovered == ["a"]


async def test_the_marker_is_left_when_claimable_work_remains(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    await add(backend, new_job("a"), new_job("b"))
    assert raw.zcard(MARKER) == 1
    raw.delete(MARKER)
    await claim(backend, 1)
    assert raw.zcard(MARKER) == 1  # b is left for the next idle worker
    raw.delete(MARKER)
    await claim(backend, 1)
    assert raw.zcard(MARKER) == 0  # nothing left
    await add(backend, new_job("c"))
    raw.delete(MARKER)
    await backend.set_paused("q", True)
    await claim(backend, 1)
    assert raw.zcard(MARKER) == 0  # nothing claimable: idle workers sleep on
    await backend.set_paused("q", False)
    assert raw.zcard(MARKER) == 1


async def test_an_idle_look_writes_nothing(backend: RedisBackend, raw: redis.Redis) -> None:
    await add(backend, new_job("later", delay_ms=60_000))
    raw.delete(MARKER)
    before = raw.info("stats")["total_commands_processed"]
    dirty = raw.info("persistence")["rdb_changes_since_last_save"]
    await backend.settle("q", [], 5, LOCK_MS, "w1", T0)
    assert raw.info("persistence")["rdb_changes_since_last_save"] == dirty
    assert raw.zcard(MARKER) == 0
    assert raw.info("stats")["total_commands_processed"] - before <= 10  # a few reads


async def test_an_outcome_sent_again_after_a_lost_reply_is_not_refused(
    backend: RedisBackend,
) -> None:
    await add(backend, new_job("done"), new_job("later"))
    done, later = await claim(backend, 2)
    outcomes: list[Outcome] = [
        Complete("done", done.token, '"ok"'), RetryLater("later", later.token, "x", None, 500),
    ]
    first = await backend.settle("q", outcomes, 0, LOCK_MS, "w1", T0 + 10)
    again = await backend.settle("q", outcomes, 0, LOCK_MS, "w1", T0 + 20)

    assert first.refused == again.refused == []
    stored = await backend.get_job("q", "done")
    assert stored is not None
    assert (stored.state, stored.attempts_made) == (JobState.COMPLETED, 1)
    retried = await backend.get_job("q", "later")
    assert retried is not None
    assert (retried.attempts_made, retried.run_at) == (1, T0 + 510)
    stale = await backend.settle("q", [Complete("done", "someone-else", '"x"')], 0, LOCK_MS,
                                 "w1", T0 + 30)
    assert stale.refused == ["done"]
