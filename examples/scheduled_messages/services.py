"""The outside services the example talks to, and the one place where they are built.

Each service is a small interface (`typing.Protocol`). The stand-ins record every call in
the example's `CallLog` instead of reaching WhatsApp or a CRM; a real client that has the
same methods plugs in at `build_services`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.clock import Clock
from examples.scheduled_messages.outbox import Outbox
from examples.standins import CallLog


class WhatsApp(Protocol):
    """A WhatsApp Business provider."""

    def send(self, to: str, text: str) -> str:
        """Send `text` to the phone number `to`; returns the provider's message id."""
        ...

    def is_on_whatsapp(self, phone: str) -> bool:
        """Whether `phone` has a WhatsApp account (an availability check)."""
        ...

    def status(self) -> str:
        """The provider's health: "ok", or what is wrong."""
        ...


class Crm(Protocol):
    """The CRM that mirrors what the app did with each lead."""

    def sync(self, lead_id: str, fields: dict[str, Any]) -> None:
        """Update the lead's record in the CRM with `fields`."""
        ...


class StandInWhatsApp:
    """Stand-in for a WhatsApp provider: records each call; numbers ending in 0 have no account."""

    def __init__(self, log: CallLog) -> None:
        self.log = log
        self._ids = itertools.count(1)

    def send(self, to: str, text: str) -> str:
        """Record the message; returns a made-up provider id."""
        self.log.record("whatsapp", "send", to=to, text=text)
        return f"wamid.{next(self._ids)}"

    def is_on_whatsapp(self, phone: str) -> bool:
        """Record the check; every number not ending in 0 is on WhatsApp."""
        self.log.record("whatsapp", "check", phone=phone)
        return not phone.endswith("0")

    def status(self) -> str:
        """Record the probe; always "ok"."""
        self.log.record("whatsapp", "status")
        return "ok"


class StandInCrm:
    """Stand-in for a CRM: records each sync."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    def sync(self, lead_id: str, fields: dict[str, Any]) -> None:
        """Record the update."""
        self.log.record("crm", "sync", lead_id=lead_id, **fields)


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the processors and producers need besides the queue."""

    outbox: Outbox
    whatsapp: WhatsApp
    crm: Crm
    clock: Clock


def build_services(log: CallLog, clock: Clock) -> Services:
    """The example's services: the stand-ins over `log`, and the app's table beside it.

    A real deployment builds `Services(Outbox(its_db), RealWhatsApp(...), RealCrm(...), clock)`
    here and changes nothing else.
    """
    outbox = Outbox(Path(log.path).with_name("scheduled_messages.db"))
    return Services(outbox, StandInWhatsApp(log), StandInCrm(log), clock)
