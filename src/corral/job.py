"""Job: one unit of work as stored, with the calls that act on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from corral import codec
from corral.backends.base import JobRecord
from corral.clock import monotonic, to_datetime
from corral.errors import InvalidOptionError, JobNotFoundError
from corral.job_state import JobState
from corral.options import JobOptions

if TYPE_CHECKING:
    from corral.queue import Queue

__all__ = ["Child", "Job", "JobRef", "JobState"]

FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})
MAX_LOG_LINES = 1000


class JobRef(NamedTuple):
    """Where a job lives: its queue's name and its id."""

    queue: str
    id: str


@dataclass(frozen=True, slots=True)
class Child:
    """A child of a flow's parent as the parent sees it (kept after the child is removed)."""

    queue: str
    id: str
    state: str
    """"pending", "completed", "failed" or "removed"."""
    return_value: Any = None
    failed_reason: str | None = None


class Job:
    """A job as it was read from the store; methods act on the stored job."""

    def __init__(self, record: JobRecord, queue: Queue) -> None:
        self._queue = queue
        self.duplicate = False
        """True when `add` found this id already stored and returned that job unchanged."""
        self._load(record)

    def _load(self, record: JobRecord) -> None:
        self.id: str = record.id
        self.name: str = record.name
        self.data: Any = codec.loads(record.data)
        self.state: JobState = record.state
        self.attempts_made: int = record.attempts_made
        self.stalled_count: int = record.stalled_count
        self.progress: Any = codec.loads(record.progress)
        self.return_value: Any = codec.loads(record.return_value)
        self.failed_reason: str | None = record.failed_reason
        self.stacktrace: str | None = record.stacktrace
        # Epoch ms, turned into datetimes when read: a worker's jobs seldom need them.
        self._times = (record.created_at, record.processed_at, record.finished_at, record.run_at)
        self.priority: int = record.priority
        self.tags: tuple[str, ...] = record.tags
        self.group: str | None = record.group
        parent = record.parent
        self.parent: JobRef | None = None if parent is None else JobRef(parent.queue, parent.id)
        self.pending_children: int = record.pending_children
        self._options_json = record.options
        self._options: JobOptions | None = None

    @property
    def created_at(self) -> datetime:
        """When the job was added."""
        return datetime.fromtimestamp(self._times[0] / 1000, UTC)

    @property
    def processed_at(self) -> datetime | None:
        """When its latest attempt started (None: never started)."""
        return to_datetime(self._times[1])

    @property
    def finished_at(self) -> datetime | None:
        """When it completed or failed for good (None: not finished)."""
        return to_datetime(self._times[2])

    @property
    def run_at(self) -> datetime | None:
        """When it is, or was, due (None: due when added)."""
        return to_datetime(self._times[3])

    @property
    def options(self) -> JobOptions:
        """The job's effective options (its own, the queue's defaults, the library's)."""
        if self._options is None:  # parsed on first use: most jobs never need it
            self._options = JobOptions.from_stored(self._options_json)
        return self._options

    @property
    def queue(self) -> Queue:
        """The Queue that read this job (a worker's job: one sharing the worker's store
        connection), for adding follow-up jobs from a processor."""
        return self._queue

    @property
    def queue_name(self) -> str:
        """The name of the queue that holds this job."""
        return self._queue.name

    def __repr__(self) -> str:
        return f"<Job {self.queue_name}/{self.id} {self.name!r} {self.state}>"

    def to_json(self) -> dict[str, Any]:
        """The job as JSON-ready values (the HTTP API's job shape)."""
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "id": self.id, "name": self.name, "queue": self.queue_name, "data": self.data,
            "state": str(self.state), "attempts_made": self.attempts_made,
            "stalled_count": self.stalled_count, "progress": self.progress,
            "return_value": self.return_value, "failed_reason": self.failed_reason,
            "stacktrace": self.stacktrace, "created_at": iso(self.created_at),
            "processed_at": iso(self.processed_at), "finished_at": iso(self.finished_at),
            "run_at": iso(self.run_at), "priority": self.priority, "tags": list(self.tags),
            "group": self.group, "options": self.options.to_json(),
            "parent": None if self.parent is None else self.parent._asdict(),
            "pending_children": self.pending_children,
        }

    async def update_progress(self, progress: Any) -> None:
        """Store the job's progress (a number or any JSON value)."""
        text = codec.dumps(progress, "progress")
        if not await self._queue._backend_call("update_progress", self.id, text):
            raise JobNotFoundError(f"job {self.id!r} is no longer stored")
        self.progress = codec.loads(text)
        if self._queue._on_progress is not None:
            await self._queue._on_progress(self, self.progress)

    async def log(self, text: str) -> int:
        """Append a line to the job's log; returns the number of lines kept."""
        if not isinstance(text, str):
            raise InvalidOptionError(f"a log line must be a string, not {text!r}")
        count: int = await self._queue._backend_call("add_log", self.id, text, MAX_LOG_LINES)
        if not count:
            raise JobNotFoundError(f"job {self.id!r} is no longer stored")
        return count

    async def logs(self) -> list[str]:
        """The job's log lines, oldest first."""
        lines: list[str] = await self._queue._backend_call("get_logs", self.id)
        return lines

    async def update_data(self, data: Any) -> None:
        """Replace the job's data (validated as on `add`)."""
        text = await self._queue._encode_data(data)
        if not await self._queue._backend_call("update_data", self.id, text):
            raise JobNotFoundError(f"job {self.id!r} is no longer stored")
        self.data = codec.loads(text)

    async def refresh(self) -> Job:
        """Read the job again from the store (JobNotFoundError when it is gone)."""
        record = await self._queue._backend_call("get_job", self.id)
        if record is None:
            raise JobNotFoundError(f"job {self.id!r} is no longer stored")
        self._load(record)
        return self

    async def get_state(self) -> JobState | None:
        """The job's current state in the store (None when it was removed)."""
        record = await self._queue._backend_call("get_job", self.id)
        if record is None:
            return None
        self._load(record)
        return self.state

    async def remove(self) -> bool:
        """Remove the job (JobLockedError while it is active)."""
        return await self._queue.remove(self.id)

    async def retry(self) -> bool:
        """Run a failed (or completed) job again with fresh attempts."""
        return await self._queue.retry(self.id)

    async def promote(self) -> bool:
        """Make a delayed job waiting now."""
        return await self._queue.promote(self.id)

    async def children(self) -> list[Child]:
        """A flow parent's children in the order they were added, with their outcomes."""
        records = await self._queue._backend_call("dependencies", self.id)
        if records is None:
            raise JobNotFoundError(f"job {self.id!r} is no longer stored")
        return [
            Child(r.queue, r.id, r.state, codec.loads(r.return_value), r.failed_reason)
            for r in records
        ]

    async def children_values(self) -> dict[str, Any]:
        """The return values of the completed children, keyed `"<queue>:<job id>"`."""
        return {
            f"{child.queue}:{child.id}": child.return_value
            for child in await self.children() if child.state == "completed"
        }

    async def get_parent(self) -> Job | None:
        """The flow parent waiting for this job (None: no parent, or it was removed)."""
        if self.parent is None:
            return None
        return await self._queue._flow_queue(self.parent.queue).get_job(self.parent.id)

    async def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Wait until the job completes (its return value) or fails (raises JobFailedError).

        Follows the queue's events, so it wakes as soon as the job finishes in any
        process. `timeout` is in real seconds: TimeoutError when it passes first.
        """
        from corral.errors import JobFailedError
        from corral.events import QueueEvents

        events = QueueEvents._sharing(self.queue_name, self._queue.url, self._queue.backend)
        await events.start()  # fix the position before looking at the job
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            state = await self.get_state()
            if state is None:
                raise JobNotFoundError(f"job {self.id!r} was removed before it finished")
            if state == JobState.COMPLETED:
                return self.return_value
            if state == JobState.FAILED:
                raise JobFailedError(self.id, self.failed_reason or "failed")
            left = None if deadline is None else deadline - monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {self.id!r} did not finish within {timeout} s")
            # Without events ("off") this still looks again every quarter second.
            wait_ms = 250 if left is None else max(1, min(250, int(left * 1000)))
            await events.read(block_ms=wait_ms)
