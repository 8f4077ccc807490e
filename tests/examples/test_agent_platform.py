"""The agent platform example, walked on the virtual clock on every store.

Workers run in bursts (`run(burst=True)`: what is due now, then return) and the test moves the
clock from one due time to the next, so minutes and months pass in milliseconds. Every outside
call is read back from the stand-ins' CallLog, with its virtual time.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from click.testing import CliRunner
from examples.agent_platform import run_story, setup, workers
from examples.agent_platform.jobs import QUEUES, Producer
from examples.agent_platform.web import create_web_app
from examples.standins import Call, CallLog

import corral
from corral.cli import cli
from corral.cli.workers import load_workers
from corral.testing import VirtualClock
from tests.conftest import START

NIGHT = datetime(2026, 2, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def log(tmp_path: Path, clock: VirtualClock) -> Iterator[CallLog]:
    """The stand-ins' calls, timed by the virtual clock."""
    calls = CallLog(tmp_path / "calls.db", clock)
    yield calls
    calls.close()


@pytest.fixture
async def platform(store_url: str, clock: VirtualClock, log: CallLog) -> list[corral.Worker]:
    """The queues set up (settings and schedules) and the five workers."""
    await setup(store_url, clock)
    return workers(store_url, clock, log)


@pytest.fixture
async def producer(store_url: str, clock: VirtualClock) -> AsyncIterator[Producer]:
    """The platform's producer over the test's store."""
    async with Producer(store_url, clock) as producer:
        yield producer


def worker_of(all_workers: list[corral.Worker], queue: str) -> corral.Worker:
    """The worker of `queue`."""
    return next(w for w in all_workers if w.queue_name == queue)


async def run_due(all_workers: list[corral.Worker]) -> int:
    """Run every job due now on all the workers at once; attempts run."""
    return sum(await asyncio.gather(*(w.run(burst=True) for w in all_workers)))


async def run_until(
    clock: VirtualClock, all_workers: list[corral.Worker], producer: Producer, until: datetime
) -> None:
    """Run whatever falls due until `until`, moving the clock from one due retry to the next."""
    while True:
        await run_due(all_workers)
        counts = [await producer.queue(name).counts() for name in QUEUES]
        if any(c["waiting"] for c in counts):  # follow-ups another worker added meanwhile
            continue
        delayed = [job.run_at for name in QUEUES
                   for job in await producer.queue(name).jobs("delayed", limit=1000)]
        due = min((moment for moment in delayed if moment is not None), default=None)
        if due is None or due > until:
            break
        await clock.set(max(due, clock.now()))
    await clock.set(until)


def seconds_apart(calls: list[Call]) -> list[float]:
    """The gaps between consecutive calls, in seconds."""
    return [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(calls)]


# -- retries -------------------------------------------------------------------------------


async def test_ingestion_fails_twice_then_succeeds_2s_and_8s_later(
    platform: list[corral.Worker], producer: Producer, clock: VirtualClock, log: CallLog
) -> None:
    job = await producer.submit_document("acme", "handbook", "Handbook", "x" * 2500)
    ingest = worker_of(platform, "ingest")
    assert await ingest.run(burst=True) == 1  # 429
    await clock.advance(1.9)
    assert await ingest.run(burst=True) == 0  # not due yet
    await clock.advance(0.1)
    assert await ingest.run(burst=True) == 1  # 429 again
    await clock.advance(8)
    assert await ingest.run(burst=True) == 1

    calls = log.calls("knowledge", "index")
    assert [c.payload["accepted"] for c in calls] == [False, False, True]
    assert calls[0].at == START
    assert seconds_apart(calls) == [2, 8]
    done = await producer.queue("ingest").get_job(job.id)
    assert done is not None
    assert done.state == "completed"
    assert done.attempts_made == 3
    assert done.return_value == {"chunks": 3, "vectors": 3}

    # The document being ready is announced by webhook and by email, once each.
    await run_due(platform)
    assert [c.payload["type"] for c in log.calls("webhooks")] == ["document.ready"]
    assert [c.payload["subject"] for c in log.calls("mail")] == ["Handbook is ready"]


async def test_webhooks_try_5_times_exponentially_then_fail(
    platform: list[corral.Worker], producer: Producer, clock: VirtualClock, log: CallLog
) -> None:
    job = await producer.publish_event("globex", "agent.run.completed", {"run": 1}, "run-1")
    await run_until(clock, platform, producer, START + timedelta(minutes=5))

    posts = log.calls("webhooks", "post")
    assert [c.payload["status"] for c in posts] == [503] * 5
    assert seconds_apart(posts) == [5, 10, 20, 40]
    failed = await producer.queue("webhooks").get_job(job.id)
    assert failed is not None
    assert failed.state == "failed"  # the dead-letter queue: inspect, retry, clean
    assert failed.attempts_made == 5
    assert "503" in (failed.failed_reason or "")


async def test_email_retries_every_10s_with_concurrency_10(
    platform: list[corral.Worker], producer: Producer, clock: VirtualClock, log: CallLog
) -> None:
    assert worker_of(platform, "email").concurrency == 10
    job = await producer.send_email("ops@globex.test", "Welcome", "Hello")  # greylisted twice
    await run_until(clock, platform, producer, START + timedelta(minutes=1))

    sent = log.calls("mail", "send")
    assert [c.payload["accepted"] for c in sent] == [False, False, True]
    assert seconds_apart(sent) == [10, 10]
    done = await producer.queue("email").get_job(job.id)
    assert done is not None
    assert done.state == "completed"


# -- schedules -----------------------------------------------------------------------------


async def test_nightly_rollup_fires_once_a_night_at_0200_utc_across_two_workers(
    platform: list[corral.Worker], store_url: str, clock: VirtualClock, log: CallLog
) -> None:
    # Two worker processes' worth of rollup workers: each night's tick still runs once.
    rollups = [worker_of(platform, "rollup"), worker_of(workers(store_url, clock, log), "rollup")]
    await clock.set(NIGHT - timedelta(seconds=1))
    assert await run_due(rollups) == 0
    await clock.set(NIGHT)
    assert await run_due(rollups) == 1
    assert await run_due(rollups) == 0
    await clock.set(NIGHT + timedelta(days=1))
    assert await run_due(rollups) == 1

    calls = log.calls("analytics", "rollup")
    assert [c.payload["day"] for c in calls] == ["2026-02-24", "2026-02-25"]
    assert [c.at for c in calls] == [NIGHT, NIGHT + timedelta(days=1)]


async def test_credits_are_granted_on_the_1st_at_0005_utc(
    platform: list[corral.Worker], producer: Producer, clock: VirtualClock, log: CallLog
) -> None:
    credits = worker_of(platform, "credits")
    first = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
    await clock.set(first - timedelta(seconds=1))
    assert await credits.run(burst=True) == 0
    await clock.set(first)
    assert await credits.run(burst=True) == 1
    assert await credits.run(burst=True) == 0

    grants = log.calls("billing", "grant")
    assert [(c.payload["workspace"], c.payload["credits"], c.at) for c in grants] == [
        ("acme", 10_000, first), ("globex", 2_500, first),
    ]  # one grant per workspace for March
    assert {c.payload["key"] for c in grants} == {"credits:2026-03:acme", "credits:2026-03:globex"}
    await run_due(platform)
    subjects = {c.payload["subject"] for c in log.calls("mail", "send")}
    assert subjects == {"10,000 credits for 2026-03", "2,500 credits for 2026-03"}


# -- the whole story -----------------------------------------------------------------------


async def test_the_whole_story(
    platform: list[corral.Worker], producer: Producer, store_url: str, clock: VirtualClock,
    log: CallLog,
) -> None:
    await run_story(store_url, clock, log)
    assert [c.action for c in log.calls("story")] == ["upload"] * 3 + ["event"] * 2 + ["email"]
    await run_until(clock, platform, producer, START + timedelta(minutes=5))

    indexed = log.calls("knowledge", "index")
    handbook = [c for c in indexed if c.payload["document"] == "acme/handbook"]
    assert seconds_apart(handbook) == [2, 8]
    assert sorted(c.payload["document"] for c in indexed if c.payload["accepted"]) == [
        "acme/handbook", "acme/pricing", "globex/runbook",
    ]

    posts = log.calls("webhooks", "post")
    acme = [c for c in posts if "acme" in c.payload["endpoint"]]
    assert sorted(c.payload["type"] for c in acme) == [
        "agent.run.completed", "document.ready", "document.ready",
    ]
    assert {c.payload["status"] for c in acme} == {200}
    globex = [c for c in posts if "globex" in c.payload["endpoint"]]
    assert len(globex) == 10
    for event_id in {c.payload["event_id"] for c in globex}:  # the run and the runbook
        tries = [c for c in globex if c.payload["event_id"] == event_id]
        assert seconds_apart(tries) == [5, 10, 20, 40]
    assert (await producer.queue("webhooks").counts())["failed"] == 2

    mail = log.calls("mail", "send")
    assert sum(not c.payload["accepted"] for c in mail) == 2  # greylisted, then let through
    assert (await producer.queue("email").counts())["completed"] == 4
    for name in QUEUES:  # nothing left to do: every job completed or failed for good
        counts = await producer.queue(name).counts()
        assert counts["waiting"] + counts["delayed"] + counts["active"] == 0


# -- the web app and `corral worker` -------------------------------------------------------


async def test_web_app_mounts_the_dashboard_and_queues_work(
    platform: list[corral.Worker], store_url: str, clock: VirtualClock, log: CallLog
) -> None:
    app = create_web_app(store_url, token="s3cret", clock=clock)
    async with LifespanManager(app) as manager, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
    ) as client:
        health = await client.get("/admin/queues/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "backend": store_url.split(":")[0]}
        assert (await client.get("/admin/queues/api/queues")).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        listed = (await client.get("/admin/queues/api/queues", headers=auth)).json()
        assert sorted(q["name"] for q in listed["queues"]) == sorted(QUEUES)

        document = {"workspace": "acme", "document_id": "faq", "title": "FAQ", "text": "Hi"}
        added = await client.post("/documents", json=document)
        assert added.status_code == 202
        event = {"workspace": "nobody", "type": "agent.run.completed"}
        assert (await client.post("/events", json=event)).status_code == 404
        shown = await client.get(f"/admin/queues/api/queues/ingest/jobs/{added.json()['job_id']}",
                                 headers=auth)
        assert shown.json()["state"] == "waiting"

    await run_due(platform)
    assert [c.payload["document"] for c in log.calls("knowledge")] == ["acme/faq"]


@pytest.fixture
def calls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where workers built by `start` record calls; sys.path restored after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # `corral worker` adds the cwd to it
    monkeypatch.setenv("AGENT_PLATFORM_CALLS", str(tmp_path / "calls.db"))
    return tmp_path / "calls.db"


def test_load_workers_calls_start_which_stores_schedules(store_url: str, calls_file: Path) -> None:
    found = load_workers("examples.agent_platform.worker:start", url=store_url)
    assert [w.queue_name for w in found] == list(QUEUES)
    assert all(w.url == store_url for w in found)
    assert {w.queue_name: w.concurrency for w in found}["email"] == 10

    async def schedules() -> dict[str, list[str]]:
        async with Producer(store_url) as producer:
            return {name: [s.id for s in await producer.queue(name).schedules()]
                    for name in ("rollup", "credits")}

    stored = asyncio.run(schedules())
    assert stored == {"rollup": ["nightly-rollup"], "credits": ["monthly-credits"]}


def test_corral_worker_runs_start(store_url: str, calls_file: Path) -> None:
    async def submit() -> str:
        async with Producer(store_url) as producer:
            return (await producer.submit_document("acme", "pricing", "Pricing", "Plans")).id

    job_id = asyncio.run(submit())
    target = "examples.agent_platform.worker:start"
    result = CliRunner().invoke(cli, ["worker", target, "--burst", "--url", store_url])
    assert result.exit_code == 0, result.output

    async def state() -> str | None:
        async with Producer(store_url) as producer:
            job = await producer.queue("ingest").get_job(job_id)
            return None if job is None else job.state

    assert asyncio.run(state()) == "completed"
    assert [c.payload["document"] for c in CallLog(calls_file).calls("knowledge")] == [
        "acme/pricing"
    ]
