"""The tickets story on the virtual clock, on every store: a day of waiting in milliseconds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from examples.standins import CallLog
from examples.tickets import QUEUE, Database, Tickets, run_story, services, setup, workers

import corral
from corral.testing import VirtualClock
from tests.conftest import START


class Story:
    """The help desk on the test's store and clock, its call log, and a worker."""

    def __init__(self, desk: Tickets, log: CallLog, clock: VirtualClock) -> None:
        self.desk = desk
        self.db = desk.db
        self.queue = desk.queue
        self.log = log
        self.clock = clock
        self.worker = desk.worker()

    async def after(self, **delta: float) -> int:
        """Let `delta` pass, then run every job that is due; returns the attempts run."""
        await self.clock.advance(timedelta(**delta))
        return await self.worker.run(burst=True)

    def status(self, ticket: str) -> str | None:
        found = self.db.ticket(ticket)
        return None if found is None else found.status

    def closing_mail(self) -> list[str]:
        """The tickets whose customer was told it closed."""
        return [call.payload["data"]["ticket"] for call in self.log.calls("mailer", "send")
                if call.payload["template"] == "ticket_closed"]

    async def pending(self) -> list[str]:
        return [job.id for job in await self.queue.jobs("delayed")]


@pytest.fixture
async def story(store_url: str, clock: VirtualClock, tmp_path: Path) -> AsyncIterator[Story]:
    log = CallLog(tmp_path / "app.db", clock)
    db = Database(log.path)
    async with corral.Queue(QUEUE, url=store_url, clock=clock) as queue:
        await setup(queue)
        yield Story(Tickets(queue, db, services(log)), log, clock)
    db.close()
    log.close()


def open_tickets(story: Story, *ids: str, auto_close: bool = True) -> None:
    for ticket in ids:
        story.db.open_ticket(ticket, f"{ticket.lower()}@example.com", f"Help with {ticket}",
                             auto_close=auto_close)


async def test_a_ticket_closes_n_hours_after_the_request_when_nobody_answers(
    story: Story,
) -> None:
    open_tickets(story, "T1")

    job = await story.desk.request_close("T1", hours=48)

    assert job is not None
    assert (job.id, job.run_at) == ("autoClose:T1", START + timedelta(hours=48))
    assert story.status("T1") == "close-requested"
    assert await story.after(hours=47, minutes=59) == 0
    assert story.status("T1") == "close-requested"
    assert await story.after(minutes=1) == 1
    assert story.status("T1") == "closed"
    [mail] = story.log.calls("mailer", "send")
    assert (mail.payload["to"], mail.payload["template"]) == ("t1@example.com", "ticket_closed")
    assert mail.at == START + timedelta(hours=48)
    done = await story.queue.get_job("autoClose:T1")
    assert done is not None
    assert (done.state, done.return_value) == ("completed", "closed")


async def test_the_same_ticket_requested_twice_keeps_one_job(story: Story) -> None:
    open_tickets(story, "T1")
    first = await story.desk.request_close("T1", hours=24)
    assert await story.after(hours=2) == 0

    again = await story.desk.request_close("T1", hours=24)

    assert first is not None
    assert again is not None
    assert (again.id, again.duplicate, again.run_at) == (first.id, True, first.run_at)
    assert await story.pending() == ["autoClose:T1"]
    assert await story.after(hours=22) == 1  # 24 h after the first request
    assert story.closing_mail() == ["T1"]


@pytest.mark.parametrize("answer", ["deny_close", "new_message"])
async def test_an_answer_from_the_customer_cancels_the_auto_close(
    story: Story, answer: str
) -> None:
    open_tickets(story, "T1")
    await story.desk.request_close("T1", hours=24)
    assert await story.after(hours=23) == 0

    assert await getattr(story.desk, answer)("T1") is True

    assert await story.pending() == []
    assert await story.after(days=3) == 0
    assert story.status("T1") == "open"
    assert story.closing_mail() == []


async def test_a_reopened_ticket_can_be_auto_closed_again(story: Story) -> None:
    open_tickets(story, "T1")
    await story.desk.request_close("T1", hours=24)
    assert await story.after(hours=24) == 1
    assert await story.desk.new_message("T1") is False  # nothing pending: it had closed
    assert story.status("T1") == "open"

    job = await story.desk.request_close("T1", hours=12)

    # The finished job kept by retention held the id; the new request replaced it.
    assert job is not None
    assert (job.state, job.run_at) == ("delayed", START + timedelta(hours=36))
    assert await story.after(hours=12) == 1
    assert story.closing_mail() == ["T1", "T1"]


async def test_an_excluded_ticket_is_never_closed_even_when_a_job_exists(
    story: Story,
) -> None:
    open_tickets(story, "VIP", auto_close=False)
    open_tickets(story, "T2")
    assert await story.desk.request_close("VIP", hours=24) is None
    assert await story.pending() == []
    # T2 has a pending job when it is excluded straight in the help desk's database, so the
    # job stays; the processor still leaves the ticket alone.
    await story.desk.request_close("T2", hours=24)
    story.db.set_auto_close("T2", False)

    assert await story.after(hours=24) == 1

    job = await story.queue.get_job("autoClose:T2")
    assert job is not None
    assert job.return_value == "skipped: excluded from auto-close"
    assert (story.status("VIP"), story.status("T2")) == ("open", "close-requested")
    assert story.closing_mail() == []


async def test_excluding_a_ticket_cancels_its_pending_auto_close(story: Story) -> None:
    open_tickets(story, "T1")
    await story.desk.request_close("T1", hours=24)

    assert await story.desk.exclude("T1") is True

    assert await story.pending() == []
    assert await story.desk.request_close("T1", hours=24) is None
    assert await story.after(days=2) == 0


async def test_startup_cleanup_removes_the_jobs_of_deleted_tickets(story: Story) -> None:
    open_tickets(story, "T1", "T2", "T3")
    for ticket in ("T1", "T2", "T3"):
        await story.desk.request_close(ticket, hours=24)
    story.db.delete("T2")
    story.db.delete("T3")

    assert sorted(await story.desk.startup_cleanup()) == ["autoClose:T2", "autoClose:T3"]

    assert await story.pending() == ["autoClose:T1"]
    assert await story.desk.startup_cleanup() == []
    assert await story.after(hours=24) == 1
    assert story.closing_mail() == ["T1"]


async def test_a_job_whose_ticket_went_away_without_a_cleanup_does_nothing(
    story: Story,
) -> None:
    open_tickets(story, "T1")
    await story.desk.request_close("T1", hours=24)
    story.db.delete("T1")

    assert await story.after(hours=24) == 1

    job = await story.queue.get_job("autoClose:T1")
    assert job is not None
    assert job.return_value == "skipped: ticket gone"
    assert story.closing_mail() == []


async def test_a_denial_while_a_worker_runs_the_job_still_keeps_the_ticket_open(
    story: Story, store_url: str, clock: VirtualClock
) -> None:
    # The job is already active, so the denial cannot remove it; the processor reads the
    # ticket and leaves it open.
    open_tickets(story, "T1")
    await story.desk.request_close("T1", hours=24)
    processors = story.desk.processors()

    async def customer_answers_meanwhile(job: corral.Job) -> str:
        assert await story.desk.deny_close("T1") is False  # active jobs are not removed
        return await processors["autoClose"](job)

    worker = corral.Worker(QUEUE, {"autoClose": customer_answers_meanwhile},
                           url=store_url, clock=clock)
    await clock.advance(timedelta(hours=24))
    assert await worker.run(burst=True) == 1

    job = await story.queue.get_job("autoClose:T1")
    assert job is not None
    assert job.return_value == "skipped: ticket is open"
    assert story.status("T1") == "open"
    assert story.closing_mail() == []


async def test_the_story_plays_out_with_the_demo_entry_points(
    store_url: str, clock: VirtualClock, tmp_path: Path
) -> None:
    log = CallLog(tmp_path / "demo.db", clock)
    async with corral.Queue(QUEUE, url=store_url, clock=clock) as queue:
        await setup(queue)
        await run_story(store_url, clock, log)
        [worker] = workers(store_url, clock, log)
        await clock.advance(timedelta(hours=24))
        assert await worker.run(burst=True) == 1

        counts = await queue.counts()
        assert (counts["completed"], counts["delayed"], counts["failed"]) == (1, 0, 0)
    with closing(Database(log.path)) as db:
        assert [getattr(db.ticket(f"T-{n}"), "status", None) for n in range(1, 6)] == [
            "closed", "open", "open", "open", None,
        ]
    assert [call.payload["to"] for call in log.calls()] == ["customer1@example.com"]
    log.close()
