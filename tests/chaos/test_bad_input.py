"""Scenario 9: bad input through the Python API and the HTTP API gets its documented error
or status, and the store is unchanged byte for byte.

The store holds a queue with a few jobs and a schedule first. Before and after each case
the whole store is read: on SQLite every row (`iterdump`, so checkpoints do not matter),
on Redis every key with its type, TTL and `DUMP`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager

import corral
from corral.testing import VirtualClock
from corral.web import create_app

TOKEN = "chaos-token-0123456789"
Snapshot = Callable[[], object]


def snapshot_of(url: str) -> Snapshot:
    """A function that reads everything the store holds."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")

        def sqlite_rows() -> object:
            with sqlite3.connect(path) as db:
                return "\n".join(db.iterdump())

        return sqlite_rows

    def redis_keys() -> object:
        with redis.Redis.from_url(url) as client:
            return {
                key: (client.type(key), client.pttl(key), client.dump(key))
                for key in sorted(client.scan_iter(count=1000))
            }

    return redis_keys


@pytest.fixture
async def stocked(store_url: str, clock: VirtualClock) -> AsyncIterator[corral.Queue]:
    """Queue `q` with waiting, delayed and finished jobs and a schedule."""
    async with corral.Queue("q", url=store_url, clock=clock) as queue:
        await queue.add("a", {"i": 1}, job_id="a:1", tags=["t"])
        await queue.add("b", {"i": 2}, delay=60)
        await queue.schedule("nightly", cron="0 2 * * *")
        yield queue


class Opaque:
    """Not JSON."""


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


BIG = "x" * (100 * 1024 * 1024)
"""100 MB of data."""

E = corral.InvalidOptionError
S = corral.SerializationError
P = corral.PayloadTooLargeError

PYTHON_CASES: list[Any] = [
    pytest.param(lambda q: q.add("j", Opaque()), S, id="data-not-json"),
    pytest.param(lambda q: q.add("j", {"x": math.nan}), S, id="data-nan"),
    pytest.param(lambda q: q.add("j", [math.inf]), S, id="data-inf"),
    pytest.param(lambda q: q.add("j", {1: "int key"}), S, id="data-int-key"),
    pytest.param(lambda q: q.add("j", BIG), P, id="data-100mb"),
    pytest.param(lambda q: q.add("j", deep(10_000)), S, id="data-deep-nesting"),
    pytest.param(lambda q: q.add("j", "\ud800"), S, id="data-lone-surrogate"),
    pytest.param(lambda q: q.add("j", delay=-1), E, id="delay-negative"),
    pytest.param(lambda q: q.add("j", delay=math.nan), E, id="delay-nan"),
    pytest.param(lambda q: q.add("j", delay=1e300), E, id="delay-huge"),
    pytest.param(lambda q: q.add("j", delay=timedelta(days=-1)), E, id="delay-negative-td"),
    pytest.param(lambda q: q.add("j", priority="high"), E, id="priority-string"),
    pytest.param(lambda q: q.add("j", priority=2**40), E, id="priority-huge"),
    pytest.param(lambda q: q.add("j", priority=1.5), E, id="priority-float"),
    pytest.param(lambda q: q.add("j", attempts=0), E, id="attempts-zero"),
    pytest.param(lambda q: q.add("j", attempts=-3), E, id="attempts-negative"),
    pytest.param(lambda q: q.add("j", attempts="3"), E, id="attempts-string"),
    pytest.param(lambda q: q.add("j", colour="red"), E, id="unknown-option"),
    pytest.param(lambda q: q.schedule("s", cron="61 * * * *"), E, id="cron-bad-minute"),
    pytest.param(lambda q: q.schedule("s", cron="every day"), E, id="cron-words"),
    pytest.param(lambda q: q.schedule("s", cron="0 2 * * *", tz="Mars/Olympus"), E,
                 id="tz-unknown"),
    pytest.param(lambda q: q.add("j", job_id="a\x00b"), E, id="job-id-nul"),
    pytest.param(lambda q: q.add("j", job_id="a\nb"), E, id="job-id-newline"),
    pytest.param(lambda q: q.add("j", job_id=""), E, id="job-id-empty"),
    pytest.param(lambda q: q.add("j", job_id="x" * 257), E, id="job-id-257"),
    pytest.param(lambda q: q.add("\x07bell"), E, id="job-name-control"),
    pytest.param(lambda q: q.add("j", tags="not-a-list"), E, id="tags-string"),
]

QUEUE_NAMES = ["a:b", "a{b}", "a/b", "é", "", "x" * 65]


@pytest.mark.parametrize(("call", "error"), PYTHON_CASES)
async def test_python_api_refuses_and_writes_nothing(
    stocked: corral.Queue, store_url: str, call: Callable[[corral.Queue], Awaitable[Any]],
    error: type[Exception],
) -> None:
    snapshot = snapshot_of(store_url)
    before = snapshot()

    with pytest.raises(error):
        await call(stocked)

    assert snapshot() == before


@pytest.mark.parametrize("name", QUEUE_NAMES)
async def test_invalid_queue_names_are_refused(
    stocked: corral.Queue, store_url: str, name: str
) -> None:
    snapshot = snapshot_of(store_url)
    before = snapshot()

    with pytest.raises(corral.InvalidOptionError, match="queue name"):
        corral.Queue(name, url=store_url)

    assert snapshot() == before


async def test_a_colon_is_valid_in_a_job_id(stocked: corral.Queue) -> None:
    job = await stocked.add("j", job_id="lead:L1:email1")
    assert job.id == "lead:L1:email1"


# -- the HTTP API ---------------------------------------------------------------------------

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOBS = "/api/queues/q/jobs"

HTTP_CASES: list[Any] = [
    pytest.param("POST", JOBS, {}, {"json": {"name": "j"}}, 401, id="no-token"),
    pytest.param("POST", JOBS, {"Authorization": "Bearer wrong"}, {"json": {"name": "j"}},
                 401, id="wrong-token"),
    pytest.param("POST", f"{JOBS}?token={TOKEN}", {}, {"json": {"name": "j"}}, 401,
                 id="token-in-query"),
    pytest.param("POST", JOBS, AUTH, {"content": b"{" + b" " * (3 * 1024 * 1024) + b"}",
                 "headers": {"content-type": "application/json"}}, 413, id="body-3mib"),
    pytest.param("POST", JOBS, AUTH, {"content": b'{"name": "j",',
                 "headers": {"content-type": "application/json"}}, 422, id="malformed-json"),
    pytest.param("POST", JOBS, AUTH, {"content": b"name=j",
                 "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415,
                 id="wrong-content-type"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": "j", "colour": "red"}}, 422,
                 id="unknown-field"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": "j", "options": {"colour": 1}}}, 422,
                 id="unknown-option"),
    pytest.param("POST", JOBS, AUTH, {"content": b'{"name": "j", "data": NaN}',
                 "headers": {"content-type": "application/json"}}, 422, id="nan-literal"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": "j", "options": {"delay": -5}}}, 422,
                 id="negative-delay"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": "j", "options": {"attempts": 0}}}, 422,
                 id="attempts-zero"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": "j", "options": {"priority": "x"}}},
                 422, id="priority-string"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": "j",
                 "options": {"job_id": "a\u0000b"}}}, 422, id="job-id-nul"),
    pytest.param("POST", JOBS, AUTH, {"json": {"name": 5}}, 422, id="name-wrong-type"),
    # Too deep for the JSON parser: a body that cannot be parsed (400, like FastAPI's own).
    pytest.param("POST", JOBS, AUTH, {"content": b"[" * 5000 + b"]" * 5000,
                 "headers": {"content-type": "application/json"}}, 400, id="deep-nesting"),
    pytest.param("POST", "/api/queues/a:b/jobs", AUTH, {"json": {"name": "j"}}, 422,
                 id="queue-name-colon"),
    pytest.param("PUT", "/api/queues/q/schedules/s", AUTH, {"json": {"cron": "61 * * * *"}},
                 422, id="bad-cron"),
    pytest.param("PUT", "/api/queues/q/schedules/s", AUTH,
                 {"json": {"cron": "0 2 * * *", "tz": "Mars/Olympus"}}, 422, id="bad-tz"),
    pytest.param("DELETE", "/api/queues/q/jobs/a:1", {}, {}, 401, id="delete-no-token"),
    pytest.param("POST", "/api/queues/q/pause", {"Authorization": f"Basic {TOKEN}"}, {}, 401,
                 id="basic-auth"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), HTTP_CASES)
async def test_http_api_refuses_and_writes_nothing(
    stocked: corral.Queue, store_url: str, clock: VirtualClock, method: str, path: str,
    headers: dict[str, str], body: dict[str, Any], status: int,
) -> None:
    snapshot = snapshot_of(store_url)
    app = create_app(store_url, token=TOKEN, clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            before = snapshot()
            request = dict(body)  # the parameters are shared by every store's run
            extra = request.pop("headers", {})
            response = await client.request(method, path, headers={**headers, **extra},
                                            **request)

    assert response.status_code == status, response.text
    assert "detail" in response.json()
    assert snapshot() == before
