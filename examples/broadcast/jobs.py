"""Producers, processors, workers and set-up of the broadcast app.

A contract is one flow: the parent `contract` job in `broadcast-contracts` waits for one
`send` child per recipient in `broadcast-messages`, a queue that starts at most 20 jobs a
minute, whichever worker takes them. Each child is tagged `contract:<id>` and grouped by
contract, so contracts sharing the sender take turns and one can be withdrawn alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import corral
from corral.clock import Clock
from examples.broadcast.services import RecipientRejected, Services, build_services
from examples.standins import CallLog

__all__ = [
    "CONTRACTS", "MESSAGES", "Processors", "Progress", "contract_progress", "pause_contract",
    "run_story", "setup", "start_contract", "workers",
]

CONTRACTS = "broadcast-contracts"
MESSAGES = "broadcast-messages"
HASH_TAG = "broadcast"
"""Both queues share one Redis Cluster slot, as a flow across queues needs there."""
SEND_LIMIT = corral.RateLimit(20, per=60)
"""What the provider allows one sender: 20 messages a minute."""


def contract_job_id(contract_id: str) -> str:
    """The id of the contract's parent job."""
    return f"contract:{contract_id}"


def contract_tag(contract_id: str) -> str:
    """The tag on each of the contract's message jobs."""
    return f"contract:{contract_id}"


def open_queue(name: str, url: str, clock: Clock) -> corral.Queue:
    """One of the app's two queues (use with `async with`)."""
    return corral.Queue(name, url=url, clock=clock, hash_tag=HASH_TAG)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a contract stands, read from its flow."""

    total: int
    sent: int
    failed: int     # the provider refused the recipient, or attempts ran out
    withdrawn: int  # removed by a pause, or taken just before it and not sent
    pending: int

    def to_json(self) -> dict[str, int]:
        """The counts as a dict."""
        return asdict(self)


def _progress(children: Sequence[corral.Child], pending: int) -> Progress:
    states = Counter(child.state for child in children)
    sent = sum(1 for c in children if c.state == "completed" and "provider_id" in c.return_value)
    skipped = states["completed"] - sent  # taken just before a pause, and not sent
    return Progress(total=len(children), sent=sent, failed=states["failed"],
                    withdrawn=states["removed"] + skipped, pending=pending)


# -- producers: what the app calls -------------------------------------------------------

async def start_contract(
    contracts: corral.Queue, services: Services, contract_id: str, text: str,
    recipients: Sequence[str],
) -> corral.Job:
    """Store the contract and add its flow; starting it again returns the same job."""
    unique = list(dict.fromkeys(recipients))
    services.contracts.create(contract_id, text, len(unique))
    return await contracts.add(
        "contract", {"contract": contract_id}, job_id=contract_job_id(contract_id),
        children=[
            corral.JobSpec(
                "send", {"contract": contract_id, "to": to}, queue=MESSAGES,
                job_id=f"msg:{contract_id}:{to}", tags=[contract_tag(contract_id)],
                group=contract_id, on_failure="ignore",  # one bad number must not fail it
            )
            for to in unique
        ],
    )


async def pause_contract(messages: corral.Queue, services: Services, contract_id: str) -> int:
    """Stop a contract: its messages not sent yet are removed; returns how many.

    The status is set first, so a message a worker took a moment before is skipped, not
    sent. Removing the last pending child releases the contract job, which then records
    `paused` with the counts instead of `done`.
    """
    services.contracts.set_status(contract_id, "paused")
    return await messages.remove_tagged(contract_tag(contract_id))


async def contract_progress(contracts: corral.Queue, contract_id: str) -> Progress:
    """How many of the contract's messages were sent, failed, withdrawn or are pending."""
    job = await contracts.get_job(contract_job_id(contract_id))
    if job is None:
        raise KeyError(contract_id)
    return _progress(await job.children(), job.pending_children)


# -- processors --------------------------------------------------------------------------

class Processors:
    """The processors of both queues, over the app's services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def send(self, job: corral.Job) -> dict[str, Any]:
        """Send one recipient the contract's text, once."""
        contract_id, to = job.data["contract"], job.data["to"]
        contracts = self.services.contracts
        already = contracts.delivery(contract_id, to)
        if already is not None:  # a repeated delivery of this job: it was sent
            return {"provider_id": already}
        contract = contracts.get(contract_id)
        if contract.status == "paused":
            return {"skipped": "contract paused"}
        try:
            provider_id = self.services.whatsapp.send(to, contract.text)
        except RecipientRejected as exc:
            raise corral.UnrecoverableError(str(exc)) from exc
        contracts.record_delivery(contract_id, to, provider_id, self.services.clock.now())
        return {"provider_id": provider_id}

    async def close_contract(self, job: corral.Job) -> dict[str, Any]:
        """Runs once no message is pending: the contract is done, or stays paused."""
        contract_id = job.data["contract"]
        paused = self.services.contracts.get(contract_id).status == "paused"
        if not paused:
            self.services.contracts.set_status(contract_id, "done")
        progress = _progress(await job.children(), job.pending_children)
        return {"status": "paused" if paused else "done", **progress.to_json()}


# -- running it --------------------------------------------------------------------------

def workers(url: str, clock: Clock, log: CallLog, **options: Any) -> list[corral.Worker]:
    """The one sender and the contracts' worker (`options` go to each `corral.Worker`)."""
    processors = Processors(build_services(log, clock))
    return [
        # A few sends at once: the queue's rate limit, not the worker, sets the pace.
        corral.Worker(MESSAGES, {"send": processors.send}, url=url, clock=clock,
                      hash_tag=HASH_TAG, **{"concurrency": 5, **options}),
        corral.Worker(CONTRACTS, {"contract": processors.close_contract}, url=url,
                      clock=clock, hash_tag=HASH_TAG, **options),
    ]


async def setup(url: str, clock: Clock) -> None:
    """Limit the sender to 20 messages a minute and retry a failed send; idempotent."""
    async with open_queue(MESSAGES, url, clock) as messages:
        await messages.configure(
            limiter=SEND_LIMIT,
            defaults=corral.JobOptions(attempts=3, backoff=corral.Backoff.exponential(60)),
        )


STORY_RECIPIENTS = 200


async def run_story(url: str, clock: Clock, log: CallLog) -> None:
    """Start a contract of 200 recipients (ten minutes of sending at 20 a minute)."""
    services = build_services(log, clock)
    recipients = [f"+4917000{n:05d}" for n in range(STORY_RECIPIENTS)]
    async with open_queue(CONTRACTS, url, clock) as contracts:
        await start_contract(contracts, services, "demo", "Spring sale: 20% off until Sunday",
                             recipients)
