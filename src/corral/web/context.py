"""What every request of the web app shares: the settings and one open store."""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException, Request

from corral.backends import open_backend, redact, resolve_url
from corral.backends.base import Backend
from corral.clock import SYSTEM, Clock, monotonic
from corral.errors import BackendUnavailableError, InvalidOptionError
from corral.options import check_queue_name
from corral.queue import FAIL_FAST_SECONDS, Queue

__all__ = ["DEFAULT_MAX_BODY", "QueueNotFound", "WebContext", "get_context"]

DEFAULT_MAX_BODY: Final = 2 * 1024 * 1024
"""Largest request body the app reads (bytes); larger ones get 413."""


class QueueNotFound(HTTPException):
    """The store has never seen a queue of this name (404)."""

    def __init__(self, name: str) -> None:
        super().__init__(404, f"no queue named {name!r}")


class WebContext:
    """The app's settings and its store, at `app.state.corral`.

    The store is opened on first use and shared by every Queue the app hands out, so a
    page that shows ten queues still uses one connection pool (or one SQLite file handle).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        read_only: bool = False,
        *,
        clock: Clock | None = None,
        public_metrics: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.url: str = resolve_url(url)
        if token is not None and not token.strip():
            raise InvalidOptionError("the dashboard token must not be empty")
        self.token: str | None = token
        self.read_only: bool = read_only
        self.clock: Clock = clock or SYSTEM
        self.public_metrics: bool = public_metrics
        self.max_body: int = max_body
        self._backend: Backend | None = None
        self._queues: dict[str, Queue] = {}
        self._known: set[str] = set()  # names seen in the store's registry
        self._listed = False
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"<WebContext {redact(self.url)} read_only={self.read_only}>"

    @property
    def backend(self) -> Backend:
        """The open store (opened on first use)."""
        if self._backend is None:
            self._backend = open_backend(self.url)
        return self._backend

    @property
    def kind(self) -> str:
        """`redis` or `sqlite`."""
        return self.backend.kind

    async def queue_names(self) -> list[str]:
        """Every queue the store has seen, sorted.

        Reading the registry also tells a Redis store each queue's hash tag, so the app
        finds the keys of queues that share a cluster slot. Like a Queue, the context fails
        at once for a moment after the store failed, so pages fall back fast.
        """
        if monotonic() < self._down_until:
            raise BackendUnavailableError(f"store {redact(self.url)} failed moments ago")
        try:
            names = sorted(await self.backend.queue_names())
        except BackendUnavailableError:
            self._down_until = monotonic() + FAIL_FAST_SECONDS
            raise
        self._known = set(names)
        self._listed = True
        return names

    async def queue(self, name: str, *, must_exist: bool = True) -> Queue:
        """The queue `name`. With `must_exist` (reads, and changes to a queue's jobs), a bad
        name or one the store has never seen is QueueNotFound (404); without it (adding
        jobs and schedules, which create the queue), a bad name is InvalidOptionError."""
        try:
            check_queue_name(name)
        except InvalidOptionError:
            if must_exist:
                raise QueueNotFound(name) from None
            raise
        if not self._listed or (must_exist and name not in self._known):
            await self.queue_names()
        if must_exist and name not in self._known:
            raise QueueNotFound(name)
        return self._queue(name)

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = Queue._sharing(name, self.url, self.backend, self.clock)
            self._queues[name] = queue
        return queue

    def forget(self, name: str) -> None:
        """Drop the cached Queue of `name` (after the queue was obliterated elsewhere)."""
        self._queues.pop(name, None)
        self._known.discard(name)

    async def close(self) -> None:
        """Close the store; the context opens it again if it is used afterwards."""
        backend, self._backend = self._backend, None
        self._queues.clear()
        self._known.clear()
        self._listed = False
        if backend is not None:
            await backend.close()


def get_context(request: Request) -> WebContext:
    """FastAPI dependency: the app's WebContext."""
    context: WebContext = request.app.state.corral
    return context
