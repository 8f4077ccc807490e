"""Worker: takes jobs from one queue and runs them, with concurrency, locks and retries."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import signal
import socket
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import orjson

from corral import codec
from corral.backends import open_backend, redact, resolve_url
from corral.backends.base import (
    Backend,
    Claimed,
    Complete,
    Fail,
    JobRecord,
    Outcome,
    Release,
    RetryLater,
    ScheduleRecord,
)
from corral.clock import SYSTEM, Clock
from corral.errors import (
    BackendUnavailableError,
    CorralError,
    InvalidOptionError,
    LockLostError,
    RateLimited,
)
from corral.isolation import ProcessPool, processor_target
from corral.job import Job
from corral.locks import LockRenewer
from corral.options import check_hash_tag, check_int, check_queue_name, parse_duration
from corral.policy import BackoffFunction, decide_after_failure
from corral.processors import Processor, check_processors, is_async_callable, no_processor
from corral.queue import Queue
from corral.schedules import ScheduleSpec

__all__ = ["Worker", "run_workers"]

log = logging.getLogger("corral.worker")

EVENTS: Final = frozenset({"active", "completed", "failed", "progress", "stalled", "error"})
# How long an idle worker waits on the store before looking again (real seconds).
IDLE_POLL: Final = 1.0
# A worker renews its registration this often; it counts as gone after three misses.
HEARTBEAT_MS: Final = 10_000
# The longest pause between attempts to reach a store that is away (real seconds).
OUTAGE_BACKOFF_CAP: Final = 5.0


class JobTimeoutError(CorralError):
    """A job ran past its `timeout`."""


@dataclass(slots=True)
class _Running:
    job: Job
    token: str
    record: JobRecord
    task: asyncio.Task[None] | None = None
    outcome: Outcome | None = None
    notice: tuple[str, tuple[Any, ...]] | None = None  # callback to fire once acknowledged
    thread_busy: bool = field(default=False)


class Worker:
    """Runs the jobs of one queue: `await worker.run()`, stop with `await worker.close()`."""

    def __init__(
        self,
        queue_name: str,
        processor: Processor | Mapping[str, Processor],
        *,
        url: str | None = None,
        concurrency: int = 1,
        lock_duration: float | timedelta = 30,
        stalled_interval: float | timedelta = 30,
        max_stalled_count: int = 1,
        isolation: str = "thread",
        clock: Clock | None = None,
        backoff: BackoffFunction | None = None,
        hash_tag: str | None = None,
    ) -> None:
        self.queue_name: str = check_queue_name(queue_name)
        self.hash_tag = check_hash_tag(hash_tag)
        self._processors = check_processors(processor)
        self._url_given = url is not None
        self._url_error: InvalidOptionError | None = None
        try:
            self.url: str = resolve_url(url)
        except InvalidOptionError as exc:
            if url is not None:
                raise
            # An empty CORRAL_URL may still be overridden by `bind_url` (the CLI's --url).
            self.url, self._url_error = "", exc
        self.concurrency: int = check_int(concurrency, "concurrency", minimum=1)
        self.lock_duration = parse_duration(lock_duration, "lock_duration", allow_zero=False)
        self.stalled_interval = parse_duration(stalled_interval, "stalled_interval",
                                               allow_zero=False)
        self.max_stalled_count = check_int(max_stalled_count, "max_stalled_count", minimum=0)
        if isolation not in ("thread", "process"):
            raise InvalidOptionError(f"isolation must be 'thread' or 'process', not {isolation!r}")
        self.isolation = isolation
        # Checked now: a processor a child process cannot import is a construction error.
        self._targets = (
            {name: processor_target(fn, name) for name, fn in self._processors.items()}
            if isolation == "process" else {}
        )
        self._pool: ProcessPool | None = None
        self._is_async: dict[str, bool] = {}  # by job name: inspecting a callable is not free
        self.clock: Clock = clock or SYSTEM
        if backoff is not None and not callable(backoff):
            raise InvalidOptionError("backoff must be a callable (attempt, exc) -> seconds")
        self._backoff = backoff
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._handlers: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}
        self._running: dict[str, _Running] = {}
        self._finished: list[_Running] = []
        self._stray_threads = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._stopped: asyncio.Event | None = None
        self._close_timeout = 30.0
        self._attempts = 0
        self._next_stall_check = 0
        self._next_heartbeat = 0
        self._backend: Backend | None = None
        self._queue: Queue | None = None
        self._locks: LockRenewer | None = None
        self._threads: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.id} on {self.queue_name!r} at {redact(self.url)}>"

    def bind_url(self, url: str | None) -> None:
        """Use `url` unless the Worker was built with an explicit `url=` (for the CLI)."""
        if not self._url_given:
            self.url = resolve_url(url)
            self._url_error = None

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call `callback` on `event`: active, completed, failed, progress, stalled, error."""
        if event not in EVENTS:
            raise InvalidOptionError(f"unknown worker event {event!r}: one of {sorted(EVENTS)}")
        if not callable(callback):
            raise InvalidOptionError("a worker callback must be callable")
        self._handlers[event].append(callback)

    async def _emit(self, event: str, *args: Any) -> None:
        for callback in self._handlers[event]:
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("worker %r callback failed", event)

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, burst: bool = False, handle_signals: bool = False) -> int:
        """Take and run jobs until closed (or, with `burst`, until none is due); attempts run."""
        if self._stopped is not None and not self._stopped.is_set():
            raise CorralError("this worker is already running")
        if self._url_error is not None:
            raise self._url_error
        self._prepare()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._request_close)
        try:
            await self._loop(burst)
        except asyncio.CancelledError:
            self._closing = True
            await self._shutdown()
            raise
        finally:
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        await self._shutdown()
        return self._attempts

    def _prepare(self) -> None:
        self._closing = False
        self._attempts = 0
        self._stopped = asyncio.Event()
        self._wake = asyncio.Event()
        self._backend = open_backend(self.url)
        self._queue = Queue._sharing(
            self.queue_name, self.url, self._backend, self.clock, self.hash_tag
        )
        self._queue._on_progress = functools.partial(self._emit, "progress")
        self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="corral-job")
        if self.isolation == "process":
            self._pool = ProcessPool(
                self._targets, self.url, self.queue_name, self.concurrency, self.hash_tag
            )
        self._locks = LockRenewer(
            self._backend.lock_keeper(), self.queue_name, int(self.lock_duration * 1000),
            self.clock, asyncio.get_running_loop(),
        )
        self._locks.start()
        self._next_stall_check = self.clock.now_ms()
        self._next_heartbeat = self.clock.now_ms()
        log.info("corral worker %s started on %s", self.id, redact(self.url))

    def _request_close(self) -> None:
        log.info("corral worker %s: shutting down", self.id)
        self._closing = True
        self._wake.set()

    async def close(self, timeout: float = 30) -> None:
        """Stop taking jobs, wait up to `timeout` s for active ones, hand the rest back."""
        self._close_timeout = parse_duration(timeout, "timeout")
        self._request_close()
        if self._stopped is not None:
            await self._stopped.wait()

    async def _loop(self, burst: bool) -> None:
        outage = 0
        while not self._closing:
            try:
                done = await self._step(burst)
            except BackendUnavailableError as exc:
                # The store is away: keep running jobs, retry with backoff, lose nothing.
                outage += 1
                delay = min(OUTAGE_BACKOFF_CAP, 0.05 * 2**outage)
                log.warning("worker %s: store unavailable (%s); retrying in %.1f s",
                            self.id, exc, delay)
                await self._emit("error", exc)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            if outage:
                log.info("worker %s: store reachable again", self.id)
                outage = 0
            if done:
                return

    async def _step(self, burst: bool) -> bool:
        """One round: settle finished jobs, claim more, fire due ticks, or wait. True: done."""
        assert self._backend is not None
        await self._maybe_heartbeat()
        await self._maybe_recover_stalled()
        outcomes = self._take_finished()
        # Slots of jobs acknowledged in this call are free for the jobs it claims.
        freed = sum(1 for running in outcomes if not running.thread_busy)
        free = self.concurrency - len(self._running) + freed - self._stray_threads
        if free <= 0 and not outcomes:
            await self._wait(None, idle=False)
            return False
        try:
            result = await self._backend.settle(
                self.queue_name, [r.outcome for r in outcomes if r.outcome], max(free, 0),
                int(self.lock_duration * 1000), self.id, self._now(),
            )
        except BaseException:
            self._finished = outcomes + self._finished  # acknowledge them next time
            raise
        await self._acknowledged(outcomes, set(result.refused))
        for claimed in result.claimed:
            self._start(claimed)
        if result.due_schedules:
            await self._fire_schedules(result.due_schedules, result.now_ms)
            return False
        if result.claimed or self._finished:
            return False
        if burst and not self._running and not self._stray_threads:
            return True
        wake_at = min(
            (t for t in (result.next_due_ms, result.hold_until_ms) if t is not None),
            default=None,
        )
        await self._wait(wake_at, idle=not burst)
        return False

    def _now(self) -> int | None:
        return self.clock.now_ms() if self.clock.is_virtual else None

    def _take_finished(self) -> list[_Running]:
        finished, self._finished = self._finished, []
        return finished

    async def _wait(self, wake_at_ms: int | None, *, idle: bool) -> None:
        """Sleep until a job finishes, close(), new work in the store, or `wake_at_ms`."""
        assert self._backend is not None
        self._wake.clear()
        if self._finished or self._closing:
            return
        deadline = min(self._next_stall_check, self._next_heartbeat)
        if wake_at_ms is not None:
            deadline = min(deadline, wake_at_ms)
        seconds = (deadline - self.clock.now_ms()) / 1000
        if not self.clock.is_virtual:
            # The common waits, after every job and whenever idle: one timer, and one task
            # for the store's signal of new work (which wakes this wait when it comes).
            change = None
            if idle:
                change = asyncio.ensure_future(
                    self._backend.wait_for_change(self.queue_name, IDLE_POLL))
                change.add_done_callback(self._changed)
            try:
                async with asyncio.timeout(max(0.0, seconds)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            finally:
                if change is not None:
                    change.cancel()
            return
        waiters: list[asyncio.Task[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if idle:
            waiters.append(asyncio.ensure_future(
                self._backend.wait_for_change(self.queue_name, IDLE_POLL)))
        waiters.append(asyncio.ensure_future(self.clock.sleep(seconds)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _changed(self, change: asyncio.Task[None]) -> None:
        """The store signalled new work (or failed to wait: the next call reports it)."""
        if not change.cancelled():
            change.exception()  # retrieved here; a store that is away fails the next call
            self._wake.set()

    async def _maybe_heartbeat(self) -> None:
        """Register this worker, and renew the registration every HEARTBEAT_MS (at most
        once a real second on a sped-up clock)."""
        assert self._backend is not None
        if self.clock.now_ms() < self._next_heartbeat:
            return
        every_ms = max(HEARTBEAT_MS, round(1000 / self.clock.real_seconds(1.0)))
        self._next_heartbeat = self.clock.now_ms() + every_ms
        info = orjson.dumps({
            "host": socket.gethostname(), "pid": os.getpid(), "queue": self.queue_name,
            "concurrency": self.concurrency, "isolation": self.isolation,
        }).decode()
        await self._backend.register_worker(
            self.queue_name, self.id, info, 3 * every_ms, self._now()
        )

    async def _maybe_recover_stalled(self) -> None:
        assert self._backend is not None
        if self.clock.now_ms() < self._next_stall_check:
            return
        self._next_stall_check = self.clock.now_ms() + int(self.stalled_interval * 1000)
        result = await self._backend.recover_stalled(
            self.queue_name, self.max_stalled_count, self._now()
        )
        for job_id in [*result.recovered, *result.failed]:
            log.warning("job %s stalled (its worker's lock lapsed)", job_id)
            await self._emit("stalled", job_id)

    async def _fire_schedules(self, due: list[ScheduleRecord], now_ms: int) -> None:
        """Fire due ticks; a tick another process fired first is refused by the store."""
        assert self._backend is not None
        assert self._queue is not None
        for record in due:
            assert record.next_run is not None
            spec = ScheduleSpec.from_text(record.spec)
            following = spec.run_after(record.next_run, now_ms, record.count + 1)
            job = await self._queue._tick_job(record)
            fired = await self._backend.fire_schedule(
                self.queue_name, record.id, record.version, record.next_run, following, job,
                self._now(),
            )
            if fired:
                log.info("schedule %r fired job %s", record.id, job.id)

    # -- one job ---------------------------------------------------------------------------

    def _start(self, claimed: Claimed) -> None:
        assert self._queue is not None
        assert self._locks is not None
        job = Job(claimed.record, self._queue)
        running = _Running(job, claimed.token, claimed.record)
        self._running[job.id] = running
        self._locks.hold(job.id, claimed.token, job.options.timeout)
        running.task = asyncio.ensure_future(self._process(running))

    async def _process(self, running: _Running) -> None:
        job = running.job
        if self._handlers["active"]:
            await self._emit("active", job)
        try:
            result = await self._invoke(running)
            value = codec.dumps(result, "return_value")
        except RateLimited as exc:
            running.outcome = Release(job.id, running.token, hold_ms=int(exc.seconds * 1000))
        except asyncio.CancelledError:
            running.outcome = Release(job.id, running.token)
        except Exception as exc:
            await self._failed(running, exc)
        else:
            running.outcome = Complete(job.id, running.token, value)
            running.notice = ("completed", (job,))  # with the value as stored, when acknowledged
        self._finished.append(running)
        self._wake.set()

    async def _failed(self, running: _Running, exc: Exception) -> None:
        job = running.job
        attempts_made = job.attempts_made + 1
        reason = str(exc) or type(exc).__name__
        stack = "".join(traceback.format_exception(exc))
        try:
            decision = await decide_after_failure(
                exc, attempts_made, job.options.attempts, job.options.backoff, self._backoff
            )
        except InvalidOptionError as bad:
            log.error("job %s: %s; failing it", job.id, bad)
            decision = None
        if decision is not None and decision.retry:
            running.outcome = RetryLater(
                job.id, running.token, reason, stack, int(decision.delay * 1000)
            )
        else:
            running.outcome = Fail(job.id, running.token, reason, stack)
        will_retry = isinstance(running.outcome, RetryLater)
        running.notice = ("failed", (job, exc, will_retry))

    async def _invoke(self, running: _Running) -> Any:
        job = running.job
        processor = self._processors.get(job.name, self._processors.get("*"))
        if processor is None:
            raise no_processor(job.name, self._processors)
        timeout = job.options.timeout
        is_async = self._is_async.get(job.name)
        if is_async is None:
            is_async = self._is_async[job.name] = is_async_callable(processor)
        if self._pool is None and is_async and timeout is None:
            return await processor(job)  # the common case: no second task per job
        if self._pool is not None:
            work: asyncio.Future[Any] = asyncio.ensure_future(self._pool.run(running.record))
        elif is_async:
            work = asyncio.ensure_future(processor(job))
        else:
            work = self._in_thread(processor, running)
        if timeout is None:
            return await work
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            await asyncio.wait([work, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not work.done():
            work.cancel()
            raise JobTimeoutError(f"job timed out after {timeout:g} s")
        return work.result()

    def _in_thread(self, processor: Processor, running: _Running) -> asyncio.Future[Any]:
        from corral.sync import Job as SyncJob

        loop = asyncio.get_running_loop()

        def run_on_loop(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        sync_job = SyncJob(running.job, run_on_loop)
        future = loop.run_in_executor(self._threads, processor, sync_job)
        running.thread_busy = True

        def thread_done(_: object) -> None:
            # A thread that outlived its job (timeout, close) keeps its slot until it returns.
            running.thread_busy = False
            if running.job.id not in self._running:
                self._stray_threads -= 1
                self._wake.set()
                log.info("job %s: its thread returned after the job ended", running.job.id)

        future.add_done_callback(thread_done)
        return asyncio.shield(future)

    async def _acknowledged(self, finished: list[_Running], refused: set[str]) -> None:
        assert self._locks is not None
        for running in finished:
            job_id = running.job.id
            self._running.pop(job_id, None)
            self._locks.release(job_id)
            if running.thread_busy:
                self._stray_threads += 1
            if isinstance(running.outcome, Complete | Fail | RetryLater):
                self._attempts += 1
            if job_id in refused:
                await self._emit("error", LockLostError(
                    f"job {job_id}: lock lapsed before the worker finished; result discarded"))
            elif running.notice is not None and self._handlers[running.notice[0]]:
                event, args = running.notice
                if isinstance(running.outcome, Complete):
                    args = (*args, codec.loads(running.outcome.return_value))
                await self._emit(event, *args)

    async def _shutdown(self) -> None:
        """Wait for active jobs up to the close timeout, hand the rest back, release all."""
        assert self._backend is not None
        assert self._locks is not None
        try:
            tasks = [r.task for r in self._running.values() if r.task is not None]
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self._close_timeout)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
            finished = self._take_finished()
            if finished:
                result = await self._backend.settle(
                    self.queue_name, [r.outcome for r in finished if r.outcome], 0,
                    int(self.lock_duration * 1000), self.id, self._now(),
                )
                await self._acknowledged(finished, set(result.refused))
            await self._backend.unregister_worker(self.queue_name, self.id)
        except BackendUnavailableError as exc:
            # Nothing is lost: the jobs' locks lapse and other workers take them again.
            log.error("worker %s could not report its last jobs (%s); they will be retried",
                      self.id, exc)
        finally:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            self._locks.stop()
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
            await self._backend.close()
            if self._stopped is not None:
                self._stopped.set()
            log.info("corral worker %s stopped", self.id)


async def run_workers(
    workers: Iterable[Worker], *, burst: bool = False, handle_signals: bool = False
) -> int:
    """Run several workers (e.g. one per queue) in this process; returns attempts run."""
    workers = list(workers)
    if not workers or not all(isinstance(w, Worker) for w in workers):
        raise InvalidOptionError("run_workers needs a non-empty list of corral.Worker")
    loop = asyncio.get_running_loop()

    def close_all() -> None:
        for worker in workers:
            worker._request_close()

    if handle_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, close_all)
    try:
        counts = await asyncio.gather(*(w.run(burst=burst) for w in workers))
    finally:
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
    return sum(counts)
