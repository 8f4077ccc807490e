"""Waking idle workers: a blocking pop on the queue's `marker` sorted set.

Every transition that makes work available adds the marker; an idle worker waits in
BZPOPMIN on a connection of its own, so it sleeps in Redis and wakes within milliseconds.
Only one of several idle workers pops a marker; `settle` adds it again while claimable
jobs remain, so the others wake in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from corral.backends.redis.connection import MAX_BLOCK_SECONDS, AsyncClient
from corral.clock import monotonic

log = logging.getLogger("corral")

MIN_BLOCK_SECONDS = 0.01
"""BZPOPMIN's timeout 0 means forever: never ask for less than this."""


class MarkerWatch:
    """The blocking pop of one queue's marker, shared by the waits that follow each other.

    The pop runs in a task of its own that outlives a cancelled wait (a worker cancels its
    wait whenever one of its jobs finishes), so no connection is cut mid-command and the
    next wait picks the same pop up. A marker popped while nobody waits any more is handed
    back, so that another idle worker gets the wake-up.
    """

    def __init__(
        self, client: AsyncClient, key: str, hand_back: Callable[[], Awaitable[None]]
    ) -> None:
        self._client = client
        self._key = key
        self._hand_back = hand_back
        self._task: asyncio.Task[bool] | None = None
        self._waiters = 0
        self._handing: set[asyncio.Task[None]] = set()

    async def wait(self, timeout: float) -> None:
        """Return when a marker is popped, or after `timeout` seconds; raise the pop's error."""
        deadline = monotonic() + max(0.0, timeout)
        self._waiters += 1
        try:
            while True:
                task = self._task
                if task is None:
                    remaining = deadline - monotonic()
                    if remaining <= 0:
                        return
                    task = self._start(min(max(remaining, MIN_BLOCK_SECONDS), MAX_BLOCK_SECONDS))
                if not task.done():
                    await asyncio.wait({task}, timeout=max(0.0, deadline - monotonic()))
                    if not task.done():
                        return
                if self._task is task:
                    self._task = None
                if task.result():
                    return
        finally:
            self._waiters -= 1
            self._orphaned()

    def _start(self, seconds: float) -> asyncio.Task[bool]:
        task = self._task = asyncio.ensure_future(self._pop(seconds))
        task.add_done_callback(lambda _: self._orphaned())
        return task

    async def _pop(self, seconds: float) -> bool:
        return await self._client.bzpopmin([self._key], seconds) is not None

    def _orphaned(self) -> None:
        """Deal with a finished pop that no wait will look at."""
        task = self._task
        if self._waiters or task is None or not task.done():
            return
        self._task = None
        if task.cancelled() or task.exception() is not None:
            return  # the next wait starts a fresh pop and sees any error itself
        if task.result():
            handing = asyncio.ensure_future(self._safe_hand_back())
            self._handing.add(handing)
            handing.add_done_callback(self._handing.discard)

    async def _safe_hand_back(self) -> None:
        try:
            await self._hand_back()
        except Exception as exc:  # the wake-up is lost; idle workers still poll
            log.debug("could not hand a wake-up marker back: %s", exc)

    async def close(self) -> None:
        """Stop the pop (its connection is dropped) and pending hand-backs."""
        tasks = [task for task in (self._task, *self._handing) if task is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
