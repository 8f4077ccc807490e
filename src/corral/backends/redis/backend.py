"""`RedisBackend`: the store for workers on many machines, one Lua script per transition.

Clients are made on first use, per process and event loop (a forked child or another
loop gets its own), with the eviction-policy check before the first command.

Every key comes from `RedisBackend.keys(queue)`, which places a queue by the hash tag it
was given (`use_hash_tag`, or as recorded in the registry when `queue_names` read it).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from redis.crc import key_slot

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
from corral.backends.redis import events as event_reads
from corral.backends.redis import records
from corral.backends.redis.connection import (
    AsyncClient,
    Settings,
    SyncClient,
    check_eviction_policy,
)
from corral.backends.redis.keys import (
    HASH_TAGS,
    REGISTRY,
    check_hash_tag,
    queue_keys,
    queue_prefix,
)
from corral.backends.redis.scripts import AsyncScripts, SyncScripts
from corral.backends.redis.wake import MarkerWatch
from corral.backends.sqlite.settle import STALLED_REASON
from corral.errors import BackendUnavailableError, InvalidOptionError, JobLockedError
from corral.job_state import JobState

LISTABLE: Final = frozenset(state.value for state in JobState)
CLEANABLE: Final = LISTABLE - {JobState.ACTIVE.value}

_LIVE: weakref.WeakSet[_Session] = weakref.WeakSet()
_INHERITED: list[_Session] = []
"""Sessions a forked child inherited from its parent. The child keeps them and never
closes them: closing (which asyncio's stream writers also do when collected) would
unregister the parent's sockets from the epoll instance both processes share."""


def _keep_inherited() -> None:
    _INHERITED.extend(_LIVE)
    _LIVE.clear()


os.register_at_fork(after_in_child=_keep_inherited)

_NONCES: Final = random.Random()
"""Lock tokens' randomness (Lua's random numbers are deterministic): unique, not secret
(tokens tell claims apart), so seeded from the OS and again in a forked child, which
would otherwise repeat its parent's sequence; cheaper than `secrets` on every settle."""
os.register_at_fork(after_in_child=_NONCES.seed)


def _now(now_ms: int | None) -> str | int:
    """A script's `now_ms` argument: empty lets the script read the server's TIME."""
    return "" if now_ms is None else now_ms


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(eq=False)
class _Session:
    """The clients of one event loop in one process."""

    pid: int
    loop: asyncio.AbstractEventLoop
    client: AsyncClient
    blocking: AsyncClient
    scripts: AsyncScripts
    watches: dict[str, MarkerWatch] = field(default_factory=dict)
    checked: bool = False
    check_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def open(cls, settings: Settings, loop: asyncio.AbstractEventLoop) -> _Session:
        client = settings.async_client()
        session = cls(os.getpid(), loop, client, settings.async_client(blocking=True),
                      AsyncScripts(client))
        _LIVE.add(session)
        return session

    def current(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self.pid == os.getpid() and self.loop is loop

    def watch(self, marker: str) -> MarkerWatch:
        """The blocking pop of one queue's marker key."""
        watch = self.watches.get(marker)
        if watch is None:

            async def hand_back() -> None:
                await self.client.zadd(marker, {"1": 0})

            watch = self.watches[marker] = MarkerWatch(self.blocking, marker, hand_back)
        return watch

    async def close(self) -> None:
        for watch in self.watches.values():
            await watch.close()
        await self.scripts.close()
        await self.blocking.aclose()
        await self.client.aclose()


def _retire(session: _Session) -> None:
    """Let go of a session made for another event loop (or inherited: see _INHERITED)."""
    if session.pid == os.getpid() and session.loop.is_running():
        # Closed on its own loop, which still runs in another thread.
        asyncio.run_coroutine_threadsafe(session.close(), session.loop)
    # Otherwise its loop is closed (and its sockets with it), or it belongs to the parent.


class RedisLockKeeper:
    """Renews locks from the worker's lock thread, on a blocking client of its own."""

    def __init__(self, settings: Settings, keys: Callable[[str], dict[str, str]]) -> None:
        self._settings = settings
        self._keys = keys
        self._lock = threading.Lock()
        self._client: SyncClient | None = None
        self._scripts: SyncScripts | None = None
        self._pid = os.getpid()

    def extend_locks(
        self, queue: str, tokens: Mapping[str, str], lock_ms: int, now_ms: int | None
    ) -> list[str]:
        """Extend the locks of jobs still held with these tokens; return the ids lost."""
        if not tokens:
            return []
        held = orjson.dumps(list(tokens.items()))
        with self._lock, self._settings.translate():
            if self._scripts is None or self._pid != os.getpid():
                self._client, self._pid = self._settings.sync_client(), os.getpid()
                self._scripts = SyncScripts(self._client)
            reply = self._scripts.run(
                "extend_locks", self._keys(queue), _now(now_ms), lock_ms, held
            )
        return records.ids(orjson.loads(reply))

    def close(self) -> None:
        """Close the connection (a later call opens another)."""
        with self._lock:
            client, self._client, self._scripts = self._client, None, None
        if client is not None and self._pid == os.getpid():
            client.close()


class RedisBackend:
    """The Redis store: every transition one Lua script on the queue's cluster slot."""

    kind = "redis"

    def __init__(self, url: str, params: Mapping[str, str] | None = None) -> None:
        self.settings = Settings.parse(url, params or {})
        self._session: _Session | None = None
        self._registered: set[str] = set()
        self._tags: dict[str, str] = {}
        self._closed = False

    # -- where queues live ----------------------------------------------------------------

    def keys(self, queue: str) -> dict[str, str]:
        """Each part's key for `queue`, placed by its hash tag: every key lookup goes
        through here."""
        return queue_keys(queue, self._tags.get(queue))

    def prefix(self, queue: str) -> str:
        """What every key of `queue` starts with."""
        return queue_prefix(queue, self._tags.get(queue))

    def use_hash_tag(self, queue: str, hash_tag: str | None) -> None:
        """Place `queue`'s keys at `corral:{<hash_tag>}:<queue>:<part>`; queues sharing a
        tag share a cluster slot. None changes nothing: a queue nobody gave a tag lives at
        `corral:{<queue>}:<part>`, unless `queue_names` found a tag recorded for it (so a
        dashboard or the CLI, which list the queues first, read a tagged queue's keys)."""
        if hash_tag is None:
            return
        if self._tags.get(queue) != check_hash_tag(hash_tag):
            self._tags[queue] = hash_tag
            self._registered.discard(queue)  # record the tag with the next write

    def check_flow(self, queues: Sequence[str]) -> None:
        """On Redis Cluster, refuse queues whose keys are in other slots than the first's."""
        if not self.settings.cluster or not queues:
            return
        root = queues[0]
        slot = key_slot(self.keys(root)["meta"].encode())
        apart = [q for q in queues if key_slot(self.keys(q)["meta"].encode()) != slot]
        if apart:
            names = ", ".join(repr(q) for q in dict.fromkeys([root, *apart]))
            raise InvalidOptionError(
                f"a flow cannot span queues {names} on Redis Cluster: their keys are in "
                f"different cluster slots. Give those queues the same hash_tag= (on every "
                f"Queue and Worker of them), e.g. hash_tag={root!r}"
            )

    async def _ready(self) -> _Session:
        """This loop's session, checked against the server's eviction policy."""
        if self._closed:
            raise BackendUnavailableError(f"Redis store {self.settings.display}: closed")
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or not session.current(loop):
            if session is not None:
                _retire(session)
            session = self._session = _Session.open(self.settings, loop)
        if not session.checked:
            async with session.check_lock:
                if not session.checked:
                    await check_eviction_policy(session.client, self.settings)
                    session.checked = True
        return session

    async def _run(self, name: str, queue: str, *args: str | int | bytes) -> Any:
        with self.settings.translate():
            session = await self._ready()
            return await session.scripts.run(name, self.keys(queue), *args)

    async def _register(self, queue: str) -> None:
        # The registry lives in another slot than the queue, so no script can write it.
        if queue not in self._registered:
            tag = self._tags.get(queue)
            with self.settings.translate():
                client = (await self._ready()).client
                await client.sadd(REGISTRY, queue)
                if tag is not None:
                    await client.hset(HASH_TAGS, queue, tag)
            self._registered.add(queue)

    async def ping(self) -> bool:
        """True when Redis answers."""
        with self.settings.translate():
            return bool(await (await self._ready()).client.ping())

    async def close(self) -> None:
        """Close the connections (the backend refuses calls afterwards)."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            if session.current(asyncio.get_running_loop()):
                await session.close()
            else:
                _retire(session)

    # -- producers ------------------------------------------------------------------------

    async def add(
        self, queue: str, jobs: Sequence[NewJob], config_version: int, now_ms: int | None
    ) -> AddResult:
        """Write all jobs in one script call; an id still stored returns that job unchanged,
        then a job's dedupe rule may return (or, with replace, update) its key's survivor."""
        reply = await self._run(
            "add", queue, config_version, _now(now_ms), records.encode_jobs(jobs)
        )
        summary = orjson.loads(reply[0])
        now = int(summary["now"])
        if summary.get("stale"):
            return AddResult([], now, stale_config=True)
        await self._register(queue)
        return AddResult(records.added(jobs, reply, now), now)

    async def add_flow(
        self, jobs: Sequence[FlowJob], config_versions: Mapping[str, int], now_ms: int | None
    ) -> AddResult:
        """Write a flow in one script call over every queue it spans: a root id still
        stored returns that job alone; any other id still stored raises InvalidOptionError;
        either way, or with a stale config, nothing is written."""
        _check_flow_shape(jobs)
        queues = list(dict.fromkeys(flow_job.queue for flow_job in jobs))
        self.check_flow(queues)
        missing = [queue for queue in queues if queue not in config_versions]
        if missing:
            raise InvalidOptionError(f"add_flow: no config version given for {missing}")
        versions = orjson.dumps([config_versions[queue] for queue in queues])
        encoded = records.encode_flow(jobs, queues, self.prefix)
        with self.settings.translate():
            session = await self._ready()
            reply = await session.scripts.run_over(
                "add_flow", [self.keys(queue) for queue in queues], _now(now_ms), versions,
                encoded,
            )
        summary = orjson.loads(reply[0])
        now = int(summary["now"])
        if summary.get("stale"):
            return AddResult([], now, stale_config=True)
        taken = summary.get("taken")
        if taken:
            queue, job_id = taken
            raise InvalidOptionError(
                f"job id {job_id!r} is already stored in queue {queue!r}: a flow's jobs "
                "other than its root must be new (nothing was added)"
            )
        for queue in queues:
            await self._register(queue)
        stored = [
            (records.to_record(reply[i + 1], reply[i + 2], reply[i + 3]), bool(reply[i]))
            for i in range(1, len(reply), 4)
        ]
        return AddResult(stored, now)

    async def dependencies(self, queue: str, job_id: str) -> list[ChildRecord] | None:
        """A parent's children in the order they were added (None: no such job)."""
        reply = await self._run("dependencies", queue, job_id)
        if not reply:
            return None
        return [records.child(raw) for raw in reply[1:]]

    async def get_config(self, queue: str) -> StoredConfig:
        """The queue's stored settings."""
        with self.settings.translate():
            session = await self._ready()
            config, version = await session.scripts.command(
                "HMGET", self.keys(queue)["meta"], "config", "config_version"
            )
        return StoredConfig(None if config is None else records.text(config), int(version or 0))

    async def set_config(self, queue: str, config: str, limits: Limits) -> int:
        """Store the queue's settings and the limits they set; return the new version.

        Workers read the limits in every claim, so the new ones hold from the next one.
        """
        version = int(
            await self._run("set_config", queue, config, *records.encode_limits(limits))
        )
        await self._register(queue)
        return version

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
        """Apply outcomes (checking tokens), promote due jobs, claim up to `claim`: one call."""
        reply = await self._run(
            "settle", queue, _now(now_ms), records.encode_outcomes(outcomes), claim, lock_ms,
            worker_id, f"{_NONCES.getrandbits(64):016x}",
        )
        summary = orjson.loads(reply[0])
        return SettleResult(
            refused=records.ids(summary.get("refused")),
            claimed=records.claimed(reply),
            now_ms=int(summary["now"]),
            next_due_ms=_opt_int(summary.get("next_due")),
            hold_until_ms=_opt_int(summary.get("hold")),
            due_schedules=[records.schedule(*due) for due in records.ids(summary["schedules"])],
        )

    async def recover_stalled(
        self, queue: str, max_stalled_count: int, now_ms: int | None
    ) -> RecoverResult:
        """Hand back active jobs whose lock lapsed; fail those stalled too often."""
        reply = await self._run(
            "recover_stalled", queue, _now(now_ms), max_stalled_count, STALLED_REASON
        )
        result = orjson.loads(reply)
        return RecoverResult(records.ids(result["recovered"]), records.ids(result["failed"]))

    def lock_keeper(self) -> RedisLockKeeper:
        """A blocking handle, with its own connection, for the thread that renews locks."""
        return RedisLockKeeper(self.settings, self.keys)

    async def wait_for_change(self, queue: str, timeout: float) -> None:
        """Block in Redis until work may have arrived, or for `timeout` real seconds."""
        with self.settings.translate():
            await (await self._ready()).watch(self.keys(queue)["marker"]).wait(timeout)

    # -- jobs -----------------------------------------------------------------------------

    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        """One job, or None."""
        reply = await self._run("get_job", queue, job_id)
        return records.to_record(job_id, reply[0], reply[1]) if reply else None

    async def list_jobs(
        self, queue: str, state: ListableState, offset: int, limit: int
    ) -> list[JobRecord]:
        """Jobs in one state: next to run first, or newest finished first."""
        if state not in LISTABLE:
            raise InvalidOptionError(
                f"unknown job state {state!r}: use one of {', '.join(sorted(LISTABLE))}"
            )
        reply = await self._run("list_jobs", queue, state, max(0, offset), limit)
        return records.triples(reply)

    async def counts(self, queue: str) -> dict[str, int]:
        """Number of jobs in each state, zeros included."""
        reply = await self._run("counts", queue)
        return {state.value: int(count) for state, count in zip(JobState, reply, strict=True)}

    async def remove(self, queue: str, job_id: str) -> bool:
        """Remove a job in any state but active (JobLockedError); False when missing."""
        removed = int(await self._run("remove", queue, job_id))
        if removed < 0:
            raise JobLockedError(f"job {job_id!r} is active: a worker holds it")
        return removed > 0

    async def remove_tagged(self, queue: str, tag: str) -> int:
        """Remove waiting and delayed jobs carrying `tag`; return how many."""
        return int(await self._run("remove_tagged", queue, tag))

    async def promote(self, queue: str, job_id: str, now_ms: int | None) -> bool:
        """Move a delayed job to waiting now; False when it is not delayed."""
        return bool(await self._run("promote", queue, _now(now_ms), job_id))

    async def retry_job(self, queue: str, job_id: str, now_ms: int | None) -> bool:
        """Move a failed or completed job back to waiting with fresh attempts."""
        return bool(await self._run("retry_job", queue, _now(now_ms), job_id))

    async def retry_failed(self, queue: str, limit: int | None, now_ms: int | None) -> int:
        """Move up to `limit` failed jobs (oldest first) back to waiting."""
        bound: str | int = "" if limit is None else max(0, limit)
        return int(await self._run("retry_failed", queue, _now(now_ms), bound))

    async def update_progress(self, queue: str, job_id: str, progress: str) -> bool:
        """Store a job's progress; False when the job is gone."""
        return bool(await self._run("update_progress", queue, job_id, progress))

    async def update_data(self, queue: str, job_id: str, data: str) -> bool:
        """Replace a job's data; False when the job is gone."""
        return bool(await self._run("update_data", queue, job_id, data))

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        """Append a log line (keeping the newest `keep`); return the count, 0 if job gone."""
        return int(await self._run("add_log", queue, job_id, line, keep))

    async def get_logs(self, queue: str, job_id: str) -> list[str]:
        """A job's log lines, oldest first."""
        with self.settings.translate():
            raw = await (await self._ready()).client.hget(self.keys(queue)["logs"], job_id)
        return [] if raw is None else records.ids(orjson.loads(raw))

    # -- the queue ------------------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume taking jobs (adds still succeed)."""
        await self._run("set_paused", queue, "1" if paused else "0")
        await self._register(queue)

    async def is_paused(self, queue: str) -> bool:
        """Whether the queue is paused."""
        with self.settings.translate():
            flag = await (await self._ready()).client.hget(self.keys(queue)["meta"], "paused")
        return flag == b"1"

    async def clean(
        self, queue: str, state: ListableState, grace_ms: int, limit: int, now_ms: int | None
    ) -> list[str]:
        """Remove up to `limit` (all when <= 0) jobs in `state` older than `grace_ms`."""
        if state not in CLEANABLE:
            raise InvalidOptionError(f"cannot clean {state!r} jobs: workers hold them")
        reply = await self._run("clean", queue, _now(now_ms), state, grace_ms, limit)
        return records.ids(orjson.loads(reply))

    async def drain(self, queue: str, delayed: bool) -> int:
        """Remove every waiting job, and the delayed ones when asked; return how many."""
        return int(await self._run("drain", queue, "1" if delayed else "0"))

    async def obliterate(self, queue: str, force: bool) -> None:
        """Remove the queue and everything in it (JobLockedError if active, unless force)."""
        active = int(await self._run("obliterate", queue, "1" if force else "0"))
        if active:
            raise JobLockedError(
                f"queue {queue!r} has {active} active job(s): use force=True to obliterate it"
            )
        with self.settings.translate():
            client = (await self._ready()).client
            await client.srem(REGISTRY, queue)
            await client.hdel(HASH_TAGS, queue)
        self._registered.discard(queue)

    async def queue_names(self) -> list[str]:
        """Every queue that has been used in this Redis. The hash tags recorded with them
        place the queues this backend was not told about, so that what lists the queues
        then reads the right keys."""
        with self.settings.translate():
            client = (await self._ready()).client
            names = await client.smembers(REGISTRY)
            tags = await client.hgetall(HASH_TAGS)
        for queue, tag in tags.items():
            self._tags.setdefault(records.text(queue), records.text(tag))
        return sorted(records.text(name) for name in names)

    async def time_ms(self) -> int:
        """The store's clock: Redis' TIME, which every machine sharing it agrees on."""
        with self.settings.translate():
            seconds, micros = await (await self._ready()).client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- schedules ------------------------------------------------------------------------

    async def upsert_schedule(
        self, queue: str, schedule_id: str, spec: str, next_run_ms: int | None
    ) -> bool:
        """Store a schedule; an identical spec changes nothing (False). A changed spec
        replaces the planned tick and bumps the version; count and last run are kept."""
        next_run: str | int = "" if next_run_ms is None else next_run_ms
        stored = bool(await self._run("upsert_schedule", queue, schedule_id, spec, next_run))
        await self._register(queue)
        return stored

    async def remove_schedule(self, queue: str, schedule_id: str) -> bool:
        """Remove a schedule and its planned tick; False when there was none."""
        return bool(await self._run("remove_schedule", queue, schedule_id))

    async def list_schedules(self, queue: str) -> list[ScheduleRecord]:
        """Every schedule of the queue, by id."""
        with self.settings.translate():
            client = (await self._ready()).client
            stored = await client.hgetall(self.keys(queue)["schedules"])
        return sorted(
            (records.schedule(key, raw) for key, raw in stored.items()),
            key=lambda schedule: schedule.id,
        )

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
        next_run: str | int = "" if next_run_ms is None else next_run_ms
        fired = await self._run(
            "fire_schedule", queue, _now(now_ms), schedule_id, version, due_ms, next_run,
            records.encode_job(job),
        )
        return bool(fired)

    # -- events and metrics -----------------------------------------------------------------

    async def last_event_id(self, queue: str) -> str:
        """The id of the newest event kept ("0" when there is none)."""
        with self.settings.translate():
            return await event_reads.last_event_id(
                (await self._ready()).client, self.keys(queue)
            )

    async def read_events(
        self, queue: str, after_id: str, count: int, block_ms: int
    ) -> list[EventRecord]:
        """Up to `count` events with ids after `after_id` ("0": from the oldest kept),
        oldest first, waiting up to `block_ms` real ms for one when there is none yet."""
        with self.settings.translate():
            session = await self._ready()
            return await event_reads.read_events(
                session.client, session.blocking, self.keys(queue), after_id, count, block_ms
            )

    async def metrics(self, queue: str, since_ms: int, until_ms: int) -> list[MinuteMetrics]:
        """Per-minute metrics of finished jobs, oldest first, for minutes starting within
        [since_ms, until_ms] (minutes with nothing finished are left out); kept 7+ days."""
        with self.settings.translate():
            client = (await self._ready()).client
            return await event_reads.minute_metrics(client, self.keys(queue), since_ms, until_ms)

    # -- the worker registry ----------------------------------------------------------------

    async def register_worker(
        self, queue: str, worker_id: str, info: str, ttl_ms: int, now_ms: int | None
    ) -> None:
        """Register a worker or renew its heartbeat; it counts as live for `ttl_ms`."""
        await self._run("register_worker", queue, _now(now_ms), worker_id, info, ttl_ms)

    async def unregister_worker(self, queue: str, worker_id: str) -> None:
        """Forget a worker that stopped."""
        await self._run("unregister_worker", queue, worker_id)

    async def list_workers(self, queue: str, now_ms: int | None) -> list[WorkerRecord]:
        """The live workers of a queue (expired ones are deleted), by id."""
        reply = await self._run("list_workers", queue, _now(now_ms))
        found = []
        for i in range(0, len(reply), 2):
            stored = orjson.loads(reply[i + 1])
            found.append(WorkerRecord(
                id=records.text(reply[i]), info=stored["info"],
                started_at=int(stored["started_at"]), heartbeat_at=int(stored["heartbeat_at"]),
            ))
        return found


def _check_flow_shape(jobs: Sequence[FlowJob]) -> None:
    """Refuse a flow whose parents do not come before their children, or do not wait for
    exactly the children given (they would wait forever)."""
    if not jobs:
        raise InvalidOptionError("a flow needs at least its root job")
    if jobs[0].job.parent is not None:
        raise InvalidOptionError("the root of a flow has no parent")
    expected: dict[tuple[str, str], int] = {}
    given: dict[tuple[str, str], int] = {}
    for flow_job in jobs:
        job = flow_job.job
        key = (flow_job.queue, job.id)
        if key in expected:
            raise InvalidOptionError(
                f"job id {job.id!r} appears twice in the flow in queue {flow_job.queue!r}"
            )
        expected[key] = job.children
        if job.parent is not None:
            parent = (job.parent.queue, job.parent.id)
            if parent not in expected:
                raise InvalidOptionError(
                    f"job {job.id!r} names parent {job.parent.queue}:{job.parent.id}, which "
                    "does not come before it in the flow"
                )
            given[parent] = given.get(parent, 0) + 1
    for (queue, job_id), count in expected.items():
        if given.get((queue, job_id), 0) != count:
            raise InvalidOptionError(
                f"job {queue}:{job_id} waits for {count} children but the flow gives it "
                f"{given.get((queue, job_id), 0)}"
            )
