"""Reading a queue's event stream and per-minute metrics (written by the scripts: see
`lua/_events.lua`).

Event ids are the stream's own ("<ms>-<seq>"). A blocking read waits in XREAD BLOCK on
the session's blocking client, whose pool gives it a connection of its own, so other
calls (and the workers' blocking pops) go on meanwhile; a wait longer than a blocking
command may last is several of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from corral.backends.base import EventRecord, MinuteMetrics
from corral.backends.redis.connection import MAX_BLOCK_SECONDS, AsyncClient
from corral.backends.redis.records import text
from corral.clock import monotonic
from corral.errors import InvalidOptionError

_ID: Final = re.compile(r"0|[0-9]{1,20}-[0-9]{1,20}")
_MAX_BLOCK_MS: Final = int(MAX_BLOCK_SECONDS * 1000)


def check_id(event_id: str) -> str:
    """An event id as XREAD takes it: "<ms>-<seq>", or "0" for before the oldest."""
    text_id = event_id.strip()
    if not _ID.fullmatch(text_id):
        raise InvalidOptionError(
            f"event id {event_id!r} is not an id of this Redis store: use one it returned "
            "(<ms>-<seq>), or 0 for the oldest kept"
        )
    return text_id


def to_event(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> EventRecord:
    """A record from one stream entry."""
    job = fields.get(b"job")
    data = fields.get(b"data")
    return EventRecord(
        id=text(entry_id),
        type=text(fields[b"type"]),
        job_id=None if job is None else text(job),
        data=None if data is None else text(data),
        timestamp=int(fields[b"at"]),
    )


def _entries(reply: Any) -> list[EventRecord]:
    """The records of an XREAD reply on one stream (RESP2 list, or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, Mapping):  # RESP3: {key: [entries]}
        streams = [value[0] for value in reply.values()]
    else:  # RESP2: [[key, entries]]
        streams = [item[1] for item in reply]
    return [to_event(entry_id, fields) for entries in streams for entry_id, fields in entries]


async def last_event_id(client: AsyncClient, keys: Mapping[str, str]) -> str:
    """The id of the newest event kept in the queue whose keys these are ("0": none)."""
    newest: Any = await client.xrevrange(keys["events"], count=1)
    return text(newest[0][0]) if newest else "0"


async def read_events(
    client: AsyncClient, blocking: AsyncClient, keys: Mapping[str, str], after_id: str,
    count: int, block_ms: int,
) -> list[EventRecord]:
    """Up to `count` events of the queue whose keys these are after `after_id`, oldest
    first, waiting up to `block_ms` real ms (on `blocking`) for one when there is none yet."""
    after = check_id(after_id)
    if count <= 0:
        return []
    streams: dict[Any, Any] = {keys["events"]: after}
    if block_ms <= 0:
        return _entries(await client.xread(streams, count=count))
    deadline = monotonic() + block_ms / 1000
    while True:
        # BLOCK 0 would wait forever: never ask for less than 1 ms.
        block = max(1, min(_MAX_BLOCK_MS, round((deadline - monotonic()) * 1000)))
        found = _entries(await blocking.xread(streams, count=count, block=block))
        if found or monotonic() >= deadline:
            return found


async def minute_metrics(
    client: AsyncClient, keys: Mapping[str, str], since_ms: int, until_ms: int
) -> list[MinuteMetrics]:
    """The minutes starting within [since_ms, until_ms] in which jobs of the queue whose
    keys these are finished, oldest first (a minute dropped between the two reads is left
    out)."""
    minutes: Any = await client.zrangebyscore(keys["metric_minutes"], since_ms, until_ms)
    if not minutes:
        return []
    stored = await client.hmget(keys["metrics"], minutes)
    found = []
    for minute, raw in zip(minutes, stored, strict=True):
        if raw is None:
            continue
        m = orjson.loads(raw)
        found.append(MinuteMetrics(
            minute=int(minute), completed=m["completed"], failed=m["failed"],
            processing_ms_total=m["ptot"], processing_ms_max=m["pmax"],
            wait_ms_total=m["wtot"], wait_ms_max=m["wmax"],
        ))
    return found
