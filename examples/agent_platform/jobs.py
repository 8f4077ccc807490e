"""The platform's five queues: their settings and schedules, the processors, the producer.

| queue      | job              | retries                                   | worker            |
|------------|------------------|-------------------------------------------|-------------------|
| `ingest`   | `index-document` | 3 retries, 2 s, 8 s, 32 s after failures  | concurrency 4     |
| `webhooks` | `deliver`        | 5 attempts, 5 s, 10 s, 20 s, 40 s apart   | concurrency 10    |
| `rollup`   | `nightly-rollup` | cron `0 2 * * *` UTC                      | concurrency 1     |
| `credits`  | `monthly-credits`| cron `5 0 1 * *` UTC (the 1st, 00:05)     | concurrency 1     |
| `email`    | `send`           | 3 attempts, 10 s apart                    | concurrency 10    |
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

import corral
from corral.clock import Clock
from examples.agent_platform.services import (
    ServiceError,
    Services,
    build_services,
    default_call_log,
)
from examples.standins import CallLog

__all__ = [
    "DEFAULTS",
    "QUEUES",
    "WORKSPACES",
    "Processors",
    "Producer",
    "Workspace",
    "setup",
    "workers",
]

QUEUES: Final = ("ingest", "webhooks", "rollup", "credits", "email")

# Stored with each queue by `setup`, so every producer (this code, the HTTP API, `corral add`)
# gets the same retries without repeating them on each `add`.
DEFAULTS: Final = {
    # The embedding API sheds load with 429s: the first try and three retries.
    "ingest": corral.JobOptions(attempts=4, backoff=corral.Backoff.custom([2, 8, 32])),
    # Customers' endpoints go down for minutes at a time.
    "webhooks": corral.JobOptions(attempts=5, backoff=corral.Backoff.exponential(5)),
    "rollup": corral.JobOptions(attempts=3, backoff=corral.Backoff.exponential(60)),
    "credits": corral.JobOptions(attempts=3, backoff=corral.Backoff.exponential(60)),
    # Greylisting mail servers ask us to come back a little later.
    "email": corral.JobOptions(attempts=3, backoff=corral.Backoff.fixed(10)),
}


@dataclass(frozen=True, slots=True)
class Workspace:
    """A customer of the platform (a real one lives in the platform's database)."""

    owner: str
    webhook_url: str
    monthly_credits: int


WORKSPACES: Final = {
    "acme": Workspace("ops@acme.test", "https://hooks.acme.test/agents", 10_000),
    "globex": Workspace("ops@globex.test", "https://hooks.globex.test/agents", 2_500),
}


async def setup(url: str | None = None, clock: Clock | None = None) -> None:
    """Store each queue's settings and upsert the two schedules.

    Safe to run in every process at every start: an identical upsert changes nothing, and a
    tick fires once however many workers see it.
    """
    async with Producer(url, clock) as producer:
        for name, defaults in DEFAULTS.items():
            await producer.queue(name).configure(defaults=defaults)
        await producer.queue("rollup").schedule("nightly-rollup", cron="0 2 * * *", tz="UTC")
        await producer.queue("credits").schedule("monthly-credits", cron="5 0 1 * *", tz="UTC")


def workers(
    url: str | None = None, clock: Clock | None = None, log: CallLog | None = None,
    **options: Any,
) -> list[corral.Worker]:
    """One worker per queue, over the services `build_services` makes (calls go to `log`);
    `options` go to every Worker (e.g. lock_duration)."""
    jobs = Processors(build_services(log or default_call_log(clock)), url, clock)

    def worker(queue: str, processors: Any, concurrency: int = 1) -> corral.Worker:
        return corral.Worker(
            queue, processors, url=url, clock=clock, concurrency=concurrency, **options
        )

    return [
        worker("ingest", {"index-document": jobs.index_document}, concurrency=4),
        worker("webhooks", {"deliver": jobs.deliver_webhook}, concurrency=10),
        worker("rollup", {"nightly-rollup": jobs.nightly_rollup}),
        worker("credits", {"monthly-credits": jobs.grant_monthly_credits}),
        worker("email", {"send": jobs.send_email}, concurrency=10),
    ]


class Producer:
    """Adds the platform's jobs: the web app keeps one open, a processor opens one per job.

    Each queue connects to the store on first use, so a Producer that only sends an email
    opens only the `email` queue.
    """

    def __init__(self, url: str | None = None, clock: Clock | None = None) -> None:
        self._queues = {name: corral.Queue(name, url=url, clock=clock) for name in QUEUES}

    def queue(self, name: str) -> corral.Queue:
        """The queue `name` (one of QUEUES)."""
        return self._queues[name]

    async def close(self) -> None:
        """Release the store connections."""
        for queue in self._queues.values():
            await queue.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def submit_document(
        self, workspace: str, document_id: str, title: str, text: str
    ) -> corral.Job:
        """Queue a document for the knowledge base."""
        data = {"workspace": workspace, "document_id": document_id, "title": title, "text": text}
        return await self.queue("ingest").add("index-document", data, tags=[workspace])

    async def publish_event(
        self, workspace: str, event_type: str, data: dict[str, Any], event_id: str | None = None
    ) -> corral.Job:
        """Queue the delivery of an event to the workspace's webhook; one job per event id."""
        event = {"id": event_id or uuid.uuid4().hex, "type": event_type, "data": data}
        return await self.queue("webhooks").add(
            "deliver", {"workspace": workspace, "event": event},
            job_id=f"{workspace}:{event['id']}", tags=[workspace],
        )

    async def send_email(
        self, to: str, subject: str, body: str, key: str | None = None
    ) -> corral.Job:
        """Queue an email; with `key`, at most one email per key while its job is stored."""
        return await self.queue("email").add(
            "send", {"to": to, "subject": subject, "body": body}, job_id=key,
        )


class Processors:
    """The platform's processors. Delivery is at least once, so each is safe to run again:
    follow-up jobs carry ids derived from the job that adds them."""

    def __init__(self, services: Services, url: str | None, clock: Clock | None) -> None:
        self.services = services
        self.url = url  # where follow-up jobs go: the workers' own store
        self.clock = clock

    async def index_document(self, job: corral.Job) -> dict[str, int]:
        """Chunk and embed a document, then tell the workspace (webhook and email)."""
        doc = job.data
        chunks = [doc["text"][i:i + 1000] for i in range(0, len(doc["text"]), 1000)]
        vectors = await self.services.knowledge.index(doc["workspace"], doc["document_id"], chunks)
        owner = WORKSPACES[doc["workspace"]].owner
        async with Producer(self.url, self.clock) as producer:
            await producer.publish_event(
                doc["workspace"], "document.ready",
                {"document_id": doc["document_id"], "chunks": len(chunks)},
                event_id=f"document.ready:{job.id}",
            )
            await producer.send_email(
                owner, f"{doc['title']} is ready", "Your agents can now search it.",
                key=f"document.ready:{job.id}",
            )
        return {"chunks": len(chunks), "vectors": vectors}

    async def deliver_webhook(self, job: corral.Job) -> dict[str, int]:
        """POST the event; a 5xx, 408 or 429 is retried, any other refusal is final."""
        endpoint = WORKSPACES[job.data["workspace"]].webhook_url
        status = await self.services.webhooks.post(endpoint, job.data["event"])
        if status >= 500 or status in (408, 429):
            raise ServiceError(f"{endpoint} answered {status}")
        if status >= 300:
            raise corral.UnrecoverableError(f"{endpoint} refused the event ({status})")
        return {"status": status}

    async def nightly_rollup(self, job: corral.Job) -> dict[str, Any]:
        """Roll up the UTC day that ended at midnight before this tick."""
        day = (tick_time(job) - timedelta(days=1)).date()
        return await self.services.analytics.rollup(day)

    async def grant_monthly_credits(self, job: corral.Job) -> dict[str, int]:
        """Grant every workspace its credits for the tick's month, and tell its owner."""
        month = tick_time(job).strftime("%Y-%m")
        async with Producer(self.url, self.clock) as producer:
            for name, workspace in WORKSPACES.items():
                key = f"credits:{month}:{name}"  # a retry of this job grants nothing twice
                await self.services.billing.grant_credits(name, workspace.monthly_credits, key)
                await producer.send_email(
                    workspace.owner, f"{workspace.monthly_credits:,} credits for {month}",
                    "Your monthly credits are in.", key=key,
                )
        return {name: workspace.monthly_credits for name, workspace in WORKSPACES.items()}

    async def send_email(self, job: corral.Job) -> dict[str, str]:
        """Hand the email to the provider."""
        data = job.data
        return {"message_id": await self.services.mailer.send(data["to"], data["subject"],
                                                              data["body"])}


def tick_time(job: corral.Job) -> datetime:
    """The instant a schedule's tick was due, which a job's id `schedule:<id>:<epoch ms>`
    records (`created_at` is later when a worker fires the tick late)."""
    return datetime.fromtimestamp(int(job.id.rsplit(":", 1)[1]) / 1000, UTC)
