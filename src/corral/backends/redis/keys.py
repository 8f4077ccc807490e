"""Where a queue lives in Redis: `corral:{<queue>}:<part>`, one cluster slot per queue.

A queue given a hash tag lives at `corral:{<tag>}:<queue>:<part>` instead, so queues that
share a tag share a slot (one script can then span them: a flow across queues on Redis
Cluster). Every key a script touches is one of these parts of a queue, passed in KEYS,
except the parts of a flow child's parent, which the scripts build from the parent queue's
prefix stored in the child (same slot by construction). The registry of queue names and
their tags are the only keys outside any queue's slot.
"""

from __future__ import annotations

import functools
from typing import Final

from corral.errors import InvalidOptionError

PARTS: Final = (
    "meta",  # hash: paused, hold_until, config, config_version, seq, lseq, n, fseq, turn,
    # and the limits: rate_limit, rate_per_ms, concurrency, group_rate_limit,
    # group_rate_per_ms, group_concurrency (absent: no limit), events (the level: all,
    # final or off; absent: final), grouped (1 once the group index is kept)
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
    # Fair groups: `_lib.lua` keeps these two in step with `waiting` from a queue's first
    # grouped job on (meta `grouped` = 1; before it, 0 and both empty).
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
    # Flows: see `_flows.lua`.
    "deps",  # hash: "<parent id>\0<n>" -> JSON {q, id, s, rv, fr}, a parent's n-th child
)
"""Every part of a queue's key space."""

REGISTRY: Final = "corral:queues"
"""The set of every queue name used in this Redis (in its own slot)."""
HASH_TAGS: Final = "corral:hash_tags"
"""Hash: queue name -> its hash tag, for the queues registered with one."""


def check_hash_tag(tag: str) -> str:
    """A hash tag as keys take it: non-empty, printable, without braces."""
    if not isinstance(tag, str) or not tag or not tag.isprintable() or "{" in tag or "}" in tag:
        raise InvalidOptionError(
            f"hash_tag {tag!r} must be non-empty printable text without '{{' or '}}'"
        )
    return tag


def queue_prefix(queue: str, hash_tag: str | None = None) -> str:
    """What every key of the queue starts with: `corral:{<queue>}:`, or with a hash tag
    `corral:{<tag>}:<queue>:`."""
    if hash_tag is None:
        return f"corral:{{{queue}}}:"
    return f"corral:{{{hash_tag}}}:{queue}:"


@functools.lru_cache(maxsize=1024)
def queue_keys(queue: str, hash_tag: str | None = None) -> dict[str, str]:
    """Each part's key for one queue; `hash_tag` (default: the queue name) picks the slot."""
    prefix = queue_prefix(queue, hash_tag)
    return {part: prefix + part for part in PARTS}
