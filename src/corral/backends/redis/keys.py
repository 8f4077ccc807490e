"""Where a queue lives in Redis: `corral:{<queue>}:<part>`, one cluster slot per queue.

Every key a script touches is one of these parts of one queue, passed in KEYS; the
registry of queue names is the one key outside any queue's slot.
"""

from __future__ import annotations

import functools
from typing import Final

PARTS: Final = (
    "meta",  # hash: paused, hold_until, config, config_version, seq, lseq, n, fseq
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
)
"""Every part of a queue's key space."""

REGISTRY: Final = "corral:queues"
"""The set of every queue name used in this Redis (in its own slot)."""


@functools.lru_cache(maxsize=1024)
def queue_keys(queue: str, hash_tag: str | None = None) -> dict[str, str]:
    """Each part's key for one queue; `hash_tag` (default: the queue name) picks the slot."""
    tag = queue if hash_tag is None else hash_tag
    return {part: f"corral:{{{tag}}}:{part}" for part in PARTS}
