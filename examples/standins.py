"""Local stand-ins for the outside services the examples talk to (email, chat, CRM ...).

The examples cannot reach a real email provider, Telegram or HubSpot here. Each example
talks to its services through a small interface; these stand-ins implement them by
recording every call in a SQLite table, so a test (or a curious user) can see exactly
what would have been sent. A real client plugs in where the example builds its services.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from corral.clock import SYSTEM, Clock

__all__ = ["Call", "CallLog"]


@dataclass(frozen=True, slots=True)
class Call:
    """One call a stand-in received."""

    service: str
    action: str
    payload: dict[str, Any]
    at: datetime


class CallLog:
    """Every call to every stand-in of one example, in the table `calls` of a SQLite file.

    Times come from `clock`, so a test on a virtual clock sees virtual times.
    """

    def __init__(self, path: str | Path, clock: Clock = SYSTEM) -> None:
        self.path = str(path)
        self.clock = clock
        self._lock = threading.Lock()  # sync processors record from worker threads
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a record per call: no fsync each
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, service TEXT NOT NULL,"
            " action TEXT NOT NULL, payload TEXT NOT NULL, at TEXT NOT NULL)"
        )

    def record(self, service: str, action: str, **payload: Any) -> None:
        """Note that `service` was asked to do `action` with `payload`."""
        with self._lock:
            self._db.execute(
                "INSERT INTO calls (service, action, payload, at) VALUES (?, ?, ?, ?)",
                (service, action, orjson.dumps(payload).decode(), self.clock.now().isoformat()),
            )

    def calls(self, service: str | None = None, action: str | None = None) -> list[Call]:
        """The calls recorded so far, oldest first, optionally of one service and action."""
        query = "SELECT service, action, payload, at FROM calls WHERE 1=1"
        params: list[str] = []
        for column, value in (("service", service), ("action", action)):
            if value is not None:
                query += f" AND {column} = ?"
                params.append(value)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        return [
            Call(row[0], row[1], orjson.loads(row[2]), datetime.fromisoformat(row[3]))
            for row in rows
        ]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
