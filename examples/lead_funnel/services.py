"""The outside services the funnel talks to, and stand-ins for them.

Each service is a small interface. The stand-ins record every call in the example's
`CallLog` instead of sending anything; `services()` is the one place that builds them,
so a real email provider, Telegram bot or CRM client plugs in there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from examples.standins import CallLog

__all__ = [
    "ChatBot",
    "Crm",
    "Mailer",
    "Services",
    "StandInChatBot",
    "StandInCrm",
    "StandInMailer",
    "services",
]


class Mailer(Protocol):
    """Sends transactional email from a template."""

    def send(self, to: str, template: str, data: dict[str, Any]) -> None:
        """Send the email `template` to `to`, filled in with `data`."""


class ChatBot(Protocol):
    """Posts messages to chats (the managers' group, a lead's chat)."""

    def message(self, chat: str, text: str) -> None:
        """Post `text` to `chat`."""


class Crm(Protocol):
    """The sales team's CRM."""

    def set_status(self, lead: str, status: str) -> None:
        """Set the lead's status."""


class StandInMailer:
    """A stand-in Mailer: records `mailer.send` calls."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    def send(self, to: str, template: str, data: dict[str, Any]) -> None:
        """Record the email instead of sending it."""
        self.log.record("mailer", "send", to=to, template=template, data=data)


class StandInChatBot:
    """A stand-in ChatBot: records `chat.message` calls."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    def message(self, chat: str, text: str) -> None:
        """Record the message instead of posting it."""
        self.log.record("chat", "message", chat=chat, text=text)


class StandInCrm:
    """A stand-in Crm: records `crm.set_status` calls."""

    def __init__(self, log: CallLog) -> None:
        self.log = log

    def set_status(self, lead: str, status: str) -> None:
        """Record the status change instead of making it."""
        self.log.record("crm", "set_status", lead=lead, status=status)


@dataclass(frozen=True, slots=True)
class Services:
    """Every outside service the processors use."""

    mailer: Mailer
    chat: ChatBot
    crm: Crm


def services(log: CallLog) -> Services:
    """The services, as stand-ins over `log`. Build the real clients here instead."""
    return Services(mailer=StandInMailer(log), chat=StandInChatBot(log), crm=StandInCrm(log))
