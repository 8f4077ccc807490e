"""`create_app()`: the ASGI app of the dashboard, the HTTP API, `/health` and `/metrics`.

Mount it anywhere (`parent.mount("/admin/queues", create_app(...))`): every URL the app
builds starts with the ASGI root path. A mounted app's lifespan is not run by its parent;
nothing needs it to be (the store opens on first use), but a parent that wants the store
closed on shutdown calls `await app.state.corral.close()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral import __version__
from corral.clock import Clock
from corral.errors import (
    BackendUnavailableError,
    CorralError,
    InvalidOptionError,
    JobLockedError,
    JobNotFoundError,
    LockLostError,
    PayloadTooLargeError,
)
from corral.web import api, models, security
from corral.web.context import DEFAULT_MAX_BODY, WebContext, get_context
from corral.web.prom import PrometheusExporter
from corral.web.security import LoginRequired, require_metrics, root_path

__all__ = ["create_app"]

log = logging.getLogger("corral.web")

STATIC_DIR: Final = Path(__file__).parent / "static"
HEALTH_TIMEOUT: Final = 5.0
"""Seconds `/health` waits for the store before answering 503."""

# Status of each corral error; the first class an error is an instance of wins.
ERROR_STATUS: Final[tuple[tuple[type[CorralError], int], ...]] = (
    (InvalidOptionError, 422),  # SerializationError too
    (PayloadTooLargeError, 413),
    (JobNotFoundError, 404),
    (JobLockedError, 409),
    (LockLostError, 409),
    (BackendUnavailableError, 503),
    (CorralError, 400),
)
SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Guard:
    """ASGI middleware: refuse bodies over the limit (413) before any handler reads them, and
    add the security headers to every response.

    The body is read whole (it is small by construction) and replayed to the app, so both a
    lying Content-Length and a chunked upload are caught at the same limit.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if scope["method"] in _BODY_METHODS:
            replay = await self._read_body(scope, receive, send_with_headers)
            if replay is None:
                return
            receive = replay
        await self.app(scope, receive, send_with_headers)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit():
            await self._refuse(send, 400, "malformed Content-Length header")
            return None
        if int(declared) > self.max_body:
            await self._too_large(send)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                after: list[Message] = [message]
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                after = []
                break
        pending: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False},
            *after,
        ]

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        return replay

    async def _too_large(self, send: Send) -> None:
        await self._refuse(send, 413, f"request body larger than {self.max_body} bytes")

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = orjson.dumps({"detail": detail})
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})


def _add_error_handlers(app: FastAPI) -> None:
    async def corral_error(request: Request, exc: Exception) -> Response:
        status = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
        return JSONResponse({"detail": str(exc)}, status_code=status)

    async def login_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse(f"{root_path(request)}/login", status_code=303)

    async def recursion(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "the request body is nested too deeply"}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not the client's fault: logged with its traceback, answered without it.
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (logged by the server)"}, status_code=500)

    app.add_exception_handler(CorralError, corral_error)
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(RecursionError, recursion)
    app.add_exception_handler(Exception, unexpected)


def _add_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=models.Health, tags=["service"],
             responses={503: {"model": models.Health, "description": "The store is down"}})
    async def health(context: WebContext = Depends(get_context)) -> Any:  # noqa: B008
        """Whether the store answers (never needs a token)."""
        kind = context.kind
        try:
            await asyncio.wait_for(context.backend.ping(), HEALTH_TIMEOUT)
        except (CorralError, TimeoutError):
            return JSONResponse({"status": "unavailable", "backend": kind}, status_code=503)
        return {"status": "ok", "backend": kind}

    @app.get("/metrics", tags=["service"], dependencies=[Depends(require_metrics)],
             response_class=Response,
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text format"},
                        401: {"model": models.Error}})
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: jobs by queue and state, totals, processing time."""
        exporter: PrometheusExporter = request.app.state.prometheus
        return Response(await exporter.render(), media_type=CONTENT_TYPE_PLAIN_0_0_4)


def create_app(
    url: str | None = None,
    token: str | None = None,
    read_only: bool = False,
    *,
    clock: Clock | None = None,
    public_metrics: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """The dashboard, HTTP API, `/health` and `/metrics` over the store at `url`.

    Args:
        url: The store (else `CORRAL_URL`, else `sqlite:///corral.db`).
        token: When given, `/api`, the pages and `/metrics` need it (bearer or login).
        read_only: Refuse every change (403).
        clock: The clock (a `VirtualClock` in tests).
        public_metrics: Serve `/metrics` without the token.
        max_body: The largest request body accepted, in bytes (413 beyond).
    """
    from corral.web import pages  # the UI's pages (its own module)

    context = WebContext(url, token, read_only, clock=clock, public_metrics=public_metrics,
                         max_body=max_body)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await context.close()

    app = FastAPI(
        title="corral", version=__version__, lifespan=lifespan,
        description="The job queues of one corral store: inspect and manage jobs and queues.",
    )
    app.state.corral = context
    app.state.prometheus = PrometheusExporter(context)
    app.add_middleware(_Guard, max_body=max_body)
    _add_error_handlers(app)
    _add_routes(app)
    app.include_router(api.router)
    app.include_router(security.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app

