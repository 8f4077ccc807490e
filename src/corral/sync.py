"""The blocking API: `corral.sync.Queue` and `corral.sync.Job`.

One implementation with the async API, not a copy: every method runs the
matching coroutine on a private event loop in a daemon thread. The thread and
the store connection are made again after `fork()` (gunicorn `--preload`), and
`tests/conformance/test_sync.py` checks that no public method drifts apart.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from corral import job as async_job
from corral import queue as async_queue
from corral.clock import Clock
from corral.job import Child
from corral.job_state import JobState
from corral.monitoring import MinuteStats, WorkerInfo
from corral.options import UNSET, JobOptions, JobSpec, QueueConfig, RateLimit, _Unset
from corral.schedules import Schedule

__all__ = ["Job", "Queue"]

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


class _LoopThread:
    """A private event loop in a daemon thread, made again in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="corral-sync", daemon=True
                ).start()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop()).result()


_LOOP = _LoopThread()


class Job:
    """A job whose methods block; attributes are those of `corral.Job`."""

    def __init__(self, job: async_job.Job, run: Runner) -> None:
        self._job = job
        self._run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __repr__(self) -> str:
        return repr(self._job)

    @property
    def state(self) -> JobState:
        """The job's state when it was last read."""
        return self._job.state

    @property
    def queue(self) -> Queue:
        """The job's queue with blocking methods (a worker's: sharing its connection)."""
        return Queue._over(self._job.queue, self._run)

    def to_json(self) -> dict[str, Any]:
        """The job as JSON-ready values."""
        return self._job.to_json()

    def update_progress(self, progress: Any) -> None:
        """Store the job's progress."""
        self._run(self._job.update_progress(progress))

    def log(self, text: str) -> int:
        """Append a line to the job's log."""
        count: int = self._run(self._job.log(text))
        return count

    def logs(self) -> list[str]:
        """The job's log lines."""
        lines: list[str] = self._run(self._job.logs())
        return lines

    def update_data(self, data: Any) -> None:
        """Replace the job's data."""
        self._run(self._job.update_data(data))

    def refresh(self) -> Job:
        """Read the job again from the store."""
        self._run(self._job.refresh())
        return self

    def get_state(self) -> JobState | None:
        """The job's current state (None once removed)."""
        state: JobState | None = self._run(self._job.get_state())
        return state

    def remove(self) -> bool:
        """Remove the job."""
        removed: bool = self._run(self._job.remove())
        return removed

    def retry(self) -> bool:
        """Run a failed or completed job again."""
        moved: bool = self._run(self._job.retry())
        return moved

    def promote(self) -> bool:
        """Make a delayed job waiting now."""
        moved: bool = self._run(self._job.promote())
        return moved

    def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Block until the job completes (its return value) or fails (JobFailedError)."""
        return self._run(self._job.wait_until_finished(timeout))

    def children(self) -> list[Child]:
        """A flow parent's children with their outcomes."""
        children: list[Child] = self._run(self._job.children())
        return children

    def children_values(self) -> dict[str, Any]:
        """The return values of the completed children, keyed `"<queue>:<job id>"`."""
        values: dict[str, Any] = self._run(self._job.children_values())
        return values

    def get_parent(self) -> Job | None:
        """The flow parent waiting for this job."""
        parent = self._run(self._job.get_parent())
        return None if parent is None else Job(parent, self._run)


class Queue:
    """`corral.Queue` with blocking methods."""

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        clock: Clock | None = None,
        hash_tag: str | None = None,
    ) -> None:
        self._queue = async_queue.Queue(name, url=url, clock=clock, hash_tag=hash_tag)
        self._pid = os.getpid()
        self._runner: Runner = _LOOP.run

    @classmethod
    def _over(cls, queue: async_queue.Queue, run: Runner) -> Queue:
        """Blocking methods over an open async Queue on the loop that `run` drives."""
        wrapper = cls.__new__(cls)
        wrapper._queue, wrapper._pid, wrapper._runner = queue, os.getpid(), run
        return wrapper

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._queue.name

    @property
    def url(self) -> str:
        """The store URL."""
        return self._queue.url

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._pid != os.getpid():
            # The parent's connection and threads did not survive fork(): start afresh.
            self._pid = os.getpid()
            self._queue._backend = None
        result: T = self._runner(coro)
        return result

    def _job(self, job: async_job.Job) -> Job:
        return Job(job, self._runner)

    def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Add one job."""
        return self._job(self._run(self._queue.add(name, data, **options)))

    def add_bulk(self, specs: Iterable[JobSpec]) -> list[Job]:
        """Add many jobs in one transaction."""
        return [self._job(job) for job in self._run(self._queue.add_bulk(specs))]

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        job = self._run(self._queue.get_job(job_id))
        return None if job is None else self._job(job)

    def jobs(self, state: str, offset: int = 0, limit: int = 50) -> list[Job]:
        """Jobs in `state`."""
        return [self._job(job) for job in self._run(self._queue.jobs(state, offset, limit))]

    def counts(self) -> dict[str, int]:
        """The number of jobs in each state."""
        return self._run(self._queue.counts())

    def remove(self, job_id: str) -> bool:
        """Remove a job."""
        return self._run(self._queue.remove(job_id))

    def remove_tagged(self, tag: str) -> int:
        """Remove waiting and delayed jobs with `tag`."""
        return self._run(self._queue.remove_tagged(tag))

    def promote(self, job_id: str) -> bool:
        """Make a delayed job waiting now."""
        return self._run(self._queue.promote(job_id))

    def retry(self, job_id: str) -> bool:
        """Run a failed or completed job again."""
        return self._run(self._queue.retry(job_id))

    def retry_failed(self, limit: int | None = None) -> int:
        """Retry failed jobs."""
        return self._run(self._queue.retry_failed(limit))

    def pause(self) -> None:
        """Stop workers taking jobs."""
        self._run(self._queue.pause())

    def resume(self) -> None:
        """Let workers take jobs again."""
        self._run(self._queue.resume())

    def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return self._run(self._queue.is_paused())

    def clean(
        self, state: str, grace: float | timedelta | str = 0, limit: int = 1000
    ) -> list[str]:
        """Remove old jobs in `state`."""
        return self._run(self._queue.clean(state, grace, limit))

    def drain(self, delayed: bool = False) -> int:
        """Remove waiting (and delayed) jobs."""
        return self._run(self._queue.drain(delayed))

    def obliterate(self, force: bool = False) -> None:
        """Remove the queue and all its jobs."""
        self._run(self._queue.obliterate(force))

    def ping(self) -> bool:
        """True when the store answers."""
        return self._run(self._queue.ping())

    def configure(
        self,
        *,
        defaults: JobOptions | _Unset | None = UNSET,
        max_payload: int | _Unset = UNSET,
        events: str | _Unset = UNSET,
        limiter: RateLimit | _Unset | None = UNSET,
        group_limiter: RateLimit | _Unset | None = UNSET,
        group_concurrency: int | _Unset | None = UNSET,
        concurrency: int | _Unset | None = UNSET,
    ) -> QueueConfig:
        """Change settings of the whole queue."""
        return self._run(self._queue.configure(
            defaults=defaults, max_payload=max_payload, events=events, limiter=limiter,
            group_limiter=group_limiter, group_concurrency=group_concurrency,
            concurrency=concurrency,
        ))

    def config(self) -> QueueConfig:
        """The queue's stored settings."""
        return self._run(self._queue.config())

    def metrics(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[MinuteStats]:
        """Completed and failed counts and timings per minute."""
        return self._run(self._queue.metrics(since, until))

    def workers(self) -> list[WorkerInfo]:
        """The live workers of this queue."""
        return self._run(self._queue.workers())

    def schedule(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        every: float | timedelta | str | None = None,
        tz: str = "UTC",
        job_name: str | None = None,
        data: Any = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        **options: Any,
    ) -> Schedule:
        """Create or update a schedule."""
        return self._run(self._queue.schedule(
            schedule_id, cron=cron, every=every, tz=tz, job_name=job_name, data=data,
            start=start, end=end, limit=limit, **options,
        ))

    def unschedule(self, schedule_id: str) -> bool:
        """Remove a schedule."""
        return self._run(self._queue.unschedule(schedule_id))

    def schedules(self) -> list[Schedule]:
        """Every schedule of the queue."""
        return self._run(self._queue.schedules())

    def close(self) -> None:
        """Release the store connection."""
        self._run(self._queue.close())
