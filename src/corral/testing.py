"""Helpers for testing applications built on corral: a clock that tests drive."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

from corral.clock import SYSTEM, monotonic, to_datetime, to_ms
from corral.errors import InvalidOptionError

__all__ = ["FastClock", "VirtualClock"]


class VirtualClock:
    """A clock that only moves when the test advances it.

    Sleepers wake when `advance()` or `set()` moves the time past their deadline,
    so a 48-hour chain of delayed jobs runs in milliseconds.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise InvalidOptionError("VirtualClock needs an aware datetime (tzinfo set)")
        self._now_ms = to_ms(start)
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def is_virtual(self) -> bool:
        """Always True: this clock is driven by the test."""
        return True

    def now_ms(self) -> int:
        """The virtual time in epoch milliseconds."""
        return self._now_ms

    def now(self) -> datetime:
        """The virtual time as an aware UTC datetime."""
        moment = to_datetime(self._now_ms)
        assert moment is not None
        return moment

    async def sleep(self, seconds: float) -> None:
        """Wait until the virtual time has moved `seconds` forward."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._now_ms + max(1, int(seconds * 1000))
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    def real_seconds(self, seconds: float) -> float:
        """Real waits are not scaled: the test moves this clock."""
        return seconds

    async def advance(self, delta: timedelta | float) -> None:
        """Move time forward by `delta` (seconds or timedelta) and wake due sleepers."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise InvalidOptionError("a VirtualClock cannot go backwards")
        await self.set(self.now() + timedelta(seconds=seconds))

    async def set(self, moment: datetime) -> None:
        """Jump to `moment` (not earlier than now) and wake due sleepers."""
        target = to_ms(moment)
        if target < self._now_ms:
            raise InvalidOptionError("a VirtualClock cannot go backwards")
        self._now_ms = target
        while self._sleepers and self._sleepers[0][0] <= self._now_ms:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        # Let woken tasks run before the test continues.
        for _ in range(3):
            await asyncio.sleep(0)


class FastClock:
    """A clock that runs `speed` times faster than real time, from `start` (default: now).

    For demos and soak runs: a 48-hour chain of delayed jobs plays out in minutes. Like a
    VirtualClock it is the time of every transition, so use one FastClock for every Queue
    and Worker of the run, and give workers a lock_duration of a few real seconds
    (`speed * 5`), since locks are counted in this clock's time.
    """

    def __init__(self, speed: float, start: datetime | None = None) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not speed > 0:
            raise InvalidOptionError(f"speed must be a positive number, not {speed!r}")
        if start is not None and start.tzinfo is None:
            raise InvalidOptionError("FastClock needs an aware datetime (tzinfo set)")
        self.speed = float(speed)
        self._start_ms = to_ms(start or SYSTEM.now())
        self._started = monotonic()

    @property
    def is_virtual(self) -> bool:
        """True: the stores take their time from this clock, not their own."""
        return True

    def now_ms(self) -> int:
        """The sped-up time in epoch milliseconds."""
        return self._start_ms + int((monotonic() - self._started) * self.speed * 1000)

    def now(self) -> datetime:
        """The sped-up time as an aware UTC datetime."""
        moment = to_datetime(self.now_ms())
        assert moment is not None
        return moment

    async def sleep(self, seconds: float) -> None:
        """Wait until this clock has moved `seconds` forward."""
        await asyncio.sleep(max(0.0, self.real_seconds(seconds)))

    def real_seconds(self, seconds: float) -> float:
        """`seconds` of this clock in real seconds."""
        return seconds / self.speed
