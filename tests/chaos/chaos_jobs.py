"""The processors of the chaos tests: top-level functions (a child process with
`isolation="process"` imports them by name), each recording its runs in the ledger.

Every processor returns `{"pid": ..., "run": ...}`, so the store's return value names
the very run whose result it accepted.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import corral
import corral.sync

from .ledger import writer


def _begin(job: corral.Job | corral.sync.Job) -> str:
    run = uuid.uuid4().hex[:12]
    if job.data.get("quiet"):  # runs not recorded (200,000-job tests): only `done` lines
        return run
    writer("worker").record(
        "start", job=job.id, attempt=job.attempts_made + 1, stalled=job.stalled_count, run=run
    )
    return run


def _end(job: corral.Job | corral.sync.Job, run: str) -> dict[str, Any]:
    if not job.data.get("quiet"):
        writer("worker").record("end", job=job.id, run=run)
    return {"pid": os.getpid(), "run": run}


def _spin(seconds: float) -> None:
    """Burn CPU in Python bytecode for `seconds` (the GIL is handed over every 5 ms)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sum(range(200))


async def short(job: corral.Job) -> dict[str, Any]:
    """An async job that sleeps `data["ms"]` milliseconds."""
    run = _begin(job)
    await asyncio.sleep(float(job.data.get("ms", 0)) / 1000)
    return _end(job, run)


async def block_loop(job: corral.Job) -> dict[str, Any]:
    """An `async def` job that blocks its event loop with CPU work for `data["s"]` seconds."""
    run = _begin(job)
    _spin(float(job.data["s"]))
    return _end(job, run)


def spin(job: corral.sync.Job) -> dict[str, Any]:
    """A plain function (run in the worker's thread pool) that spins for `data["s"]` s."""
    run = _begin(job)
    _spin(float(job.data["s"]))
    return _end(job, run)


def gil_hold(job: corral.sync.Job) -> dict[str, Any]:
    """A C call that holds the GIL for `data["s"]` seconds (libc `sleep` through
    `ctypes.PyDLL`, which does not release the GIL): no other thread of the process runs."""
    run = _begin(job)
    ctypes.PyDLL(None).sleep(int(job.data["s"]))
    return _end(job, run)


PROCESSORS: dict[str, Callable[..., Any]] = {
    "short": short, "block_loop": block_loop, "spin": spin, "gil_hold": gil_hold,
}
