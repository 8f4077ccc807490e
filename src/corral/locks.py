"""Lock renewal from a thread of its own, so CPU-bound jobs are not taken for stalled."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from dataclasses import dataclass

from corral.backends.base import LockKeeper
from corral.clock import Clock, monotonic

log = logging.getLogger("corral.worker")

# Past this long without the event loop answering, the worker is presumed hung and
# its jobs are left to lapse so that other workers can take them.
LOOP_SILENCE_LIMIT = 300.0


@dataclass(slots=True)
class _Held:
    token: str
    renew_until: float  # monotonic seconds; inf for jobs without a timeout


class LockRenewer:
    """Extends the locks of a worker's active jobs every `interval` real seconds."""

    def __init__(
        self, keeper: LockKeeper, queue: str, lock_ms: int, clock: Clock,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._keeper = keeper
        self._queue = queue
        self._lock_ms = lock_ms
        self._clock = clock
        self._loop = loop
        self._interval = max(0.005, clock.real_seconds(lock_ms / 2000))
        self._held: dict[str, _Held] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._loop_beat = monotonic()
        self._thread = threading.Thread(target=self._run, name="corral-locks", daemon=True)
        self.lost: set[str] = set()

    def start(self) -> None:
        """Start renewing and the event-loop heartbeat."""
        self._thread.start()
        self._beat()

    def _beat(self) -> None:
        self._loop_beat = monotonic()
        if not self._stop.is_set():
            self._loop.call_later(1.0, self._beat)

    def hold(self, job_id: str, token: str, timeout: float | None) -> None:
        """Renew this job's lock until it is released (or its timeout + lock duration pass)."""
        limit = math.inf if timeout is None else monotonic() + timeout + self._lock_ms / 1000
        with self._mutex:
            self._held[job_id] = _Held(token, limit)

    def release(self, job_id: str) -> None:
        """Stop renewing this job's lock."""
        with self._mutex:
            self._held.pop(job_id, None)
            self.lost.discard(job_id)

    def stop(self) -> None:
        """Stop the thread and close its store handle."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._keeper.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._renew_once()
            except Exception:
                log.exception("renewing locks failed; retrying")

    def _renew_once(self) -> None:
        now = monotonic()
        if now - self._loop_beat > LOOP_SILENCE_LIMIT:
            silent = now - self._loop_beat
            log.error("event loop silent for %.0f s: no longer renewing locks", silent)
            return
        with self._mutex:
            tokens = {job_id: h.token for job_id, h in self._held.items() if h.renew_until > now}
        if not tokens:
            return
        now_ms = self._clock.now_ms() if self._clock.is_virtual else None
        lost = self._keeper.extend_locks(self._queue, tokens, self._lock_ms, now_ms)
        if lost:
            with self._mutex:
                # A job released meanwhile finished normally: its lock is gone on purpose.
                still_held = [job_id for job_id in lost if job_id in self._held]
                self.lost.update(still_held)
            if still_held:
                log.warning("lost the locks of %d jobs: %s", len(still_held),
                            ", ".join(still_held[:5]))
