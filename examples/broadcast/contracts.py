"""The app's own data: broadcast contracts and the deliveries made for them, in SQLite.

A contract is a customer's order to send one text to many recipients. Its status is
`running`, `paused` (the customer stopped it: what was not sent yet never will be) or
`done`. A delivery row is written right after the provider accepted a message, so a
message job that runs a second time (delivery is at least once) does not send again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from examples.appdb import AppDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS contracts (
    id TEXT PRIMARY KEY, text TEXT NOT NULL, recipients INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'running'   -- running | paused | done
);
CREATE TABLE IF NOT EXISTS deliveries (
    contract_id TEXT NOT NULL, recipient TEXT NOT NULL, provider_id TEXT NOT NULL,
    sent_at TEXT NOT NULL, PRIMARY KEY (contract_id, recipient)
);
"""


@dataclass(frozen=True, slots=True)
class Contract:
    """One broadcast order."""

    id: str
    text: str
    recipients: int
    status: str


class Contracts(AppDatabase):
    """Contracts and deliveries in the SQLite file at `path`."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    def create(self, contract_id: str, text: str, recipients: int) -> None:
        """Store a new running contract (an id already stored is left as it is)."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO contracts (id, text, recipients) VALUES (?, ?, ?)",
                       (contract_id, text, recipients))

    def get(self, contract_id: str) -> Contract:
        """The contract `contract_id` (KeyError when there is none)."""
        with self._db() as db:
            row = db.execute("SELECT id, text, recipients, status FROM contracts WHERE id = ?",
                             (contract_id,)).fetchone()
        if row is None:
            raise KeyError(contract_id)
        return Contract(*row)

    def set_status(self, contract_id: str, status: str) -> None:
        """Mark the contract running, paused or done."""
        with self._db() as db:
            db.execute("UPDATE contracts SET status = ? WHERE id = ?", (status, contract_id))

    def delivery(self, contract_id: str, recipient: str) -> str | None:
        """The provider's id of the message already sent to `recipient`, if one was."""
        with self._db() as db:
            row = db.execute(
                "SELECT provider_id FROM deliveries WHERE contract_id = ? AND recipient = ?",
                (contract_id, recipient),
            ).fetchone()
        return None if row is None else str(row[0])

    def record_delivery(
        self, contract_id: str, recipient: str, provider_id: str, at: datetime
    ) -> None:
        """Note that the provider accepted the message to `recipient`."""
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
                (contract_id, recipient, provider_id, at.astimezone(UTC).isoformat()),
            )

    def delivered(self, contract_id: str) -> int:
        """How many recipients of the contract were sent its message."""
        with self._db() as db:
            row = db.execute("SELECT count(*) FROM deliveries WHERE contract_id = ?",
                             (contract_id,)).fetchone()
        return int(row[0])
