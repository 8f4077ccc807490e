"""Every exception a corral user may catch.

::

    CorralError
    ├── InvalidOptionError (also ValueError)
    │   └── SerializationError
    ├── PayloadTooLargeError
    ├── JobLockedError
    ├── LockLostError
    ├── JobNotFoundError (also KeyError)
    ├── JobFailedError
    └── BackendUnavailableError

    Raised by processors to steer the worker (not CorralErrors):
    UnrecoverableError, RateLimited
"""

from __future__ import annotations


class CorralError(Exception):
    """Base class of every error corral raises."""


class InvalidOptionError(CorralError, ValueError):
    """An argument or option has a value corral refuses; nothing was written."""


class SerializationError(InvalidOptionError):
    """A value is not strict JSON; the message names the offending path (`data.when`)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class PayloadTooLargeError(CorralError):
    """A job's encoded data is larger than the queue's `max_payload`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds max_payload of {limit} bytes")
        self.size = size
        self.limit = limit


class JobLockedError(CorralError):
    """The job is active (held by a worker) and cannot be changed this way."""


class LockLostError(CorralError):
    """A worker's transition was refused because its lock on the job lapsed."""


class JobNotFoundError(CorralError, KeyError):
    """No job with this id is stored in the queue."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class JobFailedError(CorralError):
    """`wait_until_finished` saw the job fail; `reason` is its `failed_reason`."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id!r} failed: {reason}")
        self.job_id = job_id
        self.reason = reason


class BackendUnavailableError(CorralError):
    """The store cannot be reached (or answered with an I/O failure)."""


class UnrecoverableError(Exception):
    """Raised by a processor: fail the job at once, whatever attempts remain."""


class RateLimited(Exception):
    """Raised by a processor: hand the job back and hold the whole queue for `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds} s")
        self.seconds = float(seconds)
