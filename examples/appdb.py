"""The examples' own application tables (leads, contracts, messages ...) in a SQLite file.

corral holds the jobs; each application keeps its own state, as a real one would in its
database. This small base gives every example the same careful connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["AppDatabase"]


class AppDatabase:
    """A SQLite file with the application's `schema`, safe to use from worker threads."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()  # a plain-function processor would call from a thread
        self._conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._db() as db:
            db.executescript(schema)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The connection, in a transaction (committed on success, rolled back on error)."""
        with self._lock, self._conn:
            yield self._conn

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
