"""The lead funnel on corral: what the web app calls, the processors, and the workers.

One queue, `leadFunnel`, holds every job. Each job's `data` names only the lead or the
lesson; the processor reads the current facts from the database when it runs.

Cancelling is done by tag: the email chain of lead L carries `chain:L`, the reminders
of lesson X carry `lesson:X`, and `queue.remove_tagged` drops whatever of them is still
waiting or delayed. A job that a worker already took is not removed, so every processor
also checks the database first and skips when the lead activated the bot or the lesson
was confirmed or moved. Together: nothing is sent after the fact, and no key is kept by
hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import corral
from corral.clock import Clock
from examples.standins import CallLog

from .services import Services, services
from .store import Database, Lead

__all__ = [
    "MANAGERS_CHAT",
    "POLICY",
    "QUEUE",
    "Funnel",
    "run_story",
    "setup",
    "workers",
]

QUEUE = "leadFunnel"
MANAGERS_CHAT = "managers"
SITE = "https://school.example"

EMAIL1_AFTER = timedelta(minutes=30)  # after sign-up
EMAIL2_AFTER = timedelta(hours=24)  # after email1
CALL_ALERT_AFTER = timedelta(hours=24)  # after email2
REMINDERS = {"reminder24h": timedelta(hours=24), "reminder5h": timedelta(hours=5)}

POLICY = corral.JobOptions(
    attempts=4,  # the first try and three retries, 1 min, 5 min and 15 min after a failure
    backoff=corral.Backoff.custom([60, 300, 900]),
    remove_on_complete=100,
    remove_on_fail=200,
)
"""Every job's options unless `add` says otherwise: stored with the queue by `setup`."""

Processor = Callable[[corral.Job], Awaitable[str]]


async def setup(queue: corral.Queue) -> None:
    """Store the funnel's retry and retention policy with the queue (once, at deploy)."""
    await queue.configure(defaults=POLICY)


def chain_tag(lead: str) -> str:
    """The tag of every job of the lead's email chain."""
    return f"chain:{lead}"


def lesson_tag(lesson: str) -> str:
    """The tag of every reminder of the lesson."""
    return f"lesson:{lesson}"


class Funnel:
    """The producers the web app calls and the processors the worker runs."""

    def __init__(self, queue: corral.Queue, db: Database, services: Services) -> None:
        self.queue = queue
        self.db = db
        self.services = services

    # -- what the web app calls --------------------------------------------------------

    async def sign_up(self, lead: str, email: str, name: str) -> corral.Job:
        """A lead signed up: email1 goes out in 30 minutes unless they start the bot."""
        self.db.add_lead(lead, email, name)
        return await self._chain_step("email1", lead, EMAIL1_AFTER)

    async def activate_bot(self, lead: str) -> int:
        """The lead started the bot: cancel the rest of the chain; returns jobs removed."""
        self.db.activate_bot(lead)
        return await self.queue.remove_tagged(chain_tag(lead))

    async def book_lesson(self, lesson: str, lead: str, at: datetime) -> list[corral.Job]:
        """A lesson was booked: remind 24 h and 5 h before (those still ahead)."""
        self.db.book(lesson, lead, at)
        return await self._schedule_reminders(lesson, at)

    async def confirm(self, lesson: str) -> int:
        """The lead confirmed: no more reminders; returns jobs removed."""
        self.db.confirm(lesson)
        return await self.queue.remove_tagged(lesson_tag(lesson))

    async def reschedule(self, lesson: str, at: datetime) -> list[corral.Job]:
        """The lesson moved: drop its pending reminders and plan the new ones."""
        booked = self.db.lesson(lesson)
        if booked is None:
            raise KeyError(lesson)
        self.db.book(lesson, booked.lead, at)
        await self.queue.remove_tagged(lesson_tag(lesson))
        return await self._schedule_reminders(lesson, at)

    async def _chain_step(
        self, name: str, lead: str, after: timedelta, queue: corral.Queue | None = None
    ) -> corral.Job:
        # One job id per lead and step: a retried processor adds its successor only once.
        return await (queue or self.queue).add(
            name, {"lead": lead}, delay=after, job_id=f"{name}:{lead}", tags=[chain_tag(lead)]
        )

    async def _schedule_reminders(self, lesson: str, at: datetime) -> list[corral.Job]:
        now = self.queue.clock.now()
        jobs = []
        for name, before in REMINDERS.items():
            if at - before <= now:
                continue  # under 24 h (or 5 h) away: that reminder's moment has passed
            jobs.append(await self.queue.add(
                name, {"lesson": lesson, "at": at.isoformat()}, run_at=at - before,
                # The lesson's time is part of the id, so a moved lesson gets new reminders.
                job_id=f"{name}:{lesson}:{at:%Y%m%dT%H%M}", tags=[lesson_tag(lesson)],
            ))
        return jobs

    # -- what the worker runs ------------------------------------------------------------

    def processors(self) -> dict[str, Processor]:
        """The processor of each job name."""
        return {
            "email1": self.email1,
            "email2": self.email2,
            "callAlert": self.call_alert,
            "reminder24h": self.reminder,
            "reminder5h": self.reminder,
        }

    def worker(self, **options: Any) -> corral.Worker:
        """A worker for the funnel's queue, on its store and clock (`options`: Worker's)."""
        options.setdefault("concurrency", 5)
        return corral.Worker(
            QUEUE, self.processors(), url=self.queue.url, clock=self.queue.clock, **options
        )

    def _lead_to_nudge(self, job: corral.Job) -> Lead | None:
        lead = self.db.lead(job.data["lead"])
        return None if lead is None or lead.bot_active else lead

    async def email1(self, job: corral.Job) -> str:
        """The first nudge; then email2 in 24 h."""
        lead = self._lead_to_nudge(job)
        if lead is None:
            return "skipped: bot active"
        self.services.mailer.send(lead.email, "email1", {"name": lead.name})
        await self._chain_step("email2", lead.id, EMAIL2_AFTER, job.queue)
        return "sent"

    async def email2(self, job: corral.Job) -> str:
        """The second nudge; then an alert to call in 24 h."""
        lead = self._lead_to_nudge(job)
        if lead is None:
            return "skipped: bot active"
        self.services.mailer.send(lead.email, "email2", {"name": lead.name})
        await self._chain_step("callAlert", lead.id, CALL_ALERT_AFTER, job.queue)
        return "sent"

    async def call_alert(self, job: corral.Job) -> str:
        """Two emails did not work: mark the lead for a call and tell the managers."""
        lead = self._lead_to_nudge(job)
        if lead is None:
            return "skipped: bot active"
        self.services.crm.set_status(lead.id, "CALL_NEEDED")
        self.services.chat.message(
            MANAGERS_CHAT, f"Call {lead.name} <{lead.email}>: no bot after two emails"
        )
        return "alerted"

    async def reminder(self, job: corral.Job) -> str:
        """Remind the lead of the lesson, with links to confirm or reschedule."""
        lesson = self.db.lesson(job.data["lesson"])
        if lesson is None or lesson.confirmed or lesson.at.isoformat() != job.data["at"]:
            return "skipped: confirmed or moved"
        lead = self.db.lead(lesson.lead)
        if lead is None:
            return "skipped: no such lead"
        self.services.mailer.send(lead.email, job.name, {
            "name": lead.name,
            "at": job.data["at"],
            "confirm": f"{SITE}/lessons/{lesson.id}/confirm",
            "reschedule": f"{SITE}/lessons/{lesson.id}/reschedule",
        })
        return "sent"


def workers(url: str, clock: Clock, log: CallLog, **options: Any) -> list[corral.Worker]:
    """The funnel's workers on the store at `url`, with the stand-in services over `log`.

    The app's tables live in the call log's file, to keep the demo to one file. The
    processors add follow-up jobs through `job.queue` (the worker's connection), so the
    Queue here is never opened.
    """
    funnel = Funnel(corral.Queue(QUEUE, url=url, clock=clock), Database(log.path), services(log))
    return [funnel.worker(**options)]


async def run_story(url: str, clock: Clock, log: CallLog) -> None:
    """What the web app does in the story, all at once; the workers play out the rest.

    Ann signs up and never starts the bot: email1, email2, then a call alert. Ben signs
    up and starts the bot at once: nothing is sent. Ann books a lesson 30 h ahead (both
    reminders), Ben one 10 h ahead (only the 5 h one); Cleo books one for tomorrow and
    moves it a day later (the reminders move with it).
    """
    now = clock.now()
    async with corral.Queue(QUEUE, url=url, clock=clock) as queue:
        with closing(Database(log.path)) as db:
            funnel = Funnel(queue, db, services(log))
            await funnel.sign_up("ann", "ann@example.com", "Ann")
            await funnel.sign_up("ben", "ben@example.com", "Ben")
            await funnel.activate_bot("ben")
            await funnel.sign_up("cleo", "cleo@example.com", "Cleo")
            await funnel.activate_bot("cleo")
            await funnel.book_lesson("lesson-ann", "ann", now + timedelta(hours=30))
            await funnel.book_lesson("lesson-ben", "ben", now + timedelta(hours=10))
            await funnel.book_lesson("lesson-cleo", "cleo", now + timedelta(hours=30))
            await funnel.reschedule("lesson-cleo", now + timedelta(hours=54))
