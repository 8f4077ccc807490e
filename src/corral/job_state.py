"""The states a job moves through."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A job's state; plain strings compare equal."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING_CHILDREN = "waiting-children"
