"""A worker process for test_multiprocess: records every job it runs in its own file.

Usage:
    python mp_worker.py burst URL QUEUE OUT_FILE READY_FILE GO_FILE
        Signal readiness by creating READY_FILE, wait for GO_FILE (so that every process
        starts at once), work the queue off in burst mode and exit.
    python mp_worker.py serve URL QUEUE OUT_FILE READY_FILE
        Run until SIGTERM or SIGINT (`run(handle_signals=True)`), then exit 0.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TextIO

import corral


def recording_worker(
    url: str, queue_name: str, record: TextIO, pause: float = 0.0
) -> corral.Worker:
    async def process(job: corral.Job) -> None:
        record.write(job.id + "\n")
        record.flush()
        await asyncio.sleep(pause)

    return corral.Worker(queue_name, process, url=url, concurrency=10)


async def burst(url: str, queue_name: str, record: TextIO) -> int:
    # Jobs that take a few ms each: one process alone needs about a second for them all,
    # longer than the others take to start, so the test sees them share the work.
    worker = recording_worker(url, queue_name, record, pause=0.005)
    try:
        return await worker.run(burst=True)
    finally:
        await worker.close()


async def serve(url: str, queue_name: str, record: TextIO, ready: Path) -> None:
    worker = recording_worker(url, queue_name, record)
    ready.touch()  # noqa: ASYNC240 - a marker file, before any work starts
    await worker.run(handle_signals=True)


def wait_for_go(go: Path) -> None:
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.005)


def main(mode: str, url: str, queue_name: str, out: Path, ready: Path, go: Path | None) -> None:
    with out.open("a", encoding="utf-8") as record:
        if mode == "serve":
            asyncio.run(serve(url, queue_name, record, ready))
            return
        assert go is not None
        ready.touch()
        wait_for_go(go)
        asyncio.run(burst(url, queue_name, record))


if __name__ == "__main__":
    mode, url, queue_name, out, ready = sys.argv[1:6]
    go = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    main(mode, url, queue_name, Path(out), Path(ready), go)
