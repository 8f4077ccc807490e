"""The help desk's own state: its tickets, in one SQLite table.

corral holds only the auto-close jobs; whether a ticket is still awaiting its customer,
or is excluded from auto-close, lives here, and the processor reads it when it runs.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CLOSED", "CLOSE_REQUESTED", "OPEN", "Database", "Ticket"]

OPEN = "open"
CLOSE_REQUESTED = "close-requested"  # the agent asked the customer whether it is solved
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A customer's ticket."""

    id: str
    customer: str
    subject: str
    status: str
    auto_close: bool  # False: never closed automatically (an important customer, say)


class Database:
    """Tickets in the table `tickets` of a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tickets (id TEXT PRIMARY KEY, customer TEXT NOT NULL,"
            " subject TEXT NOT NULL, status TEXT NOT NULL,"
            " auto_close INTEGER NOT NULL DEFAULT 1)"
        )

    def _write(self, sql: str, *params: object) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def open_ticket(
        self, ticket: str, customer: str, subject: str, auto_close: bool = True
    ) -> None:
        """Store a new open ticket (opening it again changes nothing)."""
        self._write(
            "INSERT OR IGNORE INTO tickets (id, customer, subject, status, auto_close)"
            " VALUES (?, ?, ?, ?, ?)", ticket, customer, subject, OPEN, int(auto_close),
        )

    def ticket(self, ticket: str) -> Ticket | None:
        """The ticket, or None when there is none."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, customer, subject, status, auto_close FROM tickets WHERE id = ?",
                (ticket,),
            ).fetchone()
        return None if row is None else Ticket(row[0], row[1], row[2], row[3], bool(row[4]))

    def set_status(self, ticket: str, status: str) -> None:
        """Change the ticket's status."""
        self._write("UPDATE tickets SET status = ? WHERE id = ?", status, ticket)

    def set_auto_close(self, ticket: str, auto_close: bool) -> None:
        """Allow or forbid closing the ticket automatically."""
        self._write("UPDATE tickets SET auto_close = ? WHERE id = ?", int(auto_close), ticket)

    def delete(self, ticket: str) -> None:
        """Delete the ticket (spam, a merged duplicate, a customer's erasure request)."""
        self._write("DELETE FROM tickets WHERE id = ?", ticket)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
