"""The app's own data: leads and the messages scheduled for them, in one SQLite file.

This table, not the queue, is the source of truth for scheduled messages: users create,
edit and cancel them in the app, and a job that runs every minute sends the ones due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from examples.appdb import AppDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL,
    on_whatsapp INTEGER                    -- NULL until an availability check ran
);
CREATE TABLE IF NOT EXISTS scheduled_messages (
    id TEXT PRIMARY KEY, lead_id TEXT NOT NULL REFERENCES leads(id), text TEXT NOT NULL,
    send_at TEXT NOT NULL,                 -- ISO 8601 UTC, so text order is time order
    status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
    provider_id TEXT, sent_at TEXT
);
CREATE INDEX IF NOT EXISTS due_messages ON scheduled_messages (status, send_at);
"""


@dataclass(frozen=True, slots=True)
class Lead:
    """Someone the app may message."""

    id: str
    name: str
    phone: str
    on_whatsapp: bool | None


@dataclass(frozen=True, slots=True)
class Message:
    """A message to send to a lead at `send_at`."""

    id: str
    lead_id: str
    text: str
    send_at: datetime
    status: str


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class Outbox(AppDatabase):
    """Leads and scheduled messages in the SQLite file at `path`."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    def add_lead(self, lead_id: str, name: str, phone: str) -> None:
        """Store a lead (an id already stored is left as it is)."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO leads (id, name, phone) VALUES (?, ?, ?)",
                       (lead_id, name, phone))

    def lead(self, lead_id: str) -> Lead:
        """The lead `lead_id` (KeyError when there is none)."""
        with self._db() as db:
            row = db.execute("SELECT id, name, phone, on_whatsapp FROM leads WHERE id = ?",
                             (lead_id,)).fetchone()
        if row is None:
            raise KeyError(lead_id)
        return Lead(row[0], row[1], row[2], None if row[3] is None else bool(row[3]))

    def set_on_whatsapp(self, lead_id: str, on_whatsapp: bool) -> None:
        """Record the result of an availability check."""
        with self._db() as db:
            db.execute("UPDATE leads SET on_whatsapp = ? WHERE id = ?", (on_whatsapp, lead_id))

    def schedule(self, message_id: str, lead_id: str, text: str, send_at: datetime) -> None:
        """Plan a message (an id already stored is left as it is)."""
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO scheduled_messages (id, lead_id, text, send_at)"
                " VALUES (?, ?, ?, ?)", (message_id, lead_id, text, _iso(send_at)),
            )

    def message(self, message_id: str) -> Message:
        """The message `message_id` (KeyError when there is none)."""
        with self._db() as db:
            row = db.execute(
                "SELECT id, lead_id, text, send_at, status FROM scheduled_messages WHERE id = ?",
                (message_id,),
            ).fetchone()
        if row is None:
            raise KeyError(message_id)
        return Message(row[0], row[1], row[2], datetime.fromisoformat(row[3]), row[4])

    def due(self, now: datetime) -> list[str]:
        """The ids of the pending messages due at `now`, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id FROM scheduled_messages WHERE status = 'pending' AND send_at <= ?"
                " ORDER BY send_at, id", (_iso(now),),
            ).fetchall()
        return [row[0] for row in rows]

    def mark_sent(self, message_id: str, provider_id: str, at: datetime) -> None:
        """Record that the provider accepted the message."""
        with self._db() as db:
            db.execute(
                "UPDATE scheduled_messages SET status = 'sent', provider_id = ?, sent_at = ?"
                " WHERE id = ?", (provider_id, _iso(at), message_id),
            )

    def mark_failed(self, message_id: str) -> None:
        """Record that the message could not be sent (its attempts are used up)."""
        with self._db() as db:
            db.execute("UPDATE scheduled_messages SET status = 'failed' WHERE id = ?",
                       (message_id,))

    def overdue(self, before: datetime) -> int:
        """How many messages are still pending although due before `before`."""
        with self._db() as db:
            row = db.execute(
                "SELECT count(*) FROM scheduled_messages WHERE status = 'pending'"
                " AND send_at < ?", (_iso(before),),
            ).fetchone()
        return int(row[0])

    def statuses(self) -> dict[str, str]:
        """Each message's status, by id."""
        with self._db() as db:
            rows = db.execute("SELECT id, status FROM scheduled_messages").fetchall()
        return {row[0]: row[1] for row in rows}

    def sent_to(self, lead_id: str) -> tuple[int, str | None]:
        """How many messages the lead was sent, and when the last one went out."""
        with self._db() as db:
            row = db.execute(
                "SELECT count(*), max(sent_at) FROM scheduled_messages"
                " WHERE lead_id = ? AND status = 'sent'", (lead_id,),
            ).fetchone()
        return int(row[0]), row[1]
