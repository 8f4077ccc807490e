"""Helpers for the Redis store's own tests: the protocol helpers, shared with every store.

New tests import `tests.backends.protocol.support` directly; these names stay for the
modules that still import them from here.
"""

from __future__ import annotations

from tests.backends.protocol.support import LOCK_MS, T0, add, claim, new_job

__all__ = ["LOCK_MS", "T0", "add", "claim", "new_job"]
