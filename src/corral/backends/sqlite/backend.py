"""`SqliteBackend`: the async face of the store.

Each backend owns one connection and one thread; a method submits one transition to
that thread through `_call`, so the event loop never waits for a lock or a long write.

The transitions on the path from an add to a job's start, a single add and a worker's
look for work (`_call_at_once`), run on the event loop's thread instead when they need
not wait: the connection is free and no other connection holds the write lock. Each
takes 0.3-0.5 ms, and handing it to the thread and back took 0.15-0.3 ms more; one that
would wait for a lock goes to the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from corral import clock
from corral.backends.base import (
    AddResult,
    ChildRecord,
    EventRecord,
    FlowJob,
    JobRecord,
    Limits,
    ListableState,
    MinuteMetrics,
    NewJob,
    Outcome,
    RecoverResult,
    ScheduleRecord,
    SettleResult,
    StoredConfig,
    WorkerRecord,
)
from corral.backends.sqlite import events as event_ops
from corral.backends.sqlite import flows as flow_ops
from corral.backends.sqlite import jobs as job_ops
from corral.backends.sqlite import metrics as metric_ops
from corral.backends.sqlite import notify
from corral.backends.sqlite import queues as queue_ops
from corral.backends.sqlite import schedules as schedule_ops
from corral.backends.sqlite import settle as worker_ops
from corral.backends.sqlite import workers as registry_ops
from corral.backends.sqlite.store import Settings, Store, WouldWait, unavailable
from corral.errors import BackendUnavailableError

P = ParamSpec("P")
T = TypeVar("T")


def _prepare_wait(store: Store, queue: str) -> bool:
    """Start watching the file, then tell whether work arrived since the last look."""
    store.open()  # the file and schema exist before the poller opens it
    try:
        if not notify.start_polling(store.settings.path):
            return True  # busy: let the caller look again rather than wait blind
    except sqlite3.Error as exc:
        raise unavailable(store.settings, exc) from exc
    return store.changed_since_look(queue)


def _watch_and_read(
    store: Store, queue: str, after: int, count: int
) -> tuple[bool, list[EventRecord]]:
    """Start watching the file, then read the events after `after`; also tells whether the
    watch started (False: the file was busy, look again soon rather than wait blind)."""
    store.open()
    try:
        watching = notify.start_polling(store.settings.path)
    except sqlite3.Error as exc:
        raise unavailable(store.settings, exc) from exc
    return watching, event_ops.read_events(store, queue, after, count)


class SqliteLockKeeper:
    """Renews locks from a thread of its own, on a connection of its own."""

    def __init__(self, settings: Settings) -> None:
        self._store = Store(settings, shared=True)
        self._lock = threading.Lock()

    def extend_locks(
        self, queue: str, tokens: Mapping[str, str], lock_ms: int, now_ms: int | None
    ) -> list[str]:
        """Extend the locks of jobs still held with these tokens; return the ids lost."""
        if not tokens:
            return []
        with self._lock:
            return worker_ops.extend_locks(self._store, queue, tokens, lock_ms, now_ms)

    def close(self) -> None:
        """Close the connection (a later call opens it again)."""
        with self._lock:
            self._store.close()


class SqliteBackend:
    """The embedded store: one SQLite file shared by every process on the machine."""

    kind = "sqlite"

    def __init__(self, path: str, params: Mapping[str, str] | None = None) -> None:
        self.settings = Settings.parse(path, params or {})
        self._store = Store(self.settings, shared=True)
        self._using = threading.Lock()
        """Held while a transition runs on the connection, on the thread or the loop."""
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._closed = False

    def _ready(self) -> ThreadPoolExecutor:
        """The thread, after the checks every call makes."""
        if self._closed:
            raise BackendUnavailableError(f"SQLite store {self.settings.path}: closed")
        if self._pid != os.getpid():
            # A forked child must not touch the parent's connection or thread (nor wait
            # for a lock that a thread of the parent held).
            self._store, self._executor = Store(self.settings, shared=True), None
            self._using, self._pid = threading.Lock(), os.getpid()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="corral-sqlite")
        return self._executor

    async def _call(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run one transition on this backend's thread."""
        executor = self._ready()
        call = functools.partial(self._run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def _run(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self._using:
            return fn(self._store, *args, **kwargs)

    async def _call_at_once(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a short transition here, on the event loop's thread, when it need not wait;
        else on the backend's thread."""
        self._ready()
        # Opening the connection checks the schema: a first call is not short.
        if self._store.is_open and self._using.acquire(blocking=False):
            try:
                return self._store.at_once(fn, *args, **kwargs)
            except WouldWait:
                pass
            finally:
                self._using.release()
        return await self._call(fn, *args, **kwargs)

    async def ping(self) -> bool:
        """True when the database answers."""
        return await self._call(job_ops.ping)

    async def close(self) -> None:
        """Close the connections and stop the thread."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None or self._pid != os.getpid():
            return
        await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(self._run, Store.close)
        )
        executor.shutdown(wait=False)

    # -- producers ------------------------------------------------------------------------

    async def add(
        self, queue: str, jobs: Sequence[NewJob], config_version: int, now_ms: int | None
    ) -> AddResult:
        """Write all jobs in one transaction; an id still stored returns that job unchanged."""
        if len(jobs) == 1:
            return await self._call_at_once(job_ops.add, queue, jobs, config_version, now_ms)
        return await self._call(job_ops.add, queue, jobs, config_version, now_ms)

    async def add_flow(
        self, jobs: Sequence[FlowJob], config_versions: Mapping[str, int], now_ms: int | None
    ) -> AddResult:
        """Write a flow in one transaction, its queues' config versions checked: a root id
        still stored returns that job alone and writes nothing; any other id still stored
        raises InvalidOptionError and writes nothing."""
        return await self._call(flow_ops.add_flow, jobs, config_versions, now_ms)

    async def dependencies(self, queue: str, job_id: str) -> list[ChildRecord] | None:
        """A parent's children in the order they were added (None: no such job)."""
        return await self._call(flow_ops.dependencies, queue, job_id)

    def check_flow(self, queues: Sequence[str]) -> None:
        """Nothing to check: one transaction spans every queue of the file."""

    def use_hash_tag(self, queue: str, hash_tag: str | None) -> None:
        """Ignored: hash tags place Redis keys, and SQLite has one file."""

    async def get_config(self, queue: str) -> StoredConfig:
        """The queue's stored settings."""
        return await self._call(queue_ops.get_config, queue)

    async def set_config(self, queue: str, config: str, limits: Limits) -> int:
        """Store the queue's settings (and the limits they set); return the new version."""
        return await self._call(queue_ops.set_config, queue, config, limits)

    # -- workers --------------------------------------------------------------------------

    async def settle(
        self,
        queue: str,
        outcomes: Sequence[Outcome],
        claim: int,
        lock_ms: int,
        worker_id: str,
        now_ms: int | None,
    ) -> SettleResult:
        """Apply finished attempts (checking tokens), promote due jobs, claim up to `claim`."""
        # A look for work, what an idle worker does when woken, is the short one; the
        # outcomes of finished jobs are written on the thread while the jobs' loop runs.
        call = self._call if outcomes else self._call_at_once
        return await call(worker_ops.settle, queue, outcomes, claim, lock_ms, worker_id, now_ms)

    async def recover_stalled(
        self, queue: str, max_stalled_count: int, now_ms: int | None
    ) -> RecoverResult:
        """Hand back active jobs whose lock lapsed; fail those stalled too often."""
        return await self._call(worker_ops.recover_stalled, queue, max_stalled_count, now_ms)

    def lock_keeper(self) -> SqliteLockKeeper:
        """A blocking handle, with its own connection, for the thread that renews locks."""
        return SqliteLockKeeper(self.settings)

    async def wait_for_change(self, queue: str, timeout: float) -> None:
        """Return soon after a commit that may bring work, or after `timeout` real seconds."""
        deadline = clock.monotonic() + max(0.0, timeout)
        waiter = notify.register(self.settings.path, queue)
        try:
            if await self._call(_prepare_wait, queue):
                return
            remaining = deadline - clock.monotonic()
            if remaining > 0:
                # Awaited directly: the wake-up reaches this task a loop turn sooner than
                # through asyncio.wait.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.future
        finally:
            notify.unregister(waiter)
            waiter.future.cancel()

    # -- jobs -----------------------------------------------------------------------------

    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        """One job, or None."""
        return await self._call(job_ops.get_job, queue, job_id)

    async def list_jobs(
        self, queue: str, state: ListableState, offset: int, limit: int
    ) -> list[JobRecord]:
        """Jobs in one state: next to run first, or newest finished first."""
        return await self._call(job_ops.list_jobs, queue, state, offset, limit)

    async def counts(self, queue: str) -> dict[str, int]:
        """Number of jobs in each state, zeros included."""
        return await self._call(job_ops.counts, queue)

    async def remove(self, queue: str, job_id: str) -> bool:
        """Remove a job in any state but active (JobLockedError); False when missing."""
        return await self._call(job_ops.remove, queue, job_id)

    async def remove_tagged(self, queue: str, tag: str) -> int:
        """Remove waiting and delayed jobs carrying `tag`; return how many."""
        return await self._call(job_ops.remove_tagged, queue, tag)

    async def promote(self, queue: str, job_id: str, now_ms: int | None) -> bool:
        """Move a delayed job to waiting now; False when it is not delayed."""
        return await self._call(job_ops.promote, queue, job_id, now_ms)

    async def retry_job(self, queue: str, job_id: str, now_ms: int | None) -> bool:
        """Move a failed or completed job back to waiting with fresh attempts."""
        return await self._call(job_ops.retry_job, queue, job_id, now_ms)

    async def retry_failed(self, queue: str, limit: int | None, now_ms: int | None) -> int:
        """Move up to `limit` failed jobs (oldest first) back to waiting."""
        return await self._call(queue_ops.retry_failed, queue, limit, now_ms)

    async def update_progress(self, queue: str, job_id: str, progress: str) -> bool:
        """Store a job's progress; False when the job is gone."""
        return await self._call(job_ops.update_progress, queue, job_id, progress)

    async def update_data(self, queue: str, job_id: str, data: str) -> bool:
        """Replace a job's data; False when the job is gone."""
        return await self._call(job_ops.update_data, queue, job_id, data)

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        """Append a log line (keeping the newest `keep`); return the count, 0 if job gone."""
        return await self._call(job_ops.add_log, queue, job_id, line, keep)

    async def get_logs(self, queue: str, job_id: str) -> list[str]:
        """A job's log lines, oldest first."""
        return await self._call(job_ops.get_logs, queue, job_id)

    # -- the queue ------------------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume taking jobs (adds still succeed)."""
        await self._call(queue_ops.set_paused, queue, paused)

    async def is_paused(self, queue: str) -> bool:
        """Whether the queue is paused."""
        return await self._call(queue_ops.is_paused, queue)

    async def clean(
        self, queue: str, state: ListableState, grace_ms: int, limit: int, now_ms: int | None
    ) -> list[str]:
        """Remove up to `limit` jobs in `state` older than `grace_ms`; return their ids."""
        return await self._call(queue_ops.clean, queue, state, grace_ms, limit, now_ms)

    async def drain(self, queue: str, delayed: bool) -> int:
        """Remove every waiting job (and delayed ones when asked); return how many."""
        return await self._call(queue_ops.drain, queue, delayed)

    async def obliterate(self, queue: str, force: bool) -> None:
        """Remove the queue and everything in it (JobLockedError if active, unless force)."""
        await self._call(queue_ops.obliterate, queue, force)

    async def queue_names(self) -> list[str]:
        """Every queue that has been used in this store."""
        return await self._call(queue_ops.queue_names)

    async def time_ms(self) -> int:
        """The store's clock: this machine's, as every process sharing the file reads it."""
        return clock.system_ms()

    # -- schedules ------------------------------------------------------------------------

    async def upsert_schedule(
        self, queue: str, schedule_id: str, spec: str, next_run_ms: int | None
    ) -> bool:
        """Store a schedule; an identical spec changes nothing (False). A changed spec
        replaces the planned tick and bumps the version; count and last run are kept."""
        return await self._call(
            schedule_ops.upsert_schedule, queue, schedule_id, spec, next_run_ms
        )

    async def remove_schedule(self, queue: str, schedule_id: str) -> bool:
        """Remove a schedule and its planned tick; False when there was none."""
        return await self._call(schedule_ops.remove_schedule, queue, schedule_id)

    async def list_schedules(self, queue: str) -> list[ScheduleRecord]:
        """Every schedule of the queue, by id."""
        return await self._call(schedule_ops.list_schedules, queue)

    async def fire_schedule(
        self,
        queue: str,
        schedule_id: str,
        version: int,
        due_ms: int,
        next_run_ms: int | None,
        job: NewJob,
        now_ms: int | None,
    ) -> bool:
        """Compare-and-set: while the schedule is at `version` with its next run at
        `due_ms`, add `job` (as `add` would) and advance it; else change nothing."""
        return await self._call(
            schedule_ops.fire_schedule,
            queue, schedule_id, version, due_ms, next_run_ms, job, now_ms,
        )

    # -- events and metrics -----------------------------------------------------------------

    async def last_event_id(self, queue: str) -> str:
        """The id of the newest event kept ("0" when there is none)."""
        return await self._call(event_ops.last_event_id, queue)

    async def read_events(
        self, queue: str, after_id: str, count: int, block_ms: int
    ) -> list[EventRecord]:
        """Up to `count` events with ids after `after_id` ("0": from the oldest kept),
        oldest first, waiting up to `block_ms` real ms for one when there is none yet.

        Waiting costs no queries until a commit: this process's commits to the queue wake
        the reader at once, other processes' within a poll of the file's data version.
        """
        after = event_ops.parse_id(after_id)
        if block_ms <= 0 or count <= 0:
            return await self._call(event_ops.read_events, queue, after, count)
        deadline = clock.monotonic() + block_ms / 1000
        channel = notify.events_channel(queue)
        while True:
            # Listen before reading, so that no commit after the read goes unnoticed.
            waiter = notify.register(self.settings.path, channel)
            try:
                watching, events = await self._call(_watch_and_read, queue, after, count)
                remaining = deadline - clock.monotonic()
                if events or remaining <= 0:
                    return events
                if not watching:
                    remaining = min(remaining, notify.POLL_SECONDS * 5)
                # Woken by any commit to the file: read again, and wait on when it brought
                # no event of this queue.
                await asyncio.wait([waiter.future], timeout=remaining)
            finally:
                notify.unregister(waiter)
                waiter.future.cancel()

    async def metrics(self, queue: str, since_ms: int, until_ms: int) -> list[MinuteMetrics]:
        """Per-minute metrics of finished jobs, oldest first, for minutes starting within
        [since_ms, until_ms] (minutes with nothing finished are left out); kept 7+ days."""
        return await self._call(metric_ops.minute_metrics, queue, since_ms, until_ms)

    # -- the worker registry ----------------------------------------------------------------

    async def register_worker(
        self, queue: str, worker_id: str, info: str, ttl_ms: int, now_ms: int | None
    ) -> None:
        """Register a worker or renew its heartbeat; it counts as live for `ttl_ms`."""
        await self._call(registry_ops.register_worker, queue, worker_id, info, ttl_ms, now_ms)

    async def unregister_worker(self, queue: str, worker_id: str) -> None:
        """Forget a worker that stopped."""
        await self._call(registry_ops.unregister_worker, queue, worker_id)

    async def list_workers(self, queue: str, now_ms: int | None) -> list[WorkerRecord]:
        """The live workers of a queue (expired ones are left out), by id."""
        return await self._call(registry_ops.list_workers, queue, now_ms)
