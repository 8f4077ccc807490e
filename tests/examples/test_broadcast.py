"""The broadcast example, walked through on the virtual clock, on every store."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from examples.broadcast import (
    CONTRACTS,
    MESSAGES,
    Progress,
    Services,
    build_services,
    contract_progress,
    open_queue,
    pause_contract,
    run_story,
    setup,
    start_contract,
    workers,
)
from examples.standins import CallLog

import corral
from corral.testing import VirtualClock
from tests.conformance.support import wait_for
from tests.conftest import START

MINUTE = timedelta(minutes=1)


def recipients(count: int, prefix: str = "+4917000") -> list[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


@pytest.fixture
def log(tmp_path: Path, clock: VirtualClock) -> Iterator[CallLog]:
    call_log = CallLog(tmp_path / "calls.db", clock)
    yield call_log
    call_log.close()


@pytest.fixture
def services(log: CallLog, clock: VirtualClock) -> Services:
    return build_services(log, clock)


@pytest.fixture
async def contracts(store_url: str, clock: VirtualClock) -> AsyncIterator[corral.Queue]:
    await setup(store_url, clock)
    async with open_queue(CONTRACTS, store_url, clock) as queue:
        yield queue


@pytest.fixture
async def messages(store_url: str, clock: VirtualClock) -> AsyncIterator[corral.Queue]:
    async with open_queue(MESSAGES, store_url, clock) as queue:
        yield queue


@pytest.fixture
async def running(
    store_url: str, clock: VirtualClock, log: CallLog
) -> AsyncIterator[list[corral.Worker]]:
    """The sender and the contracts' worker; run them with `minutes()`."""
    both = workers(store_url, clock, log)
    yield both
    for worker in both:
        await worker.close()


async def minutes(count: int, both: list[corral.Worker], clock: VirtualClock) -> None:
    """`count` minutes of work: all that is due and allowed, then the clock moves a minute."""
    for _ in range(count):
        for worker in both:  # sender first: a contract whose last message went runs at once
            await worker.run(burst=True)
        await clock.advance(MINUTE)


def sends(log: CallLog) -> list[str]:
    return [call.payload["to"] for call in log.calls("whatsapp", "send")]


async def completed(messages: corral.Queue, count: int) -> None:
    """Wait (in real time) until `count` message jobs have completed, and none is active.

    Moving the clock a minute while a job is still active would let its lock lapse.
    """
    async def done() -> bool:
        counts = await messages.counts()
        return counts["completed"] >= count and counts["active"] == 0

    await wait_for(done)
    assert (await messages.counts())["completed"] == count


def assert_at_most_20_a_minute(log: CallLog) -> None:
    times = [call.at for call in log.calls("whatsapp", "send")]
    for first, at in enumerate(times):  # the minute that starts at each send
        in_window = bisect.bisect_left(times, at + MINUTE) - first
        assert in_window <= 20, f"{in_window} sends in the minute from {at}"


async def test_a_contract_of_1000_goes_out_at_20_a_minute_with_progress(
    clock: VirtualClock, log: CallLog, services: Services, contracts: corral.Queue,
    running: list[corral.Worker],
) -> None:
    everyone = recipients(1000)
    job = await start_contract(contracts, services, "c1", "Spring sale", everyone)
    assert job.state == corral.JobState.WAITING_CHILDREN
    assert job.pending_children == 1000
    assert await contract_progress(contracts, "c1") == Progress(1000, 0, 0, 0, 1000)
    again = await start_contract(contracts, services, "c1", "Spring sale", everyone)
    assert again.duplicate

    await minutes(10, running, clock)
    assert await contract_progress(contracts, "c1") == Progress(1000, 200, 0, 0, 800)
    assert services.contracts.get("c1").status == "running"
    await minutes(40, running, clock)

    assert sorted(sends(log)) == everyone  # each recipient once
    assert_at_most_20_a_minute(log)
    last = log.calls("whatsapp", "send")[-1].at
    assert last == START + 49 * MINUTE  # 20 every minute, no slack: 50 minutes in all
    assert await job.get_state() == corral.JobState.COMPLETED
    assert job.return_value == {"status": "done", "total": 1000, "sent": 1000, "failed": 0,
                                "withdrawn": 0, "pending": 0}
    assert services.contracts.get("c1").status == "done"
    assert services.contracts.delivered("c1") == 1000


async def test_pausing_a_contract_removes_its_pending_messages_and_only_its(
    clock: VirtualClock, log: CallLog, services: Services, contracts: corral.Queue,
    messages: corral.Queue, running: list[corral.Worker],
) -> None:
    await start_contract(contracts, services, "big", "Sale", recipients(100))
    await start_contract(contracts, services, "small", "Survey", recipients(40, "+4917100"))

    await minutes(2, running, clock)
    sent_before = Counter(to[:8] for to in sends(log))
    assert sent_before == {"+4917000": 20, "+4917100": 20}  # the contracts take turns

    assert await pause_contract(messages, services, "big") == 80
    await minutes(3, running, clock)

    big = await contracts.get_job("contract:big")
    assert big is not None
    assert big.state == corral.JobState.COMPLETED  # released by the removal, records the pause
    assert big.return_value == {"status": "paused", "total": 100, "sent": 20, "failed": 0,
                                "withdrawn": 80, "pending": 0}
    assert services.contracts.get("big").status == "paused"
    small = await contracts.get_job("contract:small")
    assert small is not None
    assert small.return_value["status"] == "done"
    assert small.return_value["sent"] == 40
    assert Counter(to[:8] for to in sends(log)) == {"+4917000": 20, "+4917100": 40}


async def test_a_message_taken_just_before_the_pause_is_not_sent(
    clock: VirtualClock, log: CallLog, services: Services, contracts: corral.Queue,
    messages: corral.Queue, running: list[corral.Worker],
) -> None:
    sender, closer = running
    taken = asyncio.Event()
    release = asyncio.Event()

    async def pause_while_taken(job: corral.Job) -> None:
        taken.set()
        await release.wait()

    sender.on("active", pause_while_taken)
    await start_contract(contracts, services, "c1", "Sale", recipients(1))
    burst = asyncio.create_task(sender.run(burst=True))
    await asyncio.wait_for(taken.wait(), 5)
    assert await pause_contract(messages, services, "c1") == 0  # active: not removable
    release.set()
    await burst
    await closer.run(burst=True)

    assert sends(log) == []
    job = await contracts.get_job("contract:c1")
    assert job is not None
    assert job.return_value["status"] == "paused"
    assert job.return_value["withdrawn"] == 1


async def test_a_restart_of_every_process_mid_contract_continues_where_it_stopped(
    store_url: str, clock: VirtualClock, log: CallLog, services: Services,
) -> None:
    everyone = recipients(1000)
    await setup(store_url, clock)
    async with open_queue(CONTRACTS, store_url, clock) as contracts:
        await start_contract(contracts, services, "c1", "Sale", everyone)
    # The first processes run as they would in production, until they are stopped.
    first = workers(store_url, clock, log)
    tasks = [asyncio.create_task(worker.run()) for worker in first]
    async with open_queue(MESSAGES, store_url, clock) as messages:
        await completed(messages, 20)
        for minute in range(2, 26):
            await clock.advance(MINUTE)
            await completed(messages, 20 * minute)
    for worker in first:
        await worker.close()
    await asyncio.gather(*tasks)
    assert len(sends(log)) == 500
    await clock.advance(MINUTE)  # the restart takes a minute

    # New processes, new Queue objects, the same store.
    second = workers(store_url, clock, log)
    async with open_queue(CONTRACTS, store_url, clock) as contracts:
        assert await contract_progress(contracts, "c1") == Progress(1000, 500, 0, 0, 500)
        await minutes(25, second, clock)
        assert await contract_progress(contracts, "c1") == Progress(1000, 1000, 0, 0, 0)
        job = await contracts.get_job("contract:c1")
        assert job is not None
        assert job.return_value["status"] == "done"
    for worker in second:
        await worker.close()

    assert sorted(sends(log)) == everyone  # none twice, none missing
    assert_at_most_20_a_minute(log)


async def test_a_refused_recipient_fails_alone(
    clock: VirtualClock, log: CallLog, services: Services, contracts: corral.Queue,
    messages: corral.Queue, running: list[corral.Worker],
) -> None:
    await start_contract(contracts, services, "c1", "Hi", ["+491", "0170 123", "+492"])

    await minutes(1, running, clock)

    job = await contracts.get_job("contract:c1")
    assert job is not None
    assert job.return_value == {"status": "done", "total": 3, "sent": 2, "failed": 1,
                                "withdrawn": 0, "pending": 0}
    refused = await messages.get_job("msg:c1:0170 123")
    assert refused is not None
    assert refused.failed_reason == "'0170 123' is not a phone number"
    assert refused.attempts_made == 1  # refused for good: no retries
    assert sends(log) == ["+491", "+492"]


async def test_run_story_sends_200_in_ten_minutes(
    store_url: str, clock: VirtualClock, log: CallLog, running: list[corral.Worker],
) -> None:
    await setup(store_url, clock)
    await run_story(store_url, clock, log)

    await minutes(10, running, clock)

    assert len(set(sends(log))) == 200
    async with open_queue(CONTRACTS, store_url, clock) as contracts:
        assert (await contract_progress(contracts, "demo")).sent == 200
