"""Producers, processors, workers and schedules of the scheduled-messages app.

Everything runs in one queue, `scheduled-messages`:

| job             | added by                                     | does                          |
|-----------------|----------------------------------------------|-------------------------------|
| `processDue`    | the schedule `process-due`, every minute     | one `sendMessage` per due row |
| `sendMessage`   | `processDue` (id `send:<message id>`)        | sends it, marks it sent       |
| `healthCheck`   | the schedule `health-check`, every 5 minutes | provider status, overdue rows |
| `availabilityCheck` | `check_availability` for more than 10 leads | checks each lead by id     |
| `crmSync`       | `request_crm_sync` (debounced 30 s per lead) | mirrors the lead in the CRM   |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import corral
from corral.clock import Clock
from corral.schedules import Schedule
from examples.scheduled_messages.services import Services, build_services
from examples.standins import CallLog

__all__ = [
    "QUEUE", "Processors", "check_availability", "check_leads", "request_crm_sync", "run_story",
    "schedule_message", "schedule_or_run_inline", "setup", "sync_lead", "workers",
]

log = logging.getLogger(__name__)

QUEUE = "scheduled-messages"
INLINE_LIMIT = 10
"""Availability checks of up to this many leads run in the request; more become a job."""
SYNC_DEBOUNCE = timedelta(seconds=30)
"""A lead's CRM sync runs this long after the last change that asked for it."""
OVERDUE_AFTER = timedelta(minutes=5)
"""The health check flags messages still pending this long after they were due."""

T = TypeVar("T")


# -- producers: what the app calls -------------------------------------------------------

async def schedule_or_run_inline(
    queue: corral.Queue, name: str, data: Any, inline: Callable[[], Awaitable[T]],
    **options: Any,
) -> corral.Job | T:
    """Add a job; when the store is unreachable, do the work now, in this process, instead.

    `add` fails fast with `BackendUnavailableError` (at once for 2 s after a failure), so a
    request that falls back pays the connect timeout once, not on every call.
    """
    try:
        return await queue.add(name, data, **options)
    except corral.BackendUnavailableError as exc:
        result = await inline()
        log.warning("job store unreachable (%s): ran %s inline", exc, name)
        return result


def schedule_message(
    services: Services, message_id: str, lead_id: str, text: str, send_at: datetime
) -> None:
    """Plan a message: the every-minute job sends it once `send_at` has come."""
    services.outbox.schedule(message_id, lead_id, text, send_at)


async def check_availability(
    queue: corral.Queue, services: Services, lead_ids: Sequence[str]
) -> dict[str, bool] | corral.Job:
    """Which leads are on WhatsApp: up to 10 answered now, more in a job of their ids only."""
    ids = list(lead_ids)
    if len(ids) <= INLINE_LIMIT:
        return await check_leads(services, ids)
    return await schedule_or_run_inline(
        queue, "availabilityCheck", {"lead_ids": ids}, lambda: check_leads(services, ids)
    )


async def request_crm_sync(
    queue: corral.Queue, services: Services, lead_id: str
) -> corral.Job | dict[str, Any]:
    """Mirror the lead in the CRM 30 s after the last request for it (one sync per burst)."""
    return await schedule_or_run_inline(
        queue, "crmSync", {"lead_id": lead_id}, lambda: sync_lead(services, lead_id),
        delay=SYNC_DEBOUNCE, dedupe=corral.Dedupe(f"crm:{lead_id}", replace=True),
    )


# -- the work itself, shared by the processors and the inline path -----------------------

async def check_leads(
    services: Services, lead_ids: Sequence[str], job: corral.Job | None = None
) -> dict[str, bool]:
    """Ask the provider about each lead's phone and store the answers."""
    answers: dict[str, bool] = {}
    for lead_id in lead_ids:
        lead = services.outbox.lead(lead_id)
        answers[lead_id] = services.whatsapp.is_on_whatsapp(lead.phone)
        services.outbox.set_on_whatsapp(lead_id, answers[lead_id])
        if job is not None:
            await job.update_progress({"checked": len(answers), "of": len(lead_ids)})
    return answers


async def sync_lead(services: Services, lead_id: str) -> dict[str, Any]:
    """Send the lead's messaging summary to the CRM."""
    count, last = services.outbox.sent_to(lead_id)
    fields: dict[str, Any] = {"messages_sent": count, "last_message_at": last}
    services.crm.sync(lead_id, fields)
    return fields


# -- processors --------------------------------------------------------------------------

class Processors:
    """The queue's processors, over the app's services and store."""

    def __init__(self, url: str, services: Services) -> None:
        self.url = url
        self.services = services

    def queue(self) -> corral.Queue:
        """A Queue for the follow-up jobs a processor adds (use with `async with`)."""
        return corral.Queue(QUEUE, url=self.url, clock=self.services.clock)

    def by_name(self) -> dict[str, Any]:
        """The processor of each job name."""
        return {
            "processDue": self.process_due, "sendMessage": self.send_message,
            "healthCheck": self.health_check, "availabilityCheck": self.availability_check,
            "crmSync": self.crm_sync,
        }

    async def process_due(self, job: corral.Job) -> dict[str, int]:
        """Queue one `sendMessage` per due message; the job id makes a repeat harmless."""
        due = self.services.outbox.due(self.services.clock.now())
        async with self.queue() as queue:
            jobs = await queue.add_bulk(
                corral.JobSpec("sendMessage", {"message_id": message_id},
                               job_id=f"send:{message_id}")
                for message_id in due
            )
        # A message still retrying is due again, and its job is returned as a duplicate.
        return {"due": len(due), "queued": sum(not job.duplicate for job in jobs)}

    async def send_message(self, job: corral.Job) -> dict[str, Any]:
        """Send one scheduled message, unless an earlier delivery of this job already did."""
        outbox = self.services.outbox
        message = outbox.message(job.data["message_id"])
        if message.status != "pending":
            return {"skipped": message.status}
        lead = outbox.lead(message.lead_id)
        provider_id = self.services.whatsapp.send(lead.phone, message.text)
        outbox.mark_sent(message.id, provider_id, self.services.clock.now())
        async with self.queue() as queue:
            await request_crm_sync(queue, self.services, lead.id)
        return {"provider_id": provider_id}

    async def health_check(self, job: corral.Job) -> dict[str, Any]:
        """Probe the provider and look for messages the minute job has left behind."""
        status = self.services.whatsapp.status()
        overdue = self.services.outbox.overdue(self.services.clock.now() - OVERDUE_AFTER)
        if status != "ok" or overdue:
            log.warning("health check: provider %s, %d messages overdue", status, overdue)
        return {"whatsapp": status, "overdue": overdue}

    async def availability_check(self, job: corral.Job) -> dict[str, int]:
        """The bulk availability check: the job carries only the leads' ids."""
        answers = await check_leads(self.services, job.data["lead_ids"], job)
        return {"checked": len(answers), "on_whatsapp": sum(answers.values())}

    async def crm_sync(self, job: corral.Job) -> dict[str, Any]:
        """Mirror one lead in the CRM."""
        return await sync_lead(self.services, job.data["lead_id"])

    def on_failed(self, job: corral.Job, exc: BaseException, will_retry: bool) -> None:
        """A message whose attempts are used up is marked failed, so it is not sent later."""
        if job.name == "sendMessage" and not will_retry:
            self.services.outbox.mark_failed(job.data["message_id"])


# -- running it --------------------------------------------------------------------------

def workers(url: str, clock: Clock, log: CallLog, **options: Any) -> list[corral.Worker]:
    """The app's one worker (`options` go to `corral.Worker`, e.g. `lock_duration`)."""
    processors = Processors(url, build_services(log, clock))
    options.setdefault("concurrency", 5)
    worker = corral.Worker(QUEUE, processors.by_name(), url=url, clock=clock, **options)
    worker.on("failed", processors.on_failed)
    return [worker]


async def setup(url: str, clock: Clock) -> list[Schedule]:
    """Configure the queue and upsert its two schedules; running it again changes nothing."""
    async with corral.Queue(QUEUE, url=url, clock=clock) as queue:
        await queue.configure(defaults=corral.JobOptions(
            attempts=3, backoff=corral.Backoff.exponential(30),
            remove_on_complete=corral.Keep(count=1000, age=86400),
        ))
        await queue.schedule("process-due", cron="* * * * *", job_name="processDue")
        await queue.schedule("health-check", every=timedelta(minutes=5), job_name="healthCheck")
        return await queue.schedules()


LEADS = [
    (f"lead-{n:02d}", name, f"+4915100000{n:02d}")
    for n, name in enumerate(
        ["Ann", "Ben", "Cem", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lea"],
        start=1,
    )
]


async def run_story(url: str, clock: Clock, log: CallLog) -> None:
    """Plan a few messages over the next minutes and ask about twelve leads (a job)."""
    services = build_services(log, clock)
    for lead_id, name, phone in LEADS:
        services.outbox.add_lead(lead_id, name, phone)
    now = clock.now()
    for minutes, (lead_id, name, _) in zip([0, 1, 2, 2, 4, 7], LEADS, strict=False):
        schedule_message(services, f"story-{lead_id}", lead_id, f"Hi {name}, your demo is ready",
                         now + timedelta(minutes=minutes, seconds=30))
    async with corral.Queue(QUEUE, url=url, clock=clock) as queue:
        await check_availability(queue, services, [lead_id for lead_id, _, _ in LEADS])
