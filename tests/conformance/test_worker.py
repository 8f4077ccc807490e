"""`corral.Worker`: processors, concurrency, failures, signals, callbacks, burst, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import threading
import time
from typing import Any

import pytest

import corral
import corral.sync
from corral.testing import VirtualClock

from .support import (
    Blocker,
    WorkerFactory,
    WorkerStarter,
    drive,
    is_state,
    stored,
    wait_for,
)


async def succeed(job: corral.Job) -> str:
    return "done"


async def explode(job: corral.Job) -> None:
    raise ValueError("boom")


# -- processors ----------------------------------------------------------------------------


async def test_one_callable_runs_every_job_name(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    names: list[str] = []

    async def record(job: corral.Job) -> str:
        names.append(job.name)
        return job.name.upper()

    a = await queue.add("alpha", {})
    b = await queue.add("beta", {})

    assert await make_worker(record).run(burst=True) == 2

    assert names == ["alpha", "beta"]
    assert (await stored(queue, a.id)).return_value == "ALPHA"
    assert (await stored(queue, b.id)).return_value == "BETA"


async def test_mapping_routes_by_job_name(queue: corral.Queue, make_worker: WorkerFactory) -> None:
    async def email(job: corral.Job) -> str:
        return f"email to {job.data['to']}"

    def alert(job: corral.sync.Job) -> str:
        return f"alert {job.data['level']}"

    e = await queue.add("email", {"to": "ann"})
    a = await queue.add("alert", {"level": 3})

    assert await make_worker({"email": email, "alert": alert}).run(burst=True) == 2

    assert (await stored(queue, e.id)).return_value == "email to ann"
    assert (await stored(queue, a.id)).return_value == "alert 3"


async def test_unknown_job_name_fails_at_once_naming_it(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    job = await queue.add("mysteryTask", {}, attempts=5, backoff=corral.Backoff.fixed(1))

    assert await make_worker({"known": succeed}).run(burst=True) == 1

    failed = await stored(queue, job.id)
    assert failed.state == "failed"
    assert failed.attempts_made == 1
    assert failed.failed_reason is not None
    assert "mysteryTask" in failed.failed_reason


async def test_async_processor_runs_on_the_event_loop(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    seen: list[Any] = []

    async def process(job: corral.Job) -> dict[str, Any]:
        seen.append((isinstance(job, corral.Job), asyncio.get_running_loop()))
        await job.update_progress(50)
        return {"doubled": job.data["n"] * 2}

    job = await queue.add("m", {"n": 21})
    assert await make_worker(process).run(burst=True) == 1

    assert seen == [(True, asyncio.get_running_loop())]
    done = await stored(queue, job.id)
    assert (done.return_value, done.progress) == ({"doubled": 42}, 50)


async def test_plain_function_runs_in_a_thread_with_a_sync_job(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    seen: list[Any] = []

    def process(job: corral.sync.Job) -> dict[str, Any]:
        seen.append((isinstance(job, corral.sync.Job), threading.current_thread()))
        job.update_progress(75)  # blocks until stored; no await in a plain function
        job.log("from a thread")
        return {"tripled": job.data["n"] * 3}

    job = await queue.add("m", {"n": 5})
    assert await make_worker(process).run(burst=True) == 1

    [(is_sync_job, thread)] = seen
    assert is_sync_job
    assert thread is not threading.main_thread()
    done = await stored(queue, job.id)
    assert (done.return_value, done.progress) == ({"tripled": 15}, 75)
    assert await done.logs() == ["from a thread"]


async def test_partials_and_callable_objects_are_unwrapped(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async def tagged(label: str, job: corral.Job) -> str:
        assert isinstance(job, corral.Job)
        return f"{label}:{job.name}"

    class Handler:
        async def __call__(self, job: corral.Job) -> str:
            assert isinstance(job, corral.Job)
            return f"object:{job.name}"

    p = await queue.add("partial", {})
    o = await queue.add("object", {})
    worker = make_worker({"partial": functools.partial(tagged, "p"), "object": Handler()})

    assert await worker.run(burst=True) == 2

    assert (await stored(queue, p.id)).return_value == "p:partial"
    assert (await stored(queue, o.id)).return_value == "object:object"


async def test_non_json_return_value_fails_the_attempt(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async def returns_a_set(job: corral.Job) -> set[int]:
        return {1, 2}

    job = await queue.add("m", {})

    assert await make_worker(returns_a_set).run(burst=True) == 1

    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made, failed.return_value) == ("failed", 1, None)
    assert failed.failed_reason is not None
    assert "json" in failed.failed_reason.lower()


async def test_non_json_return_value_is_retried_while_attempts_remain(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    calls = 0

    async def bad_then_good(job: corral.Job) -> Any:
        nonlocal calls
        calls += 1
        return object() if calls == 1 else "fine"

    job = await queue.add("m", {}, attempts=2)

    assert await make_worker(bad_then_good).run(burst=True) == 2
    done = await stored(queue, job.id)
    assert (done.state, done.return_value, done.attempts_made) == ("completed", "fine", 2)


# -- concurrency ---------------------------------------------------------------------------


async def test_async_concurrency_is_never_exceeded(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    running = 0
    most = 0
    most_active = 0

    async def process(job: corral.Job) -> None:
        nonlocal running, most, most_active
        running += 1
        most = max(most, running)
        most_active = max(most_active, (await queue.counts())["active"])
        await asyncio.sleep(0.01)
        running -= 1

    for i in range(12):
        await queue.add("m", {"i": i})

    assert await make_worker(process, concurrency=3).run(burst=True) == 12

    assert most == 3
    assert most_active <= 3
    assert (await queue.counts())["completed"] == 12


async def test_thread_concurrency_is_never_exceeded(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    lock = threading.Lock()
    running = 0
    most = 0

    def process(job: corral.sync.Job) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    for i in range(9):
        await queue.add("m", {"i": i})

    assert await make_worker(process, concurrency=3).run(burst=True) == 9

    assert 1 < most <= 3


# -- failures and signals ------------------------------------------------------------------


async def test_fail_fail_succeed_counts_three_attempts(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    calls = 0

    async def flaky(job: corral.Job) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"failure {calls}")
        return "ok"

    job = await queue.add("m", {}, attempts=3)

    assert await make_worker(flaky).run(burst=True) == 3

    done = await stored(queue, job.id)
    assert (done.state, done.attempts_made, done.return_value) == ("completed", 3, "ok")


async def test_exception_fails_with_reason_and_stacktrace(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    def sync_explode(job: corral.sync.Job) -> None:
        raise KeyError("missing-field")

    job = await queue.add("m", {})

    assert await make_worker(sync_explode).run(burst=True) == 1

    failed = await stored(queue, job.id)
    assert failed.state == "failed"
    assert failed.failed_reason is not None
    assert "missing-field" in failed.failed_reason
    assert failed.stacktrace is not None
    assert "sync_explode" in failed.stacktrace


async def test_unrecoverable_error_fails_at_once(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async def hopeless(job: corral.Job) -> None:
        raise corral.UnrecoverableError("card declined")

    job = await queue.add("m", {}, attempts=5)

    assert await make_worker(hopeless).run(burst=True) == 1

    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made) == ("failed", 1)
    assert failed.failed_reason is not None
    assert "card declined" in failed.failed_reason


async def test_rate_limited_hands_back_and_holds_the_queue(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    calls: list[str] = []

    async def limited_once(job: corral.Job) -> str:
        calls.append(job.name)
        if len(calls) == 1:
            raise corral.RateLimited(60)
        return "sent"

    first = await queue.add("first", {})
    second = await queue.add("second", {})
    worker = make_worker(limited_once, concurrency=1)

    # Returns once the queue is held; the handed-back attempt is not counted.
    assert await worker.run(burst=True) == 0

    assert calls == ["first"]
    held = await stored(queue, first.id)
    assert (held.state, held.attempts_made) == ("waiting", 0)
    assert (await stored(queue, second.id)).state == "waiting"
    assert await queue.is_paused() is False
    await clock.advance(59)
    assert await worker.run(burst=True) == 0

    await clock.advance(1)

    assert await worker.run(burst=True) == 2
    done = await stored(queue, first.id)
    assert (done.state, done.attempts_made, done.return_value) == ("completed", 1, "sent")
    assert (await stored(queue, second.id)).state == "completed"


async def test_rate_limited_holds_every_worker_of_the_queue(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    async def limited(job: corral.Job) -> None:
        raise corral.RateLimited(30)

    await queue.add("m", {})
    await make_worker(limited).run(burst=True)

    assert await make_worker(succeed).run(burst=True) == 0
    await clock.advance(30)
    assert await make_worker(succeed).run(burst=True) == 1


async def test_timeout_cancels_an_async_processor(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    cancelled = asyncio.Event()

    async def hangs(job: corral.Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await queue.add("m", {}, timeout=0.2)

    assert await drive(make_worker(hangs).run(burst=True), clock) == 1

    assert cancelled.is_set()
    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made) == ("failed", 1)
    assert failed.failed_reason is not None
    assert re.search(r"time[d ]?\s*out", failed.failed_reason, re.IGNORECASE)


async def test_timeout_of_a_thread_fails_the_attempt_and_ignores_the_late_result(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    release = threading.Event()

    def stuck(job: corral.sync.Job) -> str:
        release.wait(10)
        return "too late"

    job = await queue.add("m", {}, timeout=0.2)
    run = asyncio.ensure_future(make_worker(stuck).run(burst=True))
    try:
        await drive(wait_for(is_state(queue, job.id, "failed")), clock)
    finally:
        release.set()

    assert await asyncio.wait_for(run, 5) == 1
    failed = await stored(queue, job.id)
    assert (failed.state, failed.attempts_made, failed.return_value) == ("failed", 1, None)
    assert failed.failed_reason is not None
    assert re.search(r"time[d ]?\s*out", failed.failed_reason, re.IGNORECASE)


async def test_timed_out_thread_keeps_its_slot_until_it_returns(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    release = threading.Event()
    started: list[str] = []

    def process(job: corral.sync.Job) -> str:
        name: str = job.name
        started.append(name)
        if name == "stuck":
            release.wait(10)
        return name

    stuck = await queue.add("stuck", {}, timeout=0.2)
    after = await queue.add("after", {})
    run = asyncio.ensure_future(make_worker(process, concurrency=1).run(burst=True))
    try:
        await drive(wait_for(is_state(queue, stuck.id, "failed")), clock)
        await asyncio.sleep(0.1)

        assert started == ["stuck"]
        assert (await stored(queue, after.id)).state == "waiting"
    finally:
        release.set()

    assert await asyncio.wait_for(run, 5) == 2
    assert (await stored(queue, after.id)).return_value == "after"


async def test_timed_out_attempt_is_retried_while_attempts_remain(
    queue: corral.Queue, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    calls = 0

    async def slow_then_fast(job: corral.Job) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        return "fast"

    job = await queue.add("m", {}, timeout=0.2, attempts=2)

    assert await drive(make_worker(slow_then_fast).run(burst=True), clock) == 2
    done = await stored(queue, job.id)
    assert (done.state, done.attempts_made, done.return_value) == ("completed", 2, "fast")


# -- callbacks -----------------------------------------------------------------------------


async def test_sync_callbacks_with_their_signatures(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    events: list[tuple[Any, ...]] = []
    calls = 0

    async def flaky(job: corral.Job) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first try")
        await job.update_progress(90)
        return {"sent": 1}

    worker = make_worker(flaky)
    worker.on("active", lambda job: events.append(("active", job.id)))
    worker.on("completed", lambda job, result: events.append(("completed", job.id, result)))
    worker.on(
        "failed",
        lambda job, exc, will_retry: events.append(("failed", job.id, str(exc), will_retry)),
    )
    worker.on("progress", lambda job, progress: events.append(("progress", job.id, progress)))
    job = await queue.add("m", {}, attempts=2)

    assert await worker.run(burst=True) == 2

    assert events == [
        ("active", job.id),
        ("failed", job.id, "first try", True),
        ("active", job.id),
        ("progress", job.id, 90),
        ("completed", job.id, {"sent": 1}),
    ]


async def test_async_callbacks_and_final_failure(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    events: list[tuple[Any, ...]] = []

    async def on_active(job: corral.Job) -> None:
        assert isinstance(job, corral.Job)
        events.append(("active", job.name))

    async def on_failed(job: corral.Job, exc: BaseException, will_retry: bool) -> None:
        events.append(("failed", job.name, type(exc).__name__, will_retry))

    async def on_completed(job: corral.Job, result: Any) -> None:
        events.append(("completed", job.name, result))

    worker = make_worker({"bad": explode, "good": succeed})
    worker.on("active", on_active)
    worker.on("failed", on_failed)
    worker.on("completed", on_completed)
    await queue.add("bad", {}, attempts=2)

    assert await worker.run(burst=True) == 2
    await queue.add("good", {})
    assert await worker.run(burst=True) == 1

    assert events == [
        ("active", "bad"),
        ("failed", "bad", "ValueError", True),
        ("active", "bad"),
        ("failed", "bad", "ValueError", False),
        ("active", "good"),
        ("completed", "good", "done"),
    ]


async def test_failed_callback_for_unrecoverable_does_not_retry(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    seen: list[bool] = []

    async def hopeless(job: corral.Job) -> None:
        raise corral.UnrecoverableError("no")

    worker = make_worker(hopeless)
    worker.on("failed", lambda job, exc, will_retry: seen.append(will_retry))
    await queue.add("m", {}, attempts=3)

    await worker.run(burst=True)

    assert seen == [False]


async def test_callback_that_raises_does_not_stop_the_worker(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    def broken(job: corral.Job, result: Any) -> None:
        raise RuntimeError("callback bug")

    worker = make_worker(succeed)
    worker.on("completed", broken)
    first = await queue.add("m", {})
    second = await queue.add("m", {})

    assert await worker.run(burst=True) == 2

    assert (await stored(queue, first.id)).state == "completed"
    assert (await stored(queue, second.id)).state == "completed"


def test_on_refuses_unknown_events(make_worker: WorkerFactory) -> None:
    worker = make_worker(succeed)

    with pytest.raises(corral.InvalidOptionError):
        worker.on("finished", lambda job: None)


# -- burst, run_workers --------------------------------------------------------------------


async def test_burst_runs_jobs_added_by_processors_and_counts_failures(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    async def parent(job: corral.Job) -> None:
        for i in range(3):
            await queue.add("child", {"i": i})

    async def child(job: corral.Job) -> int:
        if job.data["i"] == 1:
            raise ValueError("child 1 fails")
        return int(job.data["i"])

    await queue.add("parent", {})

    assert await make_worker({"parent": parent, "child": child}).run(burst=True) == 4

    counts = await queue.counts()
    assert (counts["completed"], counts["failed"], counts["waiting"]) == (3, 1, 0)


async def test_burst_on_an_empty_queue_returns_zero(make_worker: WorkerFactory) -> None:
    assert await make_worker(succeed).run(burst=True) == 0


async def test_run_workers_for_two_queues(
    store_url: str, clock: VirtualClock, make_worker: WorkerFactory
) -> None:
    async with (
        corral.Queue("mail", url=store_url, clock=clock) as mail,
        corral.Queue("sms", url=store_url, clock=clock) as sms,
    ):
        m = await mail.add("send", {"to": "ann"})
        s = await sms.add("send", {"to": "bob"})

        async def send_mail(job: corral.Job) -> str:
            return f"mailed {job.data['to']}"

        def send_sms(job: corral.sync.Job) -> str:
            return f"texted {job.data['to']}"

        workers = [
            make_worker(send_mail, queue_name="mail"),
            make_worker(send_sms, queue_name="sms"),
        ]
        await corral.run_workers(workers, burst=True)

        assert (await stored(mail, m.id)).return_value == "mailed ann"
        assert (await stored(sms, s.id)).return_value == "texted bob"


async def test_background_worker_picks_up_new_jobs(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    start_worker(make_worker(succeed))

    for _ in range(3):
        job = await queue.add("m", {})
        await wait_for(is_state(queue, job.id, "completed"))


# -- shutdown ------------------------------------------------------------------------------


async def test_close_hands_unfinished_jobs_back_without_an_attempt(
    queue: corral.Queue,
    clock: VirtualClock,
    make_worker: WorkerFactory,
    start_worker: WorkerStarter,
) -> None:
    job = await queue.add("m", {}, attempts=1)
    blocker = Blocker()
    worker = make_worker(blocker.process)
    run = start_worker(worker)
    await wait_for(is_state(queue, job.id, "active"))

    await drive(worker.close(timeout=0.2), clock)

    assert await asyncio.wait_for(run, 5) == 0  # the handed-back attempt is not counted

    back = await stored(queue, job.id)
    assert (back.state, back.attempts_made, back.stalled_count) == ("waiting", 0, 0)
    assert await make_worker(succeed).run(burst=True) == 1
    done = await stored(queue, job.id)
    assert (done.state, done.attempts_made) == ("completed", 1)


async def test_close_waits_for_jobs_that_finish_in_time(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    blocker = Blocker(result="finished")
    worker = make_worker(blocker.process)
    start_worker(worker)
    job = await queue.add("m", {})
    await wait_for(is_state(queue, job.id, "active"))

    closing = asyncio.ensure_future(worker.close(timeout=5))
    await asyncio.sleep(0.05)
    blocker.release()
    await asyncio.wait_for(closing, 5)

    done = await stored(queue, job.id)
    assert (done.state, done.return_value) == ("completed", "finished")


async def test_closed_worker_takes_no_more_jobs(
    queue: corral.Queue, make_worker: WorkerFactory, start_worker: WorkerStarter
) -> None:
    worker = make_worker(succeed)
    run = start_worker(worker)
    first = await queue.add("m", {})
    await wait_for(is_state(queue, first.id, "completed"))

    await worker.close()
    assert await asyncio.wait_for(run, 5) == 1
    later = await queue.add("m", {})
    await asyncio.sleep(0.1)

    assert (await stored(queue, later.id)).state == "waiting"


async def test_cancelling_run_closes_gracefully(
    queue: corral.Queue, make_worker: WorkerFactory
) -> None:
    blocker = Blocker(result="finished")
    worker = make_worker(blocker.process)
    run = asyncio.ensure_future(worker.run())
    job = await queue.add("m", {})
    await wait_for(is_state(queue, job.id, "active"))

    run.cancel()
    await asyncio.sleep(0.05)
    blocker.release()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)

    # Graceful: the active job was allowed to finish, not dropped or left active.
    done = await stored(queue, job.id)
    assert (done.state, done.return_value, done.attempts_made) == ("completed", "finished", 1)


# -- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"concurrency": 2.5},
        {"lock_duration": 0},
        {"lock_duration": -1},
        {"stalled_interval": float("nan")},
        {"max_stalled_count": -1},
        {"isolation": "fork"},
    ],
    ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()),
)
def test_worker_validates_its_arguments_at_construction(
    store_url: str, options: dict[str, Any]
) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Worker("q", succeed, url=store_url, **options)


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "a/b"])
def test_worker_validates_the_queue_name(store_url: str, name: str) -> None:
    with pytest.raises(corral.InvalidOptionError):
        corral.Worker(name, succeed, url=store_url)


def test_worker_refuses_processors_that_are_not_callable(store_url: str) -> None:
    not_callable: Any = {"m": "not a function"}

    with pytest.raises(corral.InvalidOptionError):
        corral.Worker("q", not_callable, url=store_url)
