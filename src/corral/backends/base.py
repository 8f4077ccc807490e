"""The backend protocol: the atomic transitions every store implements.

A backend moves jobs between states and decides nothing: retry-or-fail,
backoff, validation and serialization happen in the backend-neutral core. Each
method here is one transaction (one `BEGIN IMMEDIATE` on SQLite, one Lua script
on Redis), so a crash at any instant leaves every job in exactly one state.

Times are epoch milliseconds. A transition takes `now_ms`: the virtual clock's
time when a test drives one, else None and the store's own clock decides; the
transitions that schedule work return the time they used.

Data, options, progress and return values cross this boundary as JSON text.

Flows: a parent waits in `waiting-children` and keeps one ChildRecord per child, written
with the flow (state "pending"). Every transition that ends a child updates its parent in
the same transaction, whatever queue the parent is in:
- completed: the record takes the return value, `pending_children` drops by one;
- failed for good (settle's Fail, or too many stalls): the record takes the reason; with
  `ignore_failure` the count drops by one, otherwise a parent still in `waiting-children`
  fails at once (reason `child <queue>:<id> failed: <reason>`, its retention, a `failed`
  event, counted as failed in metrics) and that failure goes on to its own parent;
- removed while pending (remove, remove_tagged, drain, clean): "removed", count drops;
- when the count reaches 0 a parent still in `waiting-children` becomes waiting (delayed
  when its run_at is still ahead) and workers of its queue are woken.
Retries of a child change nothing for the parent. A parent that is gone, or no longer in
`waiting-children` (removed, retried by hand), is left alone. Removing a parent removes
its child records, not its children.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from corral.job_state import JobState

__all__ = [
    "AddResult",
    "Backend",
    "ChildRecord",
    "Claimed",
    "Complete",
    "DedupeRule",
    "EventRecord",
    "Fail",
    "FlowJob",
    "JobRecord",
    "Limits",
    "LockKeeper",
    "MinuteMetrics",
    "NewJob",
    "Outcome",
    "ParentRef",
    "RecoverResult",
    "Release",
    "Retention",
    "RetryLater",
    "ScheduleRecord",
    "SettleResult",
    "StoredConfig",
    "WorkerRecord",
]


@dataclass(frozen=True, slots=True)
class Retention:
    """How many finished jobs of a state to keep: newest `count`, younger than `age_ms`."""

    count: int | None
    age_ms: int | None

    @property
    def keeps_all(self) -> bool:
        """True when nothing is ever trimmed."""
        return self.count is None and self.age_ms is None


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job ready to be written; `delay_ms` counts from the store's time."""

    id: str
    name: str
    data: str
    options: str
    priority: int
    lifo: bool
    delay_ms: int | None
    run_at_ms: int | None
    tags: tuple[str, ...]
    group: str | None
    keep_completed: Retention
    keep_failed: Retention
    dedupe: DedupeRule | None = None
    parent: ParentRef | None = None
    """Set on a flow's child: the job that waits for it."""
    children: int = 0
    """A flow's parent: how many direct children it waits for (it starts in
    `waiting-children`; when the last one is done it becomes waiting, or delayed until
    its run_at)."""


@dataclass(frozen=True, slots=True)
class ParentRef:
    """The parent of a flow's child, and what the child's final failure does to it."""

    queue: str
    id: str
    ignore_failure: bool = False
    """False: the child's final failure fails the parent (reason `child <queue>:<id>
    failed: <reason>`), and so on up a nested flow. True: the failure is recorded and
    the parent waits only for the other children."""


@dataclass(frozen=True, slots=True)
class FlowJob:
    """One job of a flow and the queue it goes into."""

    queue: str
    job: NewJob


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """One child of a flow's parent as the parent sees it."""

    queue: str
    id: str
    state: Literal["pending", "completed", "failed", "removed"]
    return_value: str | None = None
    """JSON text, for a completed child (kept after the child itself is removed)."""
    failed_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DedupeRule:
    """Ignore an add while the job last added with `key` is waiting, delayed or active, or
    (with `ttl_ms`) for that long after it was added; `replace` updates a waiting or
    delayed survivor with the new job's data and restarts its delay instead."""

    key: str
    ttl_ms: int | None
    replace: bool


@dataclass(frozen=True, slots=True)
class Limits:
    """The settings a store acts on itself: limits on claiming jobs (None: no limit), and
    which events its transitions record."""

    rate_limit: int | None = None
    """At most this many job starts ..."""
    rate_per_ms: int | None = None
    """... in any window of this many milliseconds (sliding), across all workers."""
    concurrency: int | None = None
    """At most this many active jobs of the queue, across all workers."""
    group_rate_limit: int | None = None
    group_rate_per_ms: int | None = None
    group_concurrency: int | None = None
    events: str = "final"
    """"all", "final" or "off": see DESIGN.md's Events paragraph."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """Everything stored about one job."""

    id: str
    name: str
    data: str
    options: str
    state: JobState
    priority: int
    attempts_made: int
    stalled_count: int
    progress: str | None
    return_value: str | None
    failed_reason: str | None
    stacktrace: str | None
    created_at: int
    processed_at: int | None
    finished_at: int | None
    run_at: int | None
    tags: tuple[str, ...]
    group: str | None
    lock_token: str | None = None
    parent: ParentRef | None = None
    pending_children: int = 0
    """A flow's parent: children not yet completed, failed or removed."""


@dataclass(frozen=True, slots=True)
class AddResult:
    """Per job: the stored record and whether this call created it."""

    records: list[tuple[JobRecord, bool]]
    now_ms: int
    stale_config: bool = False
    """True when the caller's config version was out of date: nothing was written."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job a worker now holds, with the token that every transition out of active needs."""

    record: JobRecord
    token: str


# -- outcomes: the transitions out of `active`, applied in batches by `settle` -------------


@dataclass(frozen=True, slots=True)
class Complete:
    """The attempt succeeded: to `completed` (or removed, by the job's retention)."""

    job_id: str
    token: str
    return_value: str


@dataclass(frozen=True, slots=True)
class Fail:
    """The attempt failed for good: to `failed` (or removed, by the job's retention)."""

    job_id: str
    token: str
    reason: str
    stacktrace: str | None


@dataclass(frozen=True, slots=True)
class RetryLater:
    """The attempt failed with attempts left: to `delayed` for `delay_ms` (0: `waiting`)."""

    job_id: str
    token: str
    reason: str
    stacktrace: str | None
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Release:
    """Hand the job back to `waiting` uncounted; `hold_ms` also holds the queue (RateLimited)."""

    job_id: str
    token: str
    hold_ms: int = 0


Outcome = Complete | Fail | RetryLater | Release


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A stored schedule: its spec (canonical JSON text) and where it stands."""

    id: str
    spec: str
    next_run: int | None
    """When the next tick is due (None: the schedule has ended)."""
    last_run: int | None
    count: int
    """Ticks fired so far."""
    version: int
    """Bumped by every change of the spec, so a tick computed from an old spec is refused."""


@dataclass(frozen=True, slots=True)
class SettleResult:
    """What `settle` did: outcomes refused for a stale token, and the jobs newly claimed."""

    refused: list[str]
    claimed: list[Claimed]
    now_ms: int
    next_due_ms: int | None = None
    """When the earliest delayed job falls due (None: no delayed job)."""
    hold_until_ms: int | None = None
    """When a hold on claiming ends: a `RateLimited` hold, or the moment the rate limit
    lets the next job start when it held every waiting job back (None: no hold)."""
    due_schedules: list[ScheduleRecord] = field(default_factory=list)
    """Schedules whose next tick is due (at most a few per call); `next_due_ms` also
    counts the next runs of schedules."""


@dataclass(frozen=True, slots=True)
class RecoverResult:
    """Jobs whose lock had lapsed: back to `waiting`, or `failed` after too many stalls."""

    recovered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """A queue's stored settings as JSON text (None: never configured) and their version."""

    config: str | None
    version: int


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A live worker as it registered itself; `info` is JSON text (host, pid, ...)."""

    id: str
    info: str
    started_at: int
    heartbeat_at: int


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a queue's capped event stream."""

    id: str
    """Ordered within the queue (a Redis stream id; a row number on SQLite)."""
    type: str
    job_id: str | None
    data: str | None
    """The event's payload as JSON text (a return value, a failure reason, progress...)."""
    timestamp: int


@dataclass(frozen=True, slots=True)
class MinuteMetrics:
    """What finished in one minute: counts, and processing and wait times in ms."""

    minute: int
    """The minute's start, epoch ms."""
    completed: int
    failed: int
    processing_ms_total: int
    processing_ms_max: int
    wait_ms_total: int
    wait_ms_max: int


ListableState = Literal["waiting", "delayed", "active", "completed", "failed", "waiting-children"]


class LockKeeper(Protocol):
    """A blocking handle for the lock-renewal thread, independent of any event loop."""

    def extend_locks(
        self, queue: str, tokens: Mapping[str, str], lock_ms: int, now_ms: int | None
    ) -> list[str]:
        """Extend the locks of jobs still held with these tokens; return the ids lost."""
        ...

    def close(self) -> None:
        """Release the handle's connection."""
        ...


class Backend(Protocol):
    """One store's implementation of the atomic transitions."""

    kind: str
    """`sqlite` or `redis`."""

    async def ping(self) -> bool:
        """True when the store answers; BackendUnavailableError otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...

    # -- producers ------------------------------------------------------------------------

    async def add(
        self, queue: str, jobs: Sequence[NewJob], config_version: int, now_ms: int | None
    ) -> AddResult:
        """Write all `jobs` in one transaction; an id still stored returns that job unchanged."""
        ...

    async def add_flow(
        self, jobs: Sequence[FlowJob], config_versions: Mapping[str, int], now_ms: int | None
    ) -> AddResult:
        """Write a flow in one transaction: `jobs[0]` is the root, every parent comes before
        its children, which may be in other queues (each queue's config version checked).
        A root id still stored returns that job alone, unchanged, and writes nothing; any
        other id still stored raises InvalidOptionError and writes nothing. Returns every
        record written, in the order given."""
        ...

    async def dependencies(self, queue: str, job_id: str) -> list[ChildRecord] | None:
        """A parent's children in the order they were added (None: no such job)."""
        ...

    def check_flow(self, queues: Sequence[str]) -> None:
        """Raise InvalidOptionError when one transaction cannot span these queues (Redis
        Cluster: queues in different slots); the first is the root's."""
        ...

    def use_hash_tag(self, queue: str, hash_tag: str | None) -> None:
        """Place `queue`'s keys by `hash_tag` (Redis; ignored by SQLite). Queues that share
        a hash tag share a cluster slot, so flows can span them on Redis Cluster."""
        ...

    async def get_config(self, queue: str) -> StoredConfig:
        """The queue's stored settings."""
        ...

    async def set_config(self, queue: str, config: str, limits: Limits) -> int:
        """Store the queue's settings (and the limits they set); return the new version."""
        ...

    # -- events and metrics ---------------------------------------------------------------

    async def last_event_id(self, queue: str) -> str:
        """The id of the newest event kept ("0" when there is none)."""
        ...

    async def read_events(
        self, queue: str, after_id: str, count: int, block_ms: int
    ) -> list[EventRecord]:
        """Up to `count` events with ids after `after_id` ("0": from the oldest kept),
        oldest first, waiting up to `block_ms` real ms for one when there is none yet."""
        ...

    async def metrics(self, queue: str, since_ms: int, until_ms: int) -> list[MinuteMetrics]:
        """Per-minute metrics of finished jobs, oldest first, for minutes starting within
        [since_ms, until_ms] (minutes with nothing finished are left out); kept 7+ days."""
        ...

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
        ...

    async def recover_stalled(
        self, queue: str, max_stalled_count: int, now_ms: int | None
    ) -> RecoverResult:
        """Hand back active jobs whose lock lapsed; fail those stalled too often."""
        ...

    def lock_keeper(self) -> LockKeeper:
        """A blocking handle for the thread that renews locks."""
        ...

    async def wait_for_change(self, queue: str, timeout: float) -> None:
        """Return soon after the queue may have new work, or after `timeout` real seconds."""
        ...

    # -- jobs -----------------------------------------------------------------------------

    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        """One job, or None."""
        ...

    async def list_jobs(
        self, queue: str, state: ListableState, offset: int, limit: int
    ) -> list[JobRecord]:
        """Jobs in one state, in the order a user expects (next to run, or newest first)."""
        ...

    async def counts(self, queue: str) -> dict[str, int]:
        """Number of jobs per state."""
        ...

    async def remove(self, queue: str, job_id: str) -> bool:
        """Remove a job in any state but active (JobLockedError); False when missing."""
        ...

    async def remove_tagged(self, queue: str, tag: str) -> int:
        """Remove waiting and delayed jobs carrying `tag`; return how many."""
        ...

    async def promote(self, queue: str, job_id: str, now_ms: int | None) -> bool:
        """Move a delayed job to waiting now; False when it is not delayed."""
        ...

    async def retry_job(self, queue: str, job_id: str, now_ms: int | None) -> bool:
        """Move a failed or completed job back to waiting with fresh attempts."""
        ...

    async def retry_failed(self, queue: str, limit: int | None, now_ms: int | None) -> int:
        """Move up to `limit` failed jobs (oldest first) back to waiting."""
        ...

    async def update_progress(self, queue: str, job_id: str, progress: str) -> bool:
        """Store a job's progress; False when the job is gone."""
        ...

    async def update_data(self, queue: str, job_id: str, data: str) -> bool:
        """Replace a job's data; False when the job is gone."""
        ...

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        """Append a log line (keeping the newest `keep`); return the count, 0 if job gone."""
        ...

    async def get_logs(self, queue: str, job_id: str) -> list[str]:
        """A job's log lines, oldest first."""
        ...

    # -- the queue ------------------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume taking jobs (adds still succeed)."""
        ...

    async def is_paused(self, queue: str) -> bool:
        """Whether the queue is paused."""
        ...

    async def clean(
        self, queue: str, state: ListableState, grace_ms: int, limit: int, now_ms: int | None
    ) -> list[str]:
        """Remove up to `limit` jobs in `state` older than `grace_ms`; return their ids."""
        ...

    async def drain(self, queue: str, delayed: bool) -> int:
        """Remove every waiting job (and delayed ones when asked); return how many."""
        ...

    async def obliterate(self, queue: str, force: bool) -> None:
        """Remove the queue and everything in it (JobLockedError if active jobs, unless force)."""
        ...

    async def queue_names(self) -> list[str]:
        """Every queue that has been used in this store."""
        ...

    async def time_ms(self) -> int:
        """The store's clock (Redis `TIME`; this machine's clock for SQLite)."""
        ...

    # -- workers --------------------------------------------------------------------------

    async def register_worker(
        self, queue: str, worker_id: str, info: str, ttl_ms: int, now_ms: int | None
    ) -> None:
        """Register a worker or renew its heartbeat; it counts as live for `ttl_ms`."""
        ...

    async def unregister_worker(self, queue: str, worker_id: str) -> None:
        """Forget a worker that stopped."""
        ...

    async def list_workers(self, queue: str, now_ms: int | None) -> list[WorkerRecord]:
        """The live workers of a queue (expired ones are dropped), by id."""
        ...

    # -- schedules ------------------------------------------------------------------------

    async def upsert_schedule(
        self, queue: str, schedule_id: str, spec: str, next_run_ms: int | None
    ) -> bool:
        """Store a schedule; an identical spec changes nothing (False). A changed spec
        replaces the planned tick with `next_run_ms` and bumps the version; count and
        last run are kept."""
        ...

    async def remove_schedule(self, queue: str, schedule_id: str) -> bool:
        """Remove a schedule and its planned tick; False when there was none."""
        ...

    async def list_schedules(self, queue: str) -> list[ScheduleRecord]:
        """Every schedule of the queue, by id."""
        ...

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
        """Compare-and-set: if the schedule is still at `version` with its next run at
        `due_ms`, add `job` (as `add` would) and advance the next run to `next_run_ms`,
        last run to `due_ms`, count + 1; else change nothing and return False."""
        ...
