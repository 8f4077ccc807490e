"""The only place corral reads time.

Every module asks a `Clock` for the time and sleeps through it, so tests (and
`corral.testing.VirtualClock`) can move time forward without waiting.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of time that corral can also sleep on."""

    @property
    def is_virtual(self) -> bool:
        """True when the time is driven by a test rather than the machine."""
        ...

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds `seconds` of this clock's time take (for threads that
        wait in real time, such as the lock renewer)."""
        ...


class SystemClock:
    """The machine's wall clock."""

    @property
    def is_virtual(self) -> bool:
        """The system clock is real."""
        return False

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        return time.time_ns() // 1_000_000

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        """The same: this clock is real time."""
        return seconds


SYSTEM = SystemClock()


def system_ms() -> int:
    """Wall-clock milliseconds since the epoch (the store's clock on SQLite)."""
    return time.time_ns() // 1_000_000


def monotonic() -> float:
    """Seconds from a monotonic source, for measuring intervals and timeouts."""
    return time.monotonic()


def sleep_blocking(seconds: float) -> None:
    """Block the calling thread (used only by threads that own no event loop)."""
    time.sleep(max(0.0, seconds))


def to_datetime(ms: int | None) -> datetime | None:
    """Epoch milliseconds to an aware UTC datetime (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(moment: datetime) -> int:
    """An aware datetime to epoch milliseconds."""
    return round(moment.timestamp() * 1000)
