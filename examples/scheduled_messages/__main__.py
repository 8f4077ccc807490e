"""`python -m examples.scheduled_messages`: ten minutes of the app in five seconds.

Runs on a SQLite file in a temporary folder with a clock 120 times faster than real time,
then prints what the stand-ins were asked to do.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import corral
from corral.testing import FastClock
from examples.scheduled_messages.jobs import run_story, setup, workers
from examples.scheduled_messages.services import build_services
from examples.standins import CallLog

SPEED = 120  # one virtual minute every half second
VIRTUAL_MINUTES = 10


async def main(folder: Path) -> None:
    url = f"sqlite:///{folder}/corral.db"
    clock = FastClock(SPEED)
    log = CallLog(folder / "calls.db", clock)
    start = clock.now()
    await setup(url, clock)
    await run_story(url, clock, log)
    running = workers(url, clock, log, lock_duration=SPEED * 5)
    task = asyncio.create_task(corral.run_workers(running))
    await asyncio.sleep(VIRTUAL_MINUTES * 60 / SPEED)
    for worker in running:
        await worker.close(timeout=5)
    await task
    print(f"{VIRTUAL_MINUTES} minutes from {start:%H:%M:%S} UTC; the stand-ins were asked:")
    for call in log.calls():
        print(f"  {call.at:%H:%M:%S}  {call.service}.{call.action}  {call.payload}")
    print("scheduled messages:", build_services(log, clock).outbox.statuses())
    log.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="corral-scheduled-messages-") as folder:
        asyncio.run(main(Path(folder)))
