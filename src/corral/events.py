"""Queue events: every process's transitions, as a stream any process can follow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self

from corral import codec
from corral.backends import open_backend, resolve_url
from corral.backends.base import Backend, EventRecord
from corral.clock import to_datetime
from corral.errors import InvalidOptionError
from corral.options import check_hash_tag, check_queue_name

__all__ = ["Event", "EventType", "QueueEvents"]

BATCH: Final = 100
BLOCK_MS: Final = 1000


class EventType(StrEnum):
    """What happened to a job (plain strings compare equal)."""

    ADDED = "added"
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    STALLED = "stalled"
    REMOVED = "removed"
    DEDUPLICATED = "deduplicated"


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event: its id (resume after it with `last_id`), type, job and payload."""

    id: str
    type: EventType | str
    job_id: str | None
    data: Any
    timestamp: datetime

    @classmethod
    def from_record(cls, record: EventRecord) -> Event:
        """From the stored record (an unknown type stays a plain string)."""
        kind: EventType | str = (
            EventType(record.type) if record.type in EventType._value2member_map_ else record.type
        )
        moment = to_datetime(record.timestamp)
        assert moment is not None
        return cls(record.id, kind, record.job_id, codec.loads(record.data), moment)


class QueueEvents:
    """Follow a queue's events: `async for event in corral.QueueEvents("q", url=...)`.

    With `last_id=None` it yields events recorded from now on; with an id it resumes
    right after that event ("0": from the oldest event the store still keeps).
    """

    def __init__(
        self, queue_name: str, *, url: str | None = None, last_id: str | None = None,
        hash_tag: str | None = None,
    ) -> None:
        self.queue_name = check_queue_name(queue_name)
        self.hash_tag = check_hash_tag(hash_tag)
        self.url = resolve_url(url)
        if last_id is not None and (not isinstance(last_id, str) or not last_id):
            raise InvalidOptionError(f"last_id must be an event id string, not {last_id!r}")
        self.last_id: str | None = last_id
        self._backend: Backend | None = None
        self._owns_backend = True

    @classmethod
    def _sharing(cls, queue_name: str, url: str, backend: Backend) -> QueueEvents:
        """Events over an open backend that this object will not close."""
        events = cls(queue_name, url=url)
        events._backend = backend
        events._owns_backend = False
        return events

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop following and release the store connection."""
        backend, self._backend = self._backend, None
        if backend is not None and self._owns_backend:
            await backend.close()

    async def _open(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.url)
            self._backend.use_hash_tag(self.queue_name, self.hash_tag)
        if self.last_id is None:
            self.last_id = await self._backend.last_event_id(self.queue_name)
        return self._backend

    async def start(self) -> None:
        """Fix the position to follow from (now, when no `last_id` was given)."""
        await self._open()

    async def read(self, count: int = BATCH, block_ms: int = BLOCK_MS) -> list[Event]:
        """The next events (up to `count`), waiting up to `block_ms` for one to arrive."""
        backend = await self._open()
        assert self.last_id is not None
        records = await backend.read_events(self.queue_name, self.last_id, count, block_ms)
        if records:
            self.last_id = records[-1].id
        return [Event.from_record(record) for record in records]

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            for event in await self.read():
                yield event
