"""Where a queue lives in Redis: `corral:{<queue>}:<part>`, one cluster slot per queue.

Every key a script touches is one of these parts of one queue, passed in KEYS; the
registry of queue names is the one key outside any queue's slot.
"""

from __future__ import annotations

import functools
from typing import Final

PARTS: Final = (
    "meta",  # hash: paused, hold_until, config, config_version, seq, lseq, n, fseq, turn,
    # and the limits: rate_limit, rate_per_ms, concurrency, group_rate_limit,
    # group_rate_per_ms, group_concurrency (absent: no limit), events (the level: all,
    # final or off; absent: final)
    "jobs",  # hash: job id -> JSON record
    "data",  # hash: job id -> data JSON text
    "waiting",  # sorted set: priority * 2^32 + seq
    "delayed",  # sorted set: run_at ms
    "active",  # sorted set: lock_until ms
    "completed",  # sorted set: finished_at ms (+ a fraction that orders ties)
    "failed",  # sorted set: finished_at ms (+ a fraction that orders ties)
    "waiting-children",  # sorted set
    "tags",  # sorted set: "<tag>\0<job id>" at score 0
    "logs",  # hash: job id -> JSON array of lines
    "marker",  # sorted set: a member while work may be available, popped by idle workers
    "schedules",  # hash: schedule id -> JSON record {spec, next_run, last_run, count, version}
    "ticks",  # sorted set: schedule id by next_run ms (schedules that have one)
    "workers",  # hash: worker id -> JSON record {info, started_at, heartbeat_at}
    "worker_expiry",  # sorted set: worker id by expires_at ms
    # Fair groups: `_lib.lua` keeps these two in step with `waiting`.
    "gwaiting",  # sorted set at score 0, by member: "<group>\0<position>\0<id>", every waiting job
    "groups",  # sorted set: each group with waiting jobs, by head priority * 2^32 + served turn
    "gactive",  # hash: group -> active jobs (kept while group_concurrency is set)
    # Sliding windows of job starts (kept while a rate limit is set): the same members in both.
    "starts",  # sorted set: "<group>\0<start ms, hex>\0<unique>" by start ms
    "gstarts",  # sorted set at score 0, by member (kept while a group rate limit is set)
    "dedupe",  # hash: dedupe key -> JSON {id, exp}
    # Events and metrics: see `_events.lua`.
    "events",  # stream, capped near 10,000 entries: type, job, data (JSON text), at (ms)
    "metrics",  # hash: minute (epoch ms) -> JSON {completed, failed, ptot, pmax, wtot, wmax}
    "metric_minutes",  # sorted set: the minutes of `metrics` by time
)
"""Every part of a queue's key space."""

REGISTRY: Final = "corral:queues"
"""The set of every queue name used in this Redis (in its own slot)."""


@functools.lru_cache(maxsize=1024)
def queue_keys(queue: str, hash_tag: str | None = None) -> dict[str, str]:
    """Each part's key for one queue; `hash_tag` (default: the queue name) picks the slot."""
    tag = queue if hash_tag is None else hash_tag
    return {part: f"corral:{{{tag}}}:{part}" for part in PARTS}
