"""The funnel's own state: leads and their lessons, in two SQLite tables.

corral holds only jobs; what a lead did (activated the bot, confirmed a lesson) lives
here, and the processors read it when they run, so a job never acts on stale facts.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["Database", "Lead", "Lesson"]


@dataclass(frozen=True, slots=True)
class Lead:
    """Someone who signed up."""

    id: str
    email: str
    name: str
    bot_active: bool


@dataclass(frozen=True, slots=True)
class Lesson:
    """A trial lesson a lead booked."""

    id: str
    lead: str
    at: datetime
    confirmed: bool


class Database:
    """Leads and lessons in the tables `leads` and `lessons` of a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS leads (id TEXT PRIMARY KEY, email TEXT NOT NULL,"
            " name TEXT NOT NULL, bot_active INTEGER NOT NULL DEFAULT 0)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS lessons (id TEXT PRIMARY KEY, lead TEXT NOT NULL,"
            " at TEXT NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0)"
        )

    def _write(self, sql: str, *params: object) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _read(self, sql: str, *params: object) -> tuple[object, ...] | None:
        with self._lock:
            row: tuple[object, ...] | None = self._db.execute(sql, params).fetchone()
        return row

    def add_lead(self, lead: str, email: str, name: str) -> None:
        """Store a new lead (signing up again changes nothing)."""
        self._write("INSERT OR IGNORE INTO leads (id, email, name) VALUES (?, ?, ?)",
                    lead, email, name)

    def activate_bot(self, lead: str) -> None:
        """Note that the lead started the chat bot."""
        self._write("UPDATE leads SET bot_active = 1 WHERE id = ?", lead)

    def lead(self, lead: str) -> Lead | None:
        """The lead, or None."""
        row = self._read("SELECT id, email, name, bot_active FROM leads WHERE id = ?", lead)
        return None if row is None else Lead(str(row[0]), str(row[1]), str(row[2]), bool(row[3]))

    def book(self, lesson: str, lead: str, at: datetime) -> None:
        """Store a booked lesson (booking it again moves it to `at`, unconfirmed)."""
        self._write("INSERT OR REPLACE INTO lessons (id, lead, at) VALUES (?, ?, ?)",
                    lesson, lead, at.isoformat())

    def confirm(self, lesson: str) -> None:
        """Note that the lead confirmed the lesson."""
        self._write("UPDATE lessons SET confirmed = 1 WHERE id = ?", lesson)

    def lesson(self, lesson: str) -> Lesson | None:
        """The lesson, or None."""
        row = self._read("SELECT id, lead, at, confirmed FROM lessons WHERE id = ?", lesson)
        if row is None:
            return None
        return Lesson(str(row[0]), str(row[1]), datetime.fromisoformat(str(row[2])), bool(row[3]))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
