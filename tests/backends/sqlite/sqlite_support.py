"""Helpers for the SQLite store's own tests: files and child processes. The protocol
helpers live in `tests.backends.protocol.support` (a few are re-exported here)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.backends.protocol.support import LOCK_MS, T0, claim, new_job

__all__ = [
    "ADDER", "LOCK_MS", "T0", "claim", "file_names", "finish_process", "go", "new_job", "ready",
    "start_adder", "write_garbage",
]


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
