"""Helpers of the event tests, for any store."""

from __future__ import annotations

import json
from typing import Any

from corral.backends.base import Backend, Limits, NewJob
from corral.backends.sqlite.events import FINAL
from tests.backends.protocol.support import LOCK_MS, T0

LEVELS = ("all", "final", "off")
Event = tuple[str, str | None, Any]
"""An event as the tests compare it: type, job id, decoded data."""


async def configure(backend: Backend, level: str, queue: str = "q") -> int:
    """Set the queue's event level; return the new config version."""
    return await backend.set_config(queue, "{}", Limits(events=level))


async def add(backend: Backend, *jobs: NewJob, now: int = T0, queue: str = "q") -> list[bool]:
    """Add jobs under the queue's current config; return which were created."""
    version = (await backend.get_config(queue)).version
    result = await backend.add(queue, jobs, version, now)
    assert not result.stale_config
    return [created for _, created in result.records]


async def events(backend: Backend, queue: str = "q", after: str = "0") -> list[Event]:
    """Every event kept after `after`, decoded."""
    records = await backend.read_events(queue, after, 100_000, 0)
    return [
        (r.type, r.job_id, None if r.data is None else json.loads(r.data)) for r in records
    ]


def at_level(level: str, expected: list[Event]) -> list[Event]:
    """The events of a level "all" stream that `level` keeps."""
    if level == "off":
        return []
    return [e for e in expected if level == "all" or e[0] in FINAL]


async def settle(
    backend: Backend, outcomes: list[Any], now: int, claim_count: int = 0
) -> list[str]:
    """Apply outcomes (and claim); return the ids claimed."""
    result = await backend.settle("q", outcomes, claim_count, LOCK_MS, "w1", now)
    assert result.refused == []
    return [c.record.id for c in result.claimed]
