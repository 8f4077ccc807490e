"""Fixtures for the SQLite store's own tests: a fresh database file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.backends.sqlite import SqliteBackend


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A database file that does not exist yet."""
    return str(tmp_path / "corral.db")


@pytest.fixture
async def backend(db_path: str) -> AsyncIterator[SqliteBackend]:
    """A backend on a fresh file, closed after the test."""
    store = SqliteBackend(db_path, {})
    yield store
    await store.close()

