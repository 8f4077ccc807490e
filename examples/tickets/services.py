"""The outside service the help desk talks to, and a stand-in for it.

The stand-in records every call in the example's `CallLog` instead of sending anything;
`services()` is the one place that builds it, so a real email client plugs in there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from examples.standins import CallLog

__all__ = ["Mailer", "Services", "StandInMailer", "services"]


class Mailer(Protocol):
    """Sends transactional email from a template."""

    def send(self, to: str, template: str, data: dict[str, Any]) -> None:
        """Send the email `template` to `to`, filled in with `data`."""


class StandInMailer:
    """A stand-in Mailer: records `mailer.send` calls."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    def send(self, to: str, template: str, data: dict[str, Any]) -> None:
        """Record the email instead of sending it."""
        self.log.record("mailer", "send", to=to, template=template, data=data)


@dataclass(frozen=True, slots=True)
class Services:
    """Every outside service the processors use."""

    mailer: Mailer


def services(log: CallLog) -> Services:
    """The services, as stand-ins over `log`. Build the real clients here instead."""
    return Services(mailer=StandInMailer(log))
