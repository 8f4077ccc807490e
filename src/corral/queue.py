"""Queue: the producer and admin API (async)."""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

from corral import codec
from corral.backends import open_backend, redact, resolve_url
from corral.backends.base import (
    Backend,
    DedupeRule,
    FlowJob,
    JobRecord,
    Limits,
    ListableState,
    NewJob,
    ParentRef,
    Retention,
    ScheduleRecord,
)
from corral.clock import SYSTEM, Clock, monotonic, to_ms
from corral.errors import BackendUnavailableError, InvalidOptionError, PayloadTooLargeError
from corral.job import Job
from corral.job_state import JobState
from corral.monitoring import MinuteStats, WorkerInfo
from corral.options import (
    LIBRARY_DEFAULTS,
    UNSET,
    JobOptions,
    JobSpec,
    Keep,
    QueueConfig,
    RateLimit,
    _Unset,
    check_hash_tag,
    check_int,
    check_label,
    check_queue_name,
    parse_duration,
    stored_options,
)
from corral.schedules import Schedule, ScheduleSpec, tick_job_id

__all__ = ["Queue"]

log = logging.getLogger("corral")

FAIL_FAST_SECONDS: Final = 2.0
MAX_PAGE: Final = 1000
_STALE_CONFIG_RETRIES: Final = 5


def _retention(keep: Keep) -> Retention:
    age_ms = None if keep.age is None else int(keep.age * 1000)
    return Retention(keep.count, age_ms)


def _limits(config: QueueConfig) -> Limits:
    def per_ms(limit: RateLimit | None) -> int | None:
        return None if limit is None else math.ceil(limit.per * 1000)

    return Limits(
        rate_limit=None if config.limiter is None else config.limiter.limit,
        rate_per_ms=per_ms(config.limiter),
        concurrency=config.concurrency,
        group_rate_limit=None if config.group_limiter is None else config.group_limiter.limit,
        group_rate_per_ms=per_ms(config.group_limiter),
        group_concurrency=config.group_concurrency,
        events=config.events,
    )


_PER_JOB: Final = frozenset({"delay", "run_at", "job_id", "dedupe"})
"""Options that change nothing a job stores in its `options`."""


@dataclass(frozen=True, slots=True)
class _Stored:
    """What a job's effective options (timing, id and dedupe taken out) make it store."""

    options: str
    priority: int
    lifo: bool
    tags: tuple[str, ...]
    group: str | None
    keep_completed: Retention
    keep_failed: Retention
    timing: dict[str, Any]
    """The default delay, for jobs that give no timing of their own."""

    @classmethod
    def of(cls, effective: dict[str, Any], timing: dict[str, Any] | None = None) -> _Stored:
        """From effective options without delay and run_at (job_id and dedupe are left
        out here)."""
        kept = {name: value for name, value in effective.items() if name not in _PER_JOB}
        return cls(
            options=stored_options(kept),  # validated already
            priority=kept["priority"],
            lifo=kept["lifo"],
            tags=tuple(kept["tags"]),
            group=kept["group"],
            keep_completed=_retention(kept["remove_on_complete"]),
            keep_failed=_retention(kept["remove_on_fail"]),
            timing=timing or {},
        )


def _timing(effective: dict[str, Any]) -> dict[str, Any]:
    """Take delay and run_at out of effective options."""
    return {name: effective.pop(name) for name in ("delay", "run_at") if name in effective}


def check_state(state: object) -> JobState:
    """A job state name, or InvalidOptionError listing the valid ones."""
    try:
        if not isinstance(state, str):
            raise ValueError(state)
        return JobState(state)
    except ValueError:
        valid = ", ".join(s.value for s in JobState)
        raise InvalidOptionError(f"unknown job state {state!r}: one of {valid}") from None


class Queue:
    """A named queue in a store: add jobs, inspect and manage them.

    Construction validates the arguments and does no I/O; the store is opened on
    first use. Use `async with corral.Queue(...)` or call `close()`.
    """

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        clock: Clock | None = None,
        hash_tag: str | None = None,
    ) -> None:
        self.name: str = check_queue_name(name)
        self.url: str = resolve_url(url)
        self.clock: Clock = clock or SYSTEM
        self.hash_tag: str | None = check_hash_tag(hash_tag)
        """Redis: queues with the same hash tag share a cluster slot (flows across them)."""
        self._backend: Backend | None = None
        self._owns_backend = True
        self._config: QueueConfig | None = None
        self._config_version = 0
        self._defaults_cache: tuple[QueueConfig, _Stored] | None = None
        self._down_until = 0.0
        self._flow_queues: dict[str, Queue] = {}
        # Set by a Worker so that `job.update_progress` also fires its `progress` callbacks.
        self._on_progress: Callable[[Job, Any], Awaitable[None]] | None = None

    @classmethod
    def _sharing(
        cls, name: str, url: str, backend: Backend, clock: Clock, hash_tag: str | None = None
    ) -> Queue:
        """A Queue over another object's open backend (a worker's), which it will not close."""
        queue = cls(name, url=url, clock=clock, hash_tag=hash_tag)
        backend.use_hash_tag(name, queue.hash_tag)
        queue._backend = backend
        queue._owns_backend = False
        return queue

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} at {redact(self.url)}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the store connection (the Queue can be used again afterwards)."""
        backend, self._backend = self._backend, None
        if backend is not None and self._owns_backend:
            await backend.close()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The open store of this queue (opened on first use)."""
        if self._backend is None:
            self._backend = open_backend(self.url)
            self._backend.use_hash_tag(self.name, self.hash_tag)
            self._owns_backend = True
            log.info("corral queue %r uses %s", self.name, redact(self.url))
        return self._backend

    def _now(self) -> int | None:
        # A virtual clock decides the time; otherwise the store's clock does.
        return self.clock.now_ms() if self.clock.is_virtual else None

    async def _backend_call(self, method: str, *args: Any) -> Any:
        return await self._store_call(method, self.name, *args)

    async def _store_call(self, method: str, *args: Any) -> Any:
        """A backend call that fails fast for a while after the store failed."""
        if monotonic() < self._down_until:
            raise BackendUnavailableError(f"store {redact(self.url)} failed moments ago")
        try:
            return await getattr(self.backend, method)(*args)
        except BackendUnavailableError:
            self._down_until = monotonic() + FAIL_FAST_SECONDS
            raise

    async def _backend_call_plain(self, method: str) -> Any:
        """A backend call that is about the store, not this queue."""
        return await getattr(self.backend, method)()

    async def _current_config(self, refresh: bool = False) -> QueueConfig:
        if self._config is None or refresh:
            stored = await self._backend_call("get_config")
            self._config = QueueConfig.from_json(codec.loads(stored.config))
            self._config_version = stored.version
        return self._config

    async def _encode_data(self, data: Any) -> str:
        text = codec.dumps(data, "data")
        size = len(text.encode())
        limit = (await self._current_config()).max_payload
        if size > limit:
            raise PayloadTooLargeError(size, limit)
        return text

    def _job(self, record: JobRecord) -> Job:
        return Job(record, self)

    def _added(self, record: JobRecord, created: bool) -> Job:
        job = Job(record, self)
        job.duplicate = not created
        return job

    # -- producing -------------------------------------------------------------------------

    async def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Add one job (with `children=`: a flow); an id still stored returns that job."""
        for flow_only in ("queue", "on_failure"):
            if flow_only in options:
                raise InvalidOptionError(f"{flow_only}= is an option of a flow's children")
        spec = JobSpec(name, data, **options)
        if spec.children:
            return await self._add_flow(spec)
        return (await self._add_specs([spec]))[0]

    async def add_bulk(self, specs: Iterable[JobSpec]) -> list[Job]:
        """Add many jobs in one transaction, after validating every one (all or nothing)."""
        specs = list(specs)
        for index, spec in enumerate(specs):
            if not isinstance(spec, JobSpec):
                raise InvalidOptionError(f"add_bulk item {index} is not a corral.JobSpec")
            if spec.children or spec.queue not in (None, self.name):
                raise InvalidOptionError(
                    f"add_bulk item {index} belongs to a flow: add flows with queue.add(...,"
                    " children=[...])"
                )
        if not specs:
            return []
        return await self._add_specs(specs)

    async def _add_specs(self, specs: Sequence[JobSpec]) -> list[Job]:
        texts = [codec.dumps(spec.data, "data") for spec in specs]  # bad data: refused before I/O
        for _ in range(_STALE_CONFIG_RETRIES):
            config = await self._current_config()
            jobs = [
                self._new_job(spec, text, config)
                for spec, text in zip(specs, texts, strict=True)
            ]
            result = await self._backend_call("add", jobs, self._config_version, self._now())
            if not result.stale_config:
                return [self._added(record, created) for record, created in result.records]
            await self._current_config(refresh=True)
        raise BackendUnavailableError("the queue's settings kept changing during add; try again")

    async def _add_flow(self, root: JobSpec) -> Job:
        if root.queue not in (None, self.name):
            raise InvalidOptionError(f"the flow's root goes into this queue, not {root.queue!r}")
        nodes = _flow_nodes(self.name, root, self.clock.now_ms())
        queues = {node.queue: self._flow_queue(node.queue) for node in nodes}
        self.backend.check_flow(list(queues))
        for _ in range(_STALE_CONFIG_RETRIES):
            configs = {name: await queue._current_config() for name, queue in queues.items()}
            jobs = [
                FlowJob(node.queue, queues[node.queue]._new_job(
                    node.spec, node.data, configs[node.queue], job_id=node.id,
                    parent=node.parent, children=len(node.spec.children),
                ))
                for node in nodes
            ]
            versions = {name: queue._config_version for name, queue in queues.items()}
            result = await self._store_call("add_flow", jobs, versions, self._now())
            if not result.stale_config:
                record, created = result.records[0]
                return self._added(record, created)
            for queue in queues.values():
                await queue._current_config(refresh=True)
        raise BackendUnavailableError("the queues' settings kept changing during add; try again")

    def _flow_queue(self, name: str) -> Queue:
        """This queue, or another queue of a flow on the same store and with its hash tag."""
        if name == self.name:
            return self
        if name not in self._flow_queues:
            self._flow_queues[name] = Queue._sharing(
                name, self.url, self.backend, self.clock, self.hash_tag
            )
        return self._flow_queues[name]

    def _new_job(
        self,
        spec: JobSpec,
        data: str,
        config: QueueConfig,
        *,
        job_id: str | None = None,
        parent: ParentRef | None = None,
        children: int = 0,
    ) -> NewJob:
        own = spec.options.given()
        size = len(data) if data.isascii() else len(data.encode())
        if size > config.max_payload:
            raise PayloadTooLargeError(size, config.max_payload)
        if own.keys() <= _PER_JOB:
            # Most jobs set no option of their own but these: what they store comes from
            # the queue's defaults alone, worked out once per config.
            stored = self._stored_defaults(config)
            timing = own if "delay" in own or "run_at" in own else stored.timing
        else:
            effective = {**LIBRARY_DEFAULTS, **spec.options.merged_over(config.defaults).given()}
            timing = _timing(effective)
            stored = _Stored.of(effective)
        delay, run_at, dedupe = timing.get("delay"), timing.get("run_at"), own.get("dedupe")
        return NewJob(
            id=own.get("job_id") or job_id or new_job_id(self.clock.now_ms()),
            name=spec.name,
            data=data,
            options=stored.options,
            priority=stored.priority,
            lifo=stored.lifo,
            delay_ms=None if delay is None else int(delay * 1000),
            run_at_ms=None if run_at is None else to_ms(run_at),
            tags=stored.tags,
            group=stored.group,
            keep_completed=stored.keep_completed,
            keep_failed=stored.keep_failed,
            dedupe=None if dedupe is None else DedupeRule(
                dedupe.key, None if dedupe.ttl is None else math.ceil(dedupe.ttl * 1000),
                dedupe.replace,
            ),
            parent=parent,
            children=children,
        )

    def _stored_defaults(self, config: QueueConfig) -> _Stored:
        """What a job that sets only per-job options stores under `config` (cached for the
        config last used: a new config is a new object)."""
        cached = self._defaults_cache
        if cached is None or cached[0] is not config:
            effective = {**LIBRARY_DEFAULTS, **config.defaults.given()}
            timing = _timing(effective)
            cached = self._defaults_cache = (config, _Stored.of(effective, timing))
        return cached[1]

    # -- reading ---------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        record = await self._backend_call("get_job", check_label(job_id, "job_id"))
        return None if record is None else self._job(record)

    async def jobs(self, state: str, offset: int = 0, limit: int = 50) -> list[Job]:
        """Jobs in `state`, next to run first (finished ones: newest first)."""
        checked = check_state(state)
        check_int(offset, "offset", minimum=0)
        if check_int(limit, "limit", minimum=1) > MAX_PAGE:
            raise InvalidOptionError(f"limit must be at most {MAX_PAGE}")
        records = await self._backend_call("list_jobs", checked.value, offset, limit)
        return [self._job(record) for record in records]

    async def counts(self) -> dict[str, int]:
        """The number of jobs in each state."""
        counts: dict[str, int] = await self._backend_call("counts")
        return counts

    # -- changing jobs ---------------------------------------------------------------------

    async def remove(self, job_id: str) -> bool:
        """Remove a job; False when there is none; JobLockedError when it is active."""
        removed: bool = await self._backend_call("remove", check_label(job_id, "job_id"))
        return removed

    async def remove_tagged(self, tag: str) -> int:
        """Remove the waiting and delayed jobs with `tag`; returns how many."""
        count: int = await self._backend_call("remove_tagged", check_label(tag, "tag"))
        return count

    async def promote(self, job_id: str) -> bool:
        """Make a delayed job waiting now; False when it is not delayed."""
        moved: bool = await self._backend_call(
            "promote", check_label(job_id, "job_id"), self._now()
        )
        return moved

    async def retry(self, job_id: str) -> bool:
        """Run a failed or completed job again with fresh attempts; False otherwise."""
        moved: bool = await self._backend_call(
            "retry_job", check_label(job_id, "job_id"), self._now()
        )
        return moved

    async def retry_failed(self, limit: int | None = None) -> int:
        """Retry up to `limit` failed jobs (all when None), oldest first; returns how many."""
        if limit is not None:
            check_int(limit, "limit", minimum=1)
        count: int = await self._backend_call("retry_failed", limit, self._now())
        return count

    # -- the queue itself ------------------------------------------------------------------

    async def pause(self) -> None:
        """Stop workers taking jobs from this queue (adds still succeed)."""
        await self._backend_call("set_paused", True)

    async def resume(self) -> None:
        """Let workers take jobs again."""
        await self._backend_call("set_paused", False)

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        paused: bool = await self._backend_call("is_paused")
        return paused

    async def clean(
        self, state: str, grace: float | timedelta | str = 0, limit: int = 1000
    ) -> list[str]:
        """Remove up to `limit` jobs in `state` older than `grace`; returns their ids."""
        checked = check_state(state)
        if checked == JobState.ACTIVE:
            raise InvalidOptionError("active jobs cannot be cleaned; close their workers first")
        grace_ms = int(parse_duration(grace, "grace") * 1000)
        check_int(limit, "limit", minimum=1)
        target: ListableState = checked.value  # type: ignore[assignment]
        ids: list[str] = await self._backend_call("clean", target, grace_ms, limit, self._now())
        return ids

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting job, and delayed ones too when `delayed`; returns how many."""
        count: int = await self._backend_call("drain", bool(delayed))
        return count

    async def obliterate(self, force: bool = False) -> None:
        """Remove the queue and all its jobs (JobLockedError with active jobs unless `force`)."""
        await self._backend_call("obliterate", bool(force))
        self._config = None
        self._config_version = 0

    async def ping(self) -> bool:
        """True when the store answers; BackendUnavailableError otherwise."""
        return await self.backend.ping()

    async def configure(
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
        """Change settings of the whole queue (partial update); returns the new settings."""
        given = {
            "defaults": defaults, "max_payload": max_payload, "events": events,
            "limiter": limiter, "group_limiter": group_limiter,
            "group_concurrency": group_concurrency, "concurrency": concurrency,
        }
        changes = {name: value for name, value in given.items() if value is not UNSET}
        current = await self._current_config(refresh=True)
        updated = current.updated(changes)
        version = await self._backend_call(
            "set_config", codec.dumps(updated.to_json(), "config"), _limits(updated)
        )
        self._config, self._config_version = updated, version
        return updated

    async def config(self) -> QueueConfig:
        """The queue's stored settings."""
        return await self._current_config(refresh=True)

    async def metrics(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[MinuteStats]:
        """Completed and failed counts and timings per minute (default: the last hour)."""
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and (
                not isinstance(moment, datetime) or moment.utcoffset() is None
            ):
                raise InvalidOptionError(f"{name} must be an aware datetime, not {moment!r}")
        until_ms = to_ms(until) if until is not None else (self._now() or self.clock.now_ms())
        since_ms = to_ms(since) if since is not None else until_ms - 3_600_000
        if since_ms > until_ms:
            raise InvalidOptionError("since must not be later than until")
        records = await self._backend_call("metrics", since_ms, until_ms)
        return [MinuteStats.from_record(record) for record in records]

    async def workers(self) -> list[WorkerInfo]:
        """The live workers of this queue (those whose heartbeat has not expired)."""
        records = await self._backend_call("list_workers", self._now())
        return [WorkerInfo.from_record(record) for record in records]

    # -- schedules -------------------------------------------------------------------------

    async def schedule(
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
        """Create or update a schedule: one job per tick, however many processes run."""
        spec = ScheduleSpec.parse(
            schedule_id, cron=cron, every=every, tz=tz, job_name=job_name, data=data,
            start=start, end=end, limit=limit, options=options,
        )
        await self._encode_data(data)  # the ticks' payload must fit the queue's limit
        now = self._now()
        if now is None:
            now = await self._backend_call_plain("time_ms")
        await self._backend_call("upsert_schedule", schedule_id, spec.to_text(),
                                 spec.first_run(now))
        stored = await self._find_schedule(schedule_id)
        assert stored is not None
        return stored

    async def unschedule(self, schedule_id: str) -> bool:
        """Remove a schedule and its planned tick; False when there was none."""
        removed: bool = await self._backend_call(
            "remove_schedule", check_label(schedule_id, "schedule id")
        )
        return removed

    async def schedules(self) -> list[Schedule]:
        """Every schedule of the queue with its next and last run."""
        records = await self._backend_call("list_schedules")
        return [Schedule.from_record(record) for record in records]

    async def _find_schedule(self, schedule_id: str) -> Schedule | None:
        return next((s for s in await self.schedules() if s.id == schedule_id), None)

    async def _tick_job(self, record: ScheduleRecord) -> NewJob:
        """The job that the due tick of a stored schedule adds."""
        assert record.next_run is not None
        spec = ScheduleSpec.from_text(record.spec)
        job_spec = JobSpec(
            spec.job_name, spec.data, **spec.options.given(),
            job_id=tick_job_id(record.id, record.next_run),
        )
        config = await self._current_config()
        return self._new_job(job_spec, codec.dumps(spec.data, "data"), config)


@dataclass(frozen=True, slots=True)
class _FlowNode:
    queue: str
    spec: JobSpec
    data: str
    id: str
    parent: ParentRef | None


def new_job_id(now_ms: int) -> str:
    """A fresh job id: 32 hex digits, the time in ms then 80 random bits. Ids then sort by
    when they were made, so the SQLite store appends each new one to its index instead of
    writing a random page of it per job (which made bulk adds 2.5x dearer at a million)."""
    return f"{now_ms:012x}{secrets.token_hex(10)}"


def _flow_nodes(queue: str, root: JobSpec, now_ms: int) -> list[_FlowNode]:
    """A flow's jobs, each parent before its children, validated before any I/O."""
    nodes: list[_FlowNode] = []
    seen: set[tuple[str, str]] = set()

    def visit(spec: JobSpec, queue: str, parent: ParentRef | None, path: str) -> None:
        given = spec.options.given()
        if given.get("dedupe") is not None:
            raise InvalidOptionError(f"{path}: dedupe does not apply to a flow's jobs")
        job_id = given.get("job_id") or new_job_id(now_ms)
        if (queue, job_id) in seen:
            raise InvalidOptionError(f"{path}: job id {job_id!r} appears twice in {queue!r}")
        seen.add((queue, job_id))
        nodes.append(_FlowNode(queue, spec, codec.dumps(spec.data, f"{path}.data"), job_id,
                               parent))
        for index, child in enumerate(spec.children):
            visit(child, child.queue or queue,
                  ParentRef(queue, job_id, child.on_failure == "ignore"),
                  f"{path}.children[{index}]")

    visit(root, queue, None, "flow")
    return nodes
