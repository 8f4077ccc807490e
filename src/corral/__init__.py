"""corral: a job queue and scheduler for Python, on SQLite or Redis."""

from corral.errors import (
    BackendUnavailableError,
    CorralError,
    InvalidOptionError,
    JobFailedError,
    JobLockedError,
    JobNotFoundError,
    LockLostError,
    PayloadTooLargeError,
    RateLimited,
    SerializationError,
    UnrecoverableError,
)
from corral.events import Event, EventType, QueueEvents
from corral.job import Child, Job, JobRef
from corral.job_state import JobState
from corral.options import Backoff, Dedupe, JobOptions, JobSpec, Keep, QueueConfig, RateLimit
from corral.queue import Queue
from corral.worker import Worker, run_workers

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "Backoff",
    "Child",
    "CorralError",
    "Dedupe",
    "Event",
    "EventType",
    "InvalidOptionError",
    "Job",
    "JobFailedError",
    "JobLockedError",
    "JobNotFoundError",
    "JobOptions",
    "JobRef",
    "JobSpec",
    "JobState",
    "Keep",
    "LockLostError",
    "PayloadTooLargeError",
    "Queue",
    "QueueConfig",
    "QueueEvents",
    "RateLimit",
    "RateLimited",
    "SerializationError",
    "UnrecoverableError",
    "Worker",
    "__version__",
    "run_workers",
]
