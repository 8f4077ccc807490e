"""The platform's outside services, and the one place where they are built.

Each service is a small Protocol. Here every one is a stand-in that records its calls in a
`CallLog` (see `examples/standins.py`) and, where the story needs it, misbehaves the way the
real thing does: an embedding API that answers 429 under load, a customer's webhook endpoint
that is down, a mail server that greylists. A real client implements the same Protocol and
goes into `build_services`; nothing else changes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from corral.clock import SYSTEM, Clock
from examples.standins import CallLog

__all__ = [
    "Analytics",
    "Billing",
    "KnowledgeStore",
    "Mailer",
    "ServiceError",
    "Services",
    "WebhookSender",
    "build_services",
    "default_call_log",
]


class ServiceError(Exception):
    """An outside service failed a call in a way that is worth retrying."""


class KnowledgeStore(Protocol):
    """Embeds text and keeps the vectors: an embedding API plus a vector store."""

    async def index(self, workspace: str, document_id: str, chunks: list[str]) -> int:
        """Embed `chunks` and upsert them under the document; the number of vectors stored."""
        ...


class WebhookSender(Protocol):
    """POSTs signed events to customers' endpoints."""

    async def post(self, endpoint: str, event: dict[str, Any]) -> int:
        """Deliver `event` to `endpoint`; the HTTP status it answered."""
        ...


class Mailer(Protocol):
    """An email provider."""

    async def send(self, to: str, subject: str, body: str) -> str:
        """Send one email; the provider's message id."""
        ...


class Billing(Protocol):
    """The credit ledger."""

    async def grant_credits(self, workspace: str, credits: int, idempotency_key: str) -> None:
        """Add `credits` to the workspace; a second call with the same key changes nothing."""
        ...


class Analytics(Protocol):
    """The usage warehouse."""

    async def rollup(self, day: date) -> dict[str, Any]:
        """Aggregate one UTC day of usage; a summary."""
        ...


@dataclass(frozen=True, slots=True)
class Services:
    """Every outside service the processors use."""

    knowledge: KnowledgeStore
    webhooks: WebhookSender
    mailer: Mailer
    billing: Billing
    analytics: Analytics


def build_services(log: CallLog) -> Services:
    """The one place where the platform's services are built: put real clients here."""
    return Services(
        # The embedding API refuses acme's large handbook twice before it has capacity.
        knowledge=StandInKnowledgeStore(log, busy={"acme/handbook": 2}),
        # globex's webhook endpoint is down for the whole story.
        webhooks=StandInWebhookSender(log, down={"https://hooks.globex.test/agents"}),
        # globex's mail server greylists: it defers the first two deliveries.
        mailer=StandInMailer(log, greylisting={"ops@globex.test": 2}),
        billing=StandInBilling(log),
        analytics=StandInAnalytics(log),
    )


def default_call_log(clock: Clock | None = None) -> CallLog:
    """The call log the stand-ins write when nobody passes one: `$AGENT_PLATFORM_CALLS`, else
    `agent-platform-calls.db` in the working directory."""
    return CallLog(os.environ.get("AGENT_PLATFORM_CALLS", "agent-platform-calls.db"),
                   clock or SYSTEM)


# -- the stand-ins ---------------------------------------------------------------------------
# They count earlier calls in the log itself, so their behaviour holds across worker processes.


class StandInKnowledgeStore:
    """Stand-in for the embedding API: answers 429 to the first `busy[workspace/document]`
    calls for a document, then stores its vectors."""

    def __init__(self, log: CallLog, busy: Mapping[str, int] | None = None) -> None:
        self.log = log
        self.busy = dict(busy or {})

    async def index(self, workspace: str, document_id: str, chunks: list[str]) -> int:
        """Record the call; raise ServiceError while the document's refusals last."""
        key = f"{workspace}/{document_id}"
        tried = sum(call.payload["document"] == key for call in self.log.calls("knowledge"))
        accepted = tried >= self.busy.get(key, 0)
        self.log.record("knowledge", "index", document=key, chunks=len(chunks), accepted=accepted)
        if not accepted:
            raise ServiceError("embedding API: 429 Too Many Requests")
        return len(chunks)


class StandInWebhookSender:
    """Stand-in for the HTTP client that delivers webhooks: endpoints in `down` answer 503."""

    def __init__(self, log: CallLog, down: set[str] | None = None) -> None:
        self.log = log
        self.down = set(down or ())

    async def post(self, endpoint: str, event: dict[str, Any]) -> int:
        """Record the delivery and answer 503 or 200."""
        status = 503 if endpoint in self.down else 200
        self.log.record("webhooks", "post", endpoint=endpoint, event_id=event["id"],
                        type=event["type"], status=status)
        return status


class StandInMailer:
    """Stand-in for the email provider: defers the first `greylisting[address]` emails to an
    address, as a greylisting mail server does, then delivers."""

    def __init__(self, log: CallLog, greylisting: Mapping[str, int] | None = None) -> None:
        self.log = log
        self.greylisting = dict(greylisting or {})

    async def send(self, to: str, subject: str, body: str) -> str:
        """Record the email; raise ServiceError while the address greylists us."""
        tried = sum(call.payload["to"] == to for call in self.log.calls("mail"))
        accepted = tried >= self.greylisting.get(to, 0)
        self.log.record("mail", "send", to=to, subject=subject, accepted=accepted)
        if not accepted:
            raise ServiceError(f"451 4.7.1 {to}: greylisted, try again later")
        return uuid.uuid4().hex


class StandInBilling:
    """Stand-in for the billing API: records each grant once per idempotency key."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    async def grant_credits(self, workspace: str, credits: int, idempotency_key: str) -> None:
        """Record the grant unless this key was granted before."""
        granted = self.log.calls("billing", "grant")
        if any(call.payload["key"] == idempotency_key for call in granted):
            return
        self.log.record("billing", "grant", workspace=workspace, credits=credits,
                        key=idempotency_key)


class StandInAnalytics:
    """Stand-in for the usage warehouse: records which day was rolled up."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    async def rollup(self, day: date) -> dict[str, Any]:
        """Record the rollup of `day`."""
        self.log.record("analytics", "rollup", day=day.isoformat())
        return {"day": day.isoformat()}
