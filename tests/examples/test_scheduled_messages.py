"""The scheduled-messages example, walked through on the virtual clock, on every store."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from examples.scheduled_messages import (
    QUEUE,
    Services,
    build_services,
    check_availability,
    request_crm_sync,
    run_story,
    schedule_message,
    setup,
    workers,
)
from examples.scheduled_messages.jobs import LEADS
from examples.scheduled_messages.web import create_app
from examples.standins import CallLog

import corral
from corral.testing import VirtualClock
from tests.conftest import START


@pytest.fixture
def log(tmp_path: Path, clock: VirtualClock) -> Iterator[CallLog]:
    call_log = CallLog(tmp_path / "calls.db", clock)
    yield call_log
    call_log.close()


@pytest.fixture
def services(log: CallLog, clock: VirtualClock) -> Services:
    services = build_services(log, clock)
    for lead_id, name, phone in LEADS:
        services.outbox.add_lead(lead_id, name, phone)
    return services


@pytest.fixture
async def queue(store_url: str, clock: VirtualClock) -> AsyncIterator[corral.Queue]:
    async with corral.Queue(QUEUE, url=store_url, clock=clock) as queue:
        yield queue


@pytest.fixture
async def worker(store_url: str, clock: VirtualClock, log: CallLog) -> AsyncIterator[corral.Worker]:
    [worker] = workers(store_url, clock, log)
    yield worker
    await worker.close()


def minutes(log: CallLog, service: str, action: str) -> list[float]:
    """When each call of `service.action` happened, in minutes after the test's start."""
    return [(call.at - START).total_seconds() / 60 for call in log.calls(service, action)]


async def test_due_messages_go_out_each_minute_with_a_health_check_every_five(
    store_url: str, clock: VirtualClock, log: CallLog, services: Services,
    worker: corral.Worker, queue: corral.Queue,
) -> None:
    first = await setup(store_url, clock)
    assert await setup(store_url, clock) == first  # idempotent: nothing moved
    assert [(s.id, s.cron, s.every) for s in first] == [
        ("health-check", None, timedelta(minutes=5)), ("process-due", "* * * * *", None),
    ]
    at = START + timedelta(seconds=30)
    schedule_message(services, "m1", "lead-01", "Hi Ann", at)
    schedule_message(services, "m2", "lead-02", "Hi Ben", at + timedelta(minutes=2))
    schedule_message(services, "m3", "lead-02", "Ben, one more thing", at + timedelta(minutes=2))
    schedule_message(services, "ghost", "lead-99", "to a deleted lead", at)

    for _ in range(21):  # 12:00 to 12:10, a burst every 30 s
        await worker.run(burst=True)
        await clock.advance(timedelta(seconds=30))

    # Each message goes out at the first minute tick at or after its time.
    sends = log.calls("whatsapp", "send")
    assert [(c.payload["to"], c.payload["text"]) for c in sends] == [
        ("+491510000001", "Hi Ann"), ("+491510000002", "Hi Ben"),
        ("+491510000002", "Ben, one more thing"),
    ]
    assert minutes(log, "whatsapp", "send") == [1, 3, 3]
    # The CRM hears about each lead once, 30 s after its last message.
    assert [(c.payload["lead_id"], c.payload["messages_sent"]) for c in log.calls("crm")] == [
        ("lead-01", 1), ("lead-02", 2),
    ]
    assert minutes(log, "crm", "sync") == [1.5, 3.5]
    # The message to a deleted lead fails three times (30 s, 60 s apart) and is marked failed.
    assert services.outbox.statuses() == {"m1": "sent", "m2": "sent", "m3": "sent",
                                          "ghost": "failed"}
    ghost = await queue.get_job("send:ghost")
    assert ghost is not None
    assert ghost.state == corral.JobState.FAILED
    assert ghost.attempts_made == 3
    # The health check ran when its schedule was created and every five minutes since.
    assert minutes(log, "whatsapp", "status") == [0, 5, 10]
    checks = await queue.jobs("completed", limit=100)
    assert {j.return_value["overdue"] for j in checks if j.name == "healthCheck"} == {0}
    ticks = [j for j in checks if j.name == "processDue"]
    assert len(ticks) == 10  # 12:01 ... 12:10
    assert sum(j.return_value["queued"] for j in ticks) == 4  # one job per message


async def test_the_health_check_reports_messages_left_behind(
    store_url: str, clock: VirtualClock, services: Services, worker: corral.Worker,
    queue: corral.Queue, caplog: pytest.LogCaptureFixture,
) -> None:
    await setup(store_url, clock)
    await queue.unschedule("process-due")  # nobody sends: the messages pile up
    schedule_message(services, "late", "lead-01", "Hi", START)

    await worker.run(burst=True)
    await clock.advance(timedelta(minutes=5, seconds=1))
    await worker.run(burst=True)

    checks = [j for j in await queue.jobs("completed") if j.name == "healthCheck"]
    assert sorted(j.return_value["overdue"] for j in checks) == [0, 1]
    assert "1 messages overdue" in caplog.text


async def test_availability_is_answered_inline_for_ten_leads_and_queued_beyond(
    store_url: str, clock: VirtualClock, log: CallLog, services: Services,
    worker: corral.Worker, queue: corral.Queue,
) -> None:
    few = [lead_id for lead_id, _, _ in LEADS[:10]]
    answers = await check_availability(queue, services, few)

    assert answers == {lead_id: lead_id != "lead-10" for lead_id in few}  # +49...10 is not
    assert (await queue.counts())["waiting"] == 0
    assert services.outbox.lead("lead-10").on_whatsapp is False

    every = [lead_id for lead_id, _, _ in LEADS]
    job = await check_availability(queue, services, every)
    assert isinstance(job, corral.Job)
    assert job.data == {"lead_ids": every}  # ids only: the worker reads the rest
    assert len(log.calls("whatsapp", "check")) == 10

    await worker.run(burst=True)
    await job.refresh()
    assert job.return_value == {"checked": 12, "on_whatsapp": 11}
    assert job.progress == {"checked": 12, "of": 12}
    assert services.outbox.lead("lead-12").on_whatsapp is True


async def test_run_story_adds_the_live_demo(
    store_url: str, clock: VirtualClock, log: CallLog, worker: corral.Worker,
) -> None:
    await setup(store_url, clock)
    await run_story(store_url, clock, log)

    for _ in range(9):
        await worker.run(burst=True)
        await clock.advance(timedelta(minutes=1))

    assert len(log.calls("whatsapp", "check")) == 12
    assert minutes(log, "whatsapp", "send") == [1, 2, 3, 3, 5, 8]


# -- HTTP --------------------------------------------------------------------------------

@pytest.fixture
async def client(
    store_url: str, clock: VirtualClock, log: CallLog, services: Services
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store_url, log, clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


async def test_the_http_surface_is_corrals_api_plus_initialize_schedules(
    client: httpx.AsyncClient, worker: corral.Worker,
) -> None:
    response = await client.post("/schedules/initialize")
    assert response.status_code == 200
    assert [s["id"] for s in response.json()["schedules"]] == ["health-check", "process-due"]
    assert (await client.post("/schedules/initialize")).json() == response.json()

    health = await client.get("/queues/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    added = await client.post(f"/queues/api/queues/{QUEUE}/jobs",
                              json={"name": "crmSync", "data": {"lead_id": "lead-03"}})
    assert added.status_code == 201

    few = await client.post("/leads/availability", json={"lead_ids": ["lead-01", "lead-10"]})
    assert few.status_code == 200
    assert few.json() == {"on_whatsapp": {"lead-01": True, "lead-10": False}}
    many = await client.post("/leads/availability",
                             json={"lead_ids": [lead_id for lead_id, _, _ in LEADS]})
    assert many.status_code == 202

    stats = (await client.get(f"/queues/api/queues/{QUEUE}")).json()
    assert stats["counts"]["waiting"] == 2  # the crmSync and the availability check
    assert {s["id"] for s in stats["schedules"]} == {"health-check", "process-due"}

    assert await worker.run(burst=True) == 3  # and the health check's first tick
    job = (await client.get(f"/queues/api/queues/{QUEUE}/jobs/{many.json()['job_id']}")).json()
    assert job["state"] == "completed"
    metrics = await client.get("/queues/metrics")
    assert metrics.status_code == 200
    assert QUEUE in metrics.text


# -- the store is down -------------------------------------------------------------------

@pytest.fixture
def unreachable_url() -> str:
    """A Redis URL on a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0?connect_timeout=0.5"


async def test_an_unreachable_store_runs_the_work_inline_and_fails_fast(
    unreachable_url: str, clock: VirtualClock, log: CallLog, services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with corral.Queue(QUEUE, url=unreachable_url, clock=clock) as queue:
        every = [lead_id for lead_id, _, _ in LEADS]
        answers = await check_availability(queue, services, every)  # 12 leads: would be a job

        started = time.monotonic()
        synced = await request_crm_sync(queue, services, "lead-01")
        second_call = time.monotonic() - started

    assert answers == {lead_id: lead_id != "lead-10" for lead_id in every}
    assert synced == {"messages_sent": 0, "last_message_at": None}
    assert len(log.calls("whatsapp", "check")) == 12
    assert [c.payload["lead_id"] for c in log.calls("crm", "sync")] == ["lead-01"]
    assert second_call < 0.1  # fails fast: no second wait for the connect timeout
    inline = [r.getMessage() for r in caplog.records if "inline" in r.getMessage()]
    assert len(inline) == 2
    assert "ran availabilityCheck inline" in inline[0]
    assert "ran crmSync inline" in inline[1]
