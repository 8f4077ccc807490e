"""Fixtures of the web tests: the app over the test's store, and HTTP clients for it.

Clients talk to the app in-process (httpx's ASGITransport, lifespan run by asgi-lifespan):
no server, no port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from corral.testing import VirtualClock
from corral.web import create_app

TOKEN = "s3cret-token"
BASE = "http://testserver"

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@asynccontextmanager
async def serve(app: FastAPI, **client_options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for `app`, with the app's lifespan run around it.

    `transport_raise=False` answers an unhandled exception with the app's 500 response
    instead of raising it in the test.
    """
    raise_errors = client_options.pop("transport_raise", True)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=raise_errors)
        async with httpx.AsyncClient(
            transport=transport, base_url=client_options.pop("base_url", BASE), **client_options
        ) as client:
            yield client


@pytest.fixture
def make_client(store_url: str, clock: VirtualClock) -> ClientFactory:
    """`async with make_client(token=..., read_only=...) as client:` over the test's store."""

    def factory(**app_options: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        client_options = app_options.pop("client", {})
        app_options.setdefault("clock", clock)
        return serve(create_app(store_url, **app_options), **client_options)

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app without a token."""
    async with make_client() as client:
        yield client


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def sqlite_client(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app over a SQLite store, for checks of HTTP input that fail before
    the store is asked anything (they need not run once per store)."""
    async with serve(create_app(f"sqlite:///{tmp_path}/web.db", clock=clock)) as client:
        yield client
