"""A property-based sweep of the HTTP API from its own OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid; every answer must be no 500,
carry a documented status code and content type, and match the documented schema. The
store holds a queue `q` with jobs in several states, a flow and a schedule. The app has a
token, which schemathesis sends as the documented bearer scheme (and leaves out, to see
a 401, when it tests requests without it).

On SQLite the sweep runs schemathesis' coverage phase (boundary and just-invalid values of
every parameter) and its fuzzing phase; on Redis only a shorter fuzzing phase, to keep the
suite's time in bounds: the handlers are the same, what differs is the store underneath.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import corral
from corral.web import create_app
from tests.conftest import STORES

from .conftest import TOKEN

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
Case = schemathesis.Case[Any]
SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "derandomize": True}


def _schema(coverage: bool) -> schemathesis.BaseSchema:
    # The document is read once, at collection, from an app whose store is never opened;
    # each test sends its requests to a fresh app over its own store.
    config = SchemathesisConfig.from_dict({
        "phases": {"coverage": {"enabled": coverage}},
        "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
    })
    return schemathesis.openapi.from_asgi(
        "/openapi.json", create_app("sqlite:///unused.db"), config=config
    )


full = _schema(coverage=True)
fuzzing_only = _schema(coverage=False)


async def _seed(url: str) -> None:
    async with corral.Queue("q", url=url) as queue:
        await queue.add("m", {"n": 1}, job_id="j1")
        await queue.add("m", {"n": 2}, job_id="j2", delay=3600)
        await queue.add("parent", children=[corral.JobSpec("child", job_id="c1")],
                        job_id="p1")
        await queue.schedule("s1", every=60)
    # The names of the document's examples, which the examples phase sends.
    async with corral.Queue("emails", url=url) as queue:
        await queue.add("email1", {"to": "a@example.com"}, job_id="email1:L1", delay=60)
        await queue.schedule("daily-rollup", cron="0 2 * * *")


def _app(store: str, tmp_path: Path) -> Iterator[FastAPI]:
    for url in STORES[store](tmp_path):
        asyncio.run(_seed(url))
        yield create_app(url, token=TOKEN)
        shutdown_lifespans()  # schemathesis started the app's lifespan: this closes the store


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[FastAPI]:
    """The app over a seeded SQLite store."""
    yield from _app("sqlite", tmp_path)


@pytest.fixture
def redis_app(tmp_path: Path) -> Iterator[FastAPI]:
    """The app over a seeded Redis store."""
    yield from _app("redis", tmp_path)


@pytest.mark.skipif("sqlite" not in STORES, reason="SQLite is not among CORRAL_TEST_STORES")
@full.parametrize()
@settings(max_examples=25, **SETTINGS)  # type: ignore[arg-type]
def test_api_sweep_sqlite(case: Case, sqlite_app: FastAPI) -> None:
    case.call_and_validate(checks=CHECKS, app=sqlite_app)


@pytest.mark.skipif("redis" not in STORES, reason="Redis is not among CORRAL_TEST_STORES")
@fuzzing_only.parametrize()
@settings(max_examples=15, **SETTINGS)  # type: ignore[arg-type]
def test_api_sweep_redis(case: Case, redis_app: FastAPI) -> None:
    case.call_and_validate(checks=CHECKS, app=redis_app)
