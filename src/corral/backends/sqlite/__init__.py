"""The embedded store: one SQLite file in WAL mode, shared by the processes of a machine."""

from __future__ import annotations

from corral.backends.sqlite.backend import SqliteBackend, SqliteLockKeeper

__all__ = ["SqliteBackend", "SqliteLockKeeper"]
