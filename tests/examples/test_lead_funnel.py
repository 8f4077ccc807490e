"""The lead funnel's story on the virtual clock, on every store: two days in milliseconds."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from examples.lead_funnel import (
    MANAGERS_CHAT,
    QUEUE,
    Database,
    Funnel,
    Mailer,
    run_story,
    services,
    setup,
    workers,
)
from examples.standins import CallLog

import corral
from corral.testing import VirtualClock
from tests.conftest import START


class Story:
    """The funnel on the test's store and clock, its call log, and a worker to play it out."""

    def __init__(self, funnel: Funnel, log: CallLog, clock: VirtualClock) -> None:
        self.funnel = funnel
        self.queue = funnel.queue
        self.log = log
        self.clock = clock
        self.worker = funnel.worker()

    async def after(self, **delta: float) -> int:
        """Let `delta` pass, then run every job that is due; returns the attempts run."""
        await self.clock.advance(timedelta(**delta))
        return await self.worker.run(burst=True)

    def mail(self) -> list[tuple[str, str, datetime]]:
        """(to, template, when) of every email sent."""
        return [(c.payload["to"], c.payload["template"], c.at)
                for c in self.log.calls("mailer", "send")]

    async def state(self, job_id: str) -> str | None:
        job = await self.queue.get_job(job_id)
        return None if job is None else job.state


async def open_story(
    store_url: str, clock: VirtualClock, tmp_path: Path,
    mailer: Callable[[CallLog], Mailer] | None = None,
) -> AsyncIterator[Story]:
    log = CallLog(tmp_path / "app.db", clock)
    db = Database(log.path)
    outside = services(log)
    if mailer is not None:
        outside = dataclasses.replace(outside, mailer=mailer(log))
    async with corral.Queue(QUEUE, url=store_url, clock=clock) as queue:
        await setup(queue)
        yield Story(Funnel(queue, db, outside), log, clock)
    db.close()
    log.close()


@pytest.fixture
async def story(store_url: str, clock: VirtualClock, tmp_path: Path) -> AsyncIterator[Story]:
    async for opened in open_story(store_url, clock, tmp_path):
        yield opened


def at(days: int = 0, hours: int = 0, minutes: int = 0) -> datetime:
    """A moment of the story, counted from its start (2026-02-24 12:00 UTC)."""
    return START + timedelta(days=days, hours=hours, minutes=minutes)


# -- the email chain ------------------------------------------------------------------------


async def test_a_lead_who_never_starts_the_bot_gets_two_emails_then_a_call(story: Story) -> None:
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")

    assert await story.after(minutes=29) == 0
    assert await story.after(minutes=1) == 1
    assert await story.after(hours=23, minutes=59) == 0
    assert await story.after(minutes=1) == 1
    assert await story.after(hours=24) == 1

    assert story.mail() == [
        ("ann@example.com", "email1", at(minutes=30)),
        ("ann@example.com", "email2", at(days=1, minutes=30)),
    ]
    [status] = story.log.calls("crm", "set_status")
    assert (status.payload, status.at) == ({"lead": "ann", "status": "CALL_NEEDED"},
                                           at(days=2, minutes=30))
    [alert] = story.log.calls("chat", "message")
    assert alert.payload["chat"] == MANAGERS_CHAT
    assert "Ann <ann@example.com>" in alert.payload["text"]
    done = {job.id: job.return_value for job in await story.queue.jobs("completed")}
    assert done == {"email1:ann": "sent", "email2:ann": "sent", "callAlert:ann": "alerted"}
    assert (await story.queue.counts())["delayed"] == 0


@pytest.mark.parametrize(("steps_run", "pending"), [
    (0, "email1:ann"), (1, "email2:ann"), (2, "callAlert:ann"),
], ids=["before-email1", "before-email2", "before-callAlert"])
async def test_starting_the_bot_cancels_the_rest_of_the_chain_at_once(
    story: Story, steps_run: int, pending: str
) -> None:
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")
    for wait in [timedelta(minutes=30), timedelta(hours=24)][:steps_run]:
        assert await story.after(seconds=wait.total_seconds()) == 1
    assert await story.state(pending) == "delayed"

    assert await story.funnel.activate_bot("ann") == 1

    assert await story.state(pending) is None
    assert await story.after(days=3) == 0
    assert len(story.mail()) == steps_run
    assert story.log.calls("crm") == []
    assert story.log.calls("chat") == []


async def test_email1_is_skipped_when_the_bot_starts_as_a_worker_takes_it(
    story: Story, store_url: str, clock: VirtualClock
) -> None:
    # The race `remove_tagged` cannot win: the job is already active when the lead starts
    # the bot, so it stays; the processor reads the database and sends nothing.
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")
    processors = story.funnel.processors()

    async def bot_starts_meanwhile(job: corral.Job) -> str:
        assert await story.funnel.activate_bot("ann") == 0  # active jobs are not removed
        return await processors["email1"](job)

    worker = corral.Worker(QUEUE, {**processors, "email1": bot_starts_meanwhile},
                           url=store_url, clock=clock)
    await clock.advance(timedelta(minutes=30))
    assert await worker.run(burst=True) == 1

    job = await story.queue.get_job("email1:ann")
    assert job is not None
    assert (job.state, job.return_value) == ("completed", "skipped: bot active")
    assert story.mail() == []
    assert await story.state("email2:ann") is None


# -- lesson reminders -----------------------------------------------------------------------


async def test_a_lesson_30_hours_ahead_gets_both_reminders(story: Story) -> None:
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")
    await story.funnel.activate_bot("ann")
    lesson_at = at(hours=30)

    jobs = await story.funnel.book_lesson("L1", "ann", lesson_at)

    assert [(job.name, job.run_at) for job in jobs] == [
        ("reminder24h", lesson_at - timedelta(hours=24)),
        ("reminder5h", lesson_at - timedelta(hours=5)),
    ]
    assert await story.after(hours=6) == 1
    assert await story.after(hours=19) == 1
    assert story.mail() == [
        ("ann@example.com", "reminder24h", at(hours=6)),
        ("ann@example.com", "reminder5h", at(hours=25)),
    ]
    reminder = story.log.calls("mailer")[0].payload["data"]
    assert reminder["at"] == lesson_at.isoformat()
    assert reminder["confirm"].endswith("/lessons/L1/confirm")
    assert reminder["reschedule"].endswith("/lessons/L1/reschedule")


async def test_a_lesson_10_hours_ahead_gets_only_the_5_hour_reminder(story: Story) -> None:
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")

    jobs = await story.funnel.book_lesson("L1", "ann", at(hours=10))

    assert [job.name for job in jobs] == ["reminder5h"]
    await story.funnel.activate_bot("ann")  # no chain emails in the way
    assert await story.after(hours=5) == 1
    assert await story.after(days=2) == 0
    assert story.mail() == [("ann@example.com", "reminder5h", at(hours=5))]


async def test_confirming_cancels_the_reminders_still_to_come(story: Story) -> None:
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")
    await story.funnel.activate_bot("ann")
    await story.funnel.book_lesson("L1", "ann", at(hours=30))
    assert await story.after(hours=6) == 1

    assert await story.funnel.confirm("L1") == 1

    assert await story.after(days=2) == 0
    assert story.mail() == [("ann@example.com", "reminder24h", at(hours=6))]


async def test_rescheduling_moves_the_reminders(story: Story) -> None:
    await story.funnel.sign_up("ann", "ann@example.com", "Ann")
    await story.funnel.activate_bot("ann")
    old = await story.funnel.book_lesson("L1", "ann", at(hours=30))
    assert await story.after(hours=1) == 0

    new = await story.funnel.reschedule("L1", at(hours=50))

    assert [await story.state(job.id) for job in old] == [None, None]
    assert [job.run_at for job in new] == [at(hours=26), at(hours=45)]
    assert await story.after(hours=24) == 0  # past the old reminder times
    assert await story.after(hours=1) == 1
    assert await story.after(hours=19) == 1
    assert story.mail() == [
        ("ann@example.com", "reminder24h", at(hours=26)),
        ("ann@example.com", "reminder5h", at(hours=45)),
    ]
    assert story.log.calls("mailer")[0].payload["data"]["at"] == at(hours=50).isoformat()


# -- retries and retention --------------------------------------------------------------------


class PartlyDownMailer:
    """The stand-in mailer, except that the provider cannot reach down.example."""

    def __init__(self, log: CallLog) -> None:
        self.mailer = services(log).mailer

    def send(self, to: str, template: str, data: dict[str, Any]) -> None:
        if to.endswith("@down.example"):
            raise ConnectionError("mail provider unreachable")
        self.mailer.send(to, template, data)


@pytest.fixture
async def broken_story(
    store_url: str, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[Story]:
    async for opened in open_story(store_url, clock, tmp_path, mailer=PartlyDownMailer):
        yield opened


async def test_a_failing_step_is_retried_after_1_5_and_15_minutes_then_fails(
    broken_story: Story,
) -> None:
    story = broken_story
    await story.funnel.sign_up("ann", "ann@down.example", "Ann")
    assert await story.after(minutes=30) == 1

    retries = []
    for wait in (1, 5, 15):
        job = await story.queue.get_job("email1:ann")
        assert job is not None
        assert job.state == "delayed"
        assert job.run_at is not None
        retries.append(job.run_at - story.clock.now())
        assert await story.after(minutes=wait - 0.5) == 0
        assert await story.after(seconds=30) == 1

    assert retries == [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15)]
    failed = await story.queue.get_job("email1:ann")
    assert failed is not None
    assert (failed.state, failed.attempts_made) == ("failed", 4)
    assert "mail provider unreachable" in (failed.failed_reason or "")
    assert await story.state("email2:ann") is None
    assert story.mail() == []


async def test_the_queue_keeps_the_last_100_completed_and_200_failed_jobs(
    broken_story: Story,
) -> None:
    story = broken_story
    for i in range(205):
        await story.funnel.sign_up(f"down{i}", f"down{i}@down.example", "Down")
    for i in range(105):
        await story.funnel.sign_up(f"ok{i}", f"ok{i}@example.com", "Ok")

    assert await story.after(minutes=30) == 205 + 105
    assert await story.after(minutes=1) == 205
    assert await story.after(minutes=5) == 205
    assert await story.after(minutes=15) == 205

    counts = await story.queue.counts()
    assert (counts["completed"], counts["failed"]) == (100, 200)
    assert counts["delayed"] == 105  # each good lead's email2
    assert len(story.mail()) == 105


# -- the demo's entry points ------------------------------------------------------------------


async def test_the_story_plays_out_with_the_demo_entry_points(
    store_url: str, clock: VirtualClock, tmp_path: Path
) -> None:
    log = CallLog(tmp_path / "demo.db", clock)
    async with corral.Queue(QUEUE, url=store_url, clock=clock) as queue:
        await setup(queue)
        await run_story(store_url, clock, log)
        [worker] = workers(store_url, clock, log)
        for _ in range(2 * 50):  # 50 hours, half an hour at a time
            await clock.advance(timedelta(minutes=30))
            await worker.run(burst=True)

        assert (await queue.counts())["completed"] == 8
        del worker
        gc.collect()
    seen = [(c.at - START, c.service, c.payload.get("template") or c.payload.get("status"),
             c.payload.get("to") or c.payload.get("chat") or c.payload.get("lead"))
            for c in log.calls()]
    def h(hours: float) -> timedelta:
        return timedelta(hours=hours)

    assert seen == [
        (h(0.5), "mailer", "email1", "ann@example.com"),
        (h(5), "mailer", "reminder5h", "ben@example.com"),
        (h(6), "mailer", "reminder24h", "ann@example.com"),
        (h(24.5), "mailer", "email2", "ann@example.com"),
        (h(25), "mailer", "reminder5h", "ann@example.com"),
        (h(30), "mailer", "reminder24h", "cleo@example.com"),
        (h(48.5), "crm", "CALL_NEEDED", "ann"),
        (h(48.5), "chat", None, MANAGERS_CHAT),
        (h(49), "mailer", "reminder5h", "cleo@example.com"),
    ]
    log.close()
