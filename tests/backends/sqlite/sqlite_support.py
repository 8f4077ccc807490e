"""Helpers for the SQLite store's own tests."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from corral.backends.base import Claimed, NewJob, Retention
from corral.backends.sqlite import SqliteBackend

T0 = 1_700_000_000_000
"""A fixed store time (epoch ms), passed as `now_ms` as a virtual clock would."""
LOCK_MS = 30_000
KEEP_ALL = Retention(None, None)


def new_job(job_id: str, **changes: Any) -> NewJob:
    """A job to add, with every option at its plainest unless changed."""
    fields: dict[str, Any] = {
        "id": job_id,
        "name": "task",
        "data": json.dumps({"id": job_id}),
        "options": "{}",
        "priority": 0,
        "lifo": False,
        "delay_ms": None,
        "run_at_ms": None,
        "tags": (),
        "group": None,
        "keep_completed": KEEP_ALL,
        "keep_failed": KEEP_ALL,
    }
    fields.update(changes)
    return NewJob(**fields)


def ids(claimed: list[Claimed]) -> list[str]:
    """The job ids of claimed jobs, in claim order."""
    return [c.record.id for c in claimed]



async def add(backend: SqliteBackend, *jobs: NewJob, queue: str = "q", now: int = T0) -> None:
    """Add jobs, failing the test when the store reports a stale config."""
    result = await backend.add(queue, jobs, 0, now)
    assert not result.stale_config


async def claim(
    backend: SqliteBackend, count: int, now: int = T0, queue: str = "q", lock_ms: int = LOCK_MS
) -> list[Claimed]:
    """Claim up to `count` jobs and nothing else."""
    result = await backend.settle(queue, [], count, lock_ms, "w1", now)
    return result.claimed


def file_names(directory: Path) -> set[str]:
    """The names of the files in a directory."""
    return {path.name for path in directory.iterdir()}


def write_garbage(path: str) -> None:
    """Fill a file with bytes that are not a SQLite database."""
    Path(path).write_bytes(b"this is not a database file " * 200)


ADDER = """
import asyncio, sys
from corral.backends.base import NewJob, Retention
from corral.backends.sqlite import SqliteBackend

async def main(path, params, prefix, count, handshake):
    store = SqliteBackend(path, dict(p.split("=") for p in params.split("&") if p))
    if handshake != "none":
        if handshake == "after-open":
            await store.ping()
        print("ready", flush=True)
        sys.stdin.readline()
    keep = Retention(None, None)
    for i in range(count):
        job = NewJob(f"{prefix}{i}", "t", "{}", "{}", 0, False, None, None, (), None, keep, keep)
        assert (await store.add("q", [job], 0, None)).records[0][1]
    await store.close()

path, params, prefix, count, handshake = sys.argv[1:]
asyncio.run(main(path, params, prefix, int(count), handshake))
"""
"""A child process: adds `count` jobs to queue `q`, one transaction each.

Arguments: path, URL params (`a=1&b=2`), id prefix, count, and a handshake: `none`,
or `before-open` / `after-open` to print `ready` and wait for a line on stdin first.
"""


async def start_adder(
    path: str, prefix: str, count: int, *, params: str = "", handshake: str = "none"
) -> asyncio.subprocess.Process:
    """Start an `ADDER` child process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ADDER, path, params, prefix, str(count), handshake,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def ready(process: asyncio.subprocess.Process) -> None:
    """Wait until a child with a handshake says `ready`."""
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 60) == b"ready\n"


async def go(*processes: asyncio.subprocess.Process) -> None:
    """Let children waiting after `ready` go on, as nearly at once as possible."""
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
    for process in processes:
        assert process.stdin is not None
        await process.stdin.drain()


async def finish_process(process: asyncio.subprocess.Process) -> str:
    """Wait for a child to exit; fail the test with its stderr unless it exited cleanly."""
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode() + err.decode()
