"""Ticket auto-close on corral: what the help desk calls, the processor, and the workers.

One queue, `tickets`, holds one `autoClose` job per ticket at most: its job id is
`autoClose:<ticket>`, so asking twice keeps the first job. The job is also tagged
`ticket:<ticket>`; cancelling is `queue.remove_tagged`, which drops it while it is still
pending and leaves a job that a worker already took, or one that finished, alone. The
processor therefore reads the ticket first and closes it only when it is still waiting
for the customer and may be closed automatically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import timedelta
from typing import Any

import corral
from corral.clock import Clock
from examples.standins import CallLog

from .services import Services, services
from .store import CLOSE_REQUESTED, CLOSED, OPEN, Database

__all__ = ["POLICY", "QUEUE", "Tickets", "run_story", "setup", "workers"]

QUEUE = "tickets"

POLICY = corral.JobOptions(
    attempts=3,
    backoff=corral.Backoff.custom([60, 300, 900]),  # 1 min, 5 min, 15 min
    remove_on_complete=100,
    remove_on_fail=200,
)
"""Every job's options unless `add` says otherwise: stored with the queue by `setup`."""

Processor = Callable[[corral.Job], Awaitable[str]]


async def setup(queue: corral.Queue) -> None:
    """Store the retry and retention policy with the queue (once, at deploy)."""
    await queue.configure(defaults=POLICY)


def auto_close_id(ticket: str) -> str:
    """The id of the ticket's auto-close job: one per ticket."""
    return f"autoClose:{ticket}"


def ticket_tag(ticket: str) -> str:
    """The tag of the ticket's jobs."""
    return f"ticket:{ticket}"


class Tickets:
    """The producers the help desk calls and the processor the worker runs."""

    def __init__(self, queue: corral.Queue, db: Database, services: Services) -> None:
        self.queue = queue
        self.db = db
        self.services = services

    # -- what the help desk calls ------------------------------------------------------

    async def request_close(self, ticket: str, hours: float) -> corral.Job | None:
        """The agent asks the customer whether it is solved: close it in `hours` unless
        they answer. None when the ticket may not be closed automatically."""
        found = self.db.ticket(ticket)
        if found is None or not found.auto_close or found.status == CLOSED:
            return None
        self.db.set_status(ticket, CLOSE_REQUESTED)
        job = await self._add_auto_close(ticket, hours)
        if job.duplicate and job.state in (corral.JobState.COMPLETED, corral.JobState.FAILED):
            # An earlier, finished auto-close (kept by retention) still holds the id.
            await self.queue.remove(job.id)
            job = await self._add_auto_close(ticket, hours)
        return job

    async def deny_close(self, ticket: str) -> bool:
        """The customer says it is not solved: keep it open; True when a job was cancelled."""
        self.db.set_status(ticket, OPEN)
        return await self._cancel(ticket)

    async def new_message(self, ticket: str) -> bool:
        """The customer wrote again: the ticket is open (again); True when a job was cancelled."""
        self.db.set_status(ticket, OPEN)
        return await self._cancel(ticket)

    async def exclude(self, ticket: str) -> bool:
        """Never close this ticket automatically; True when a job was cancelled."""
        self.db.set_auto_close(ticket, False)
        return await self._cancel(ticket)

    async def startup_cleanup(self) -> list[str]:
        """Remove the pending jobs whose ticket is gone; returns their ids."""
        orphans = [
            job for job in await self._pending() if self.db.ticket(job.data["ticket"]) is None
        ]
        for job in orphans:
            await self.queue.remove_tagged(ticket_tag(job.data["ticket"]))
        return [job.id for job in orphans]

    async def _add_auto_close(self, ticket: str, hours: float) -> corral.Job:
        return await self.queue.add(
            "autoClose", {"ticket": ticket}, delay=timedelta(hours=hours),
            job_id=auto_close_id(ticket), tags=[ticket_tag(ticket)],
        )

    async def _cancel(self, ticket: str) -> bool:
        return await self.queue.remove_tagged(ticket_tag(ticket)) > 0

    async def _pending(self) -> list[corral.Job]:
        jobs: list[corral.Job] = []
        for state in ("waiting", "delayed"):
            offset = 0
            while page := await self.queue.jobs(state, offset=offset, limit=500):
                jobs += page
                offset += len(page)
        return jobs

    # -- what the worker runs ------------------------------------------------------------

    def processors(self) -> dict[str, Processor]:
        """The processor of each job name."""
        return {"autoClose": self.auto_close}

    def worker(self, **options: Any) -> corral.Worker:
        """A worker for the queue, on the queue's store and clock (`options`: Worker's)."""
        options.setdefault("concurrency", 5)
        return corral.Worker(
            QUEUE, self.processors(), url=self.queue.url, clock=self.queue.clock, **options
        )

    async def auto_close(self, job: corral.Job) -> str:
        """Close the ticket and tell the customer, if it is still waiting for them."""
        ticket = self.db.ticket(job.data["ticket"])
        if ticket is None:
            return "skipped: ticket gone"
        if not ticket.auto_close:
            return "skipped: excluded from auto-close"
        if ticket.status != CLOSE_REQUESTED:
            return f"skipped: ticket is {ticket.status}"
        self.services.mailer.send(
            ticket.customer, "ticket_closed", {"ticket": ticket.id, "subject": ticket.subject}
        )
        self.db.set_status(ticket.id, CLOSED)
        return "closed"


def workers(url: str, clock: Clock, log: CallLog, **options: Any) -> list[corral.Worker]:
    """The workers on the store at `url`, with the stand-in services over `log`.

    The help desk's table lives in the call log's file, to keep the demo to one file.
    """
    tickets = Tickets(corral.Queue(QUEUE, url=url, clock=clock), Database(log.path),
                      services(log))
    return [tickets.worker(**options)]


async def run_story(url: str, clock: Clock, log: CallLog) -> None:
    """What the help desk does in the story, all at once; the workers play out the rest.

    T-1: nobody answers, so it closes after 24 h (asked twice: still one job). T-2: the
    customer says it is not solved. T-3: the customer writes again. T-4: an important
    customer's ticket, excluded from auto-close. T-5: deleted as spam after the request;
    the start-up cleanup removes its job.
    """
    async with corral.Queue(QUEUE, url=url, clock=clock) as queue:
        with closing(Database(log.path)) as db:
            desk = Tickets(queue, db, services(log))
            for n, subject in enumerate(
                ["Printer on fire", "Cannot log in", "Invoice missing", "Server down", "WIN $$$"],
                start=1,
            ):
                db.open_ticket(f"T-{n}", f"customer{n}@example.com", subject, auto_close=n != 4)
                await desk.request_close(f"T-{n}", hours=24)
            await desk.request_close("T-1", hours=24)
            await desk.deny_close("T-2")
            await desk.new_message("T-3")
            db.delete("T-5")
            await desk.startup_cleanup()
