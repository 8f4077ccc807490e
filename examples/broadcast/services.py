"""The outside service the example talks to, and the one place where it is built.

The sender is a small interface (`typing.Protocol`). The stand-in records every message
in the example's `CallLog` instead of reaching WhatsApp; a real client with the same
method plugs in at `build_services`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from corral.clock import Clock
from examples.broadcast.contracts import Contracts
from examples.standins import CallLog


class RecipientRejected(Exception):
    """The provider refused the recipient for good (not a valid number); retrying is useless."""


class WhatsApp(Protocol):
    """A WhatsApp Business sender (one phone number)."""

    def send(self, to: str, text: str) -> str:
        """Send `text` to `to`; returns the provider's message id.

        Raises:
            RecipientRejected: `to` can never receive messages.
        """
        ...


class StandInWhatsApp:
    """Stand-in for a WhatsApp sender: records each message; refuses numbers without "+"."""

    def __init__(self, log: CallLog) -> None:
        self.log = log
        self._ids = itertools.count(1)

    def send(self, to: str, text: str) -> str:
        """Record the message; returns a made-up provider id."""
        if not to.startswith("+"):
            raise RecipientRejected(f"{to!r} is not a phone number")
        self.log.record("whatsapp", "send", to=to, text=text)
        return f"wamid.{next(self._ids)}"


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the processors and producers need besides the queues."""

    contracts: Contracts
    whatsapp: WhatsApp
    clock: Clock


def build_services(log: CallLog, clock: Clock) -> Services:
    """The example's services: the stand-in over `log`, and the app's table beside it.

    A real deployment builds `Services(Contracts(its_db), RealWhatsApp(...), clock)` here
    and changes nothing else.
    """
    return Services(Contracts(Path(log.path).with_name("broadcast.db")), StandInWhatsApp(log),
                    clock)
